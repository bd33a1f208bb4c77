#!/usr/bin/env bash
# Fuzzes Wafer's parsers with cargo-fuzz (libFuzzer, nightly):
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     # default 60 s, every target
#
# Targets are fuzz/fuzz_targets/*.rs; each calls a `fuzzing` entry point of the crates that
# the stable test crates/wafer-cli/tests/it/fuzz_regressions.rs also feeds every file of
# fuzz/seeds/TARGET/ and fuzz/regressions/TARGET/.
#
# Targets run one after another, one fuzzing process at a time (libFuzzer's -fork=1: a
# supervisor and one worker), so a build on the other core is not starved. A crash does not
# end the run: the worker is restarted and the target gets its whole time. Crash, timeout
# and out-of-memory inputs are copied to fuzz/regressions/TARGET/: minimise one with
# `cargo +nightly fuzz tmin TARGET FILE`, keep one input per bug, and once the bug is fixed
# the replay test keeps it fixed. The growing corpus (fuzz/corpus/), the raw artifacts
# (fuzz/artifacts/) and the build (fuzz/target/) are git-ignored.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

seconds=${1:-60}
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
  echo "usage: bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for file in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$file" .rs)")
  done
fi
for target in "${targets[@]}"; do
  if [ ! -f "fuzz/fuzz_targets/$target.rs" ]; then
    echo "no fuzz target \`$target\` (fuzz/fuzz_targets/$target.rs)" >&2
    exit 2
  fi
done

# The tools: a nightly toolchain beside the default one (stable stays the default), and
# cargo-fuzz.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# Every target at once (they share one build), before the clocks start.
cargo +nightly fuzz build

summary=()
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  artifacts="fuzz/artifacts/$target"
  regressions="fuzz/regressions/$target"
  mkdir -p "$corpus" "$artifacts" "$regressions"
  log="$artifacts/fuzz.log"
  dict=()
  if [ -f "fuzz/seeds/$target.dict" ]; then
    dict=("-dict=fuzz/seeds/$target.dict")
  fi
  marker=$(mktemp)
  start=$(date +%s)
  echo "== $target: ${seconds} s (log: $log)"
  # Exit codes: 0 when nothing was found; with -ignore_crashes, libFuzzer's own error code
  # when something was. Either way the artifacts tell.
  set +e
  cargo +nightly fuzz run "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 \
    -ignore_ooms=1 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 "${dict[@]}" \
    >"$log" 2>&1
  status=$?
  set -e
  elapsed=$(($(date +%s) - start))
  # Executions: the supervisor's last progress line (`#N: cov: ...`) in fork mode, or the
  # final stats of a single process.
  execs=$(grep -aoE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)
  if [ -z "$execs" ]; then
    execs=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' |
      tail -n 1 || true)
  fi
  found=0
  while IFS= read -r -d '' artifact; do
    cp "$artifact" "$regressions/"
    found=$((found + 1))
  done < <(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' \
    -o -name 'oom-*' -o -name 'leak-*' \) -newer "$marker" -print0)
  rm -f "$marker"
  if [ -z "$execs" ] && [ "$found" -eq 0 ]; then
    echo "   $target did not run (exit $status); the end of $log:" >&2
    tail -n 20 "$log" >&2
    execs="-"
  fi
  summary+=("$(printf '%-20s %8s %14s %8s' "$target" "$elapsed" "${execs:-?}" "$found")")
  echo "   ${elapsed} s, ${execs:-?} executions, $found crash/timeout/oom inputs"
done

echo
printf '%-20s %8s %14s %8s\n' target seconds executions crashes
printf '%s\n' "${summary[@]}"
