#!/usr/bin/env bash
# A/B benchmark of two Wafer builds on one module: each `wafer serve` pinned to CPU 0, wrk (one
# thread, 32 connections) on CPU 1, measured in alternating pairs (the order swapped every other
# pair, so that neither side always runs first); prints each pair's requests/s, the ratios
# B/A and their median. For "did this change slow the hot path": build the old commit in a
# worktree with its own target directory, then
#
#   bash scripts/bench-ab.sh OLD/target/release/wafer target/release/wafer [MODULE] [PATH]
#
# MODULE defaults to target/wasm/http-hello-rust.wasm, PATH to /hello.
# Environment: AB_PAIRS=10, AB_SECONDS=5.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,12p' "$0"; exit 2; }
root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
a="$1" b="$2"
module="${3:-$root/target/wasm/http-hello-rust.wasm}"
path="${4:-/hello}"
pairs="${AB_PAIRS:-10}" seconds="${AB_SECONDS:-5}"
command -v wrk >/dev/null || { echo "bench-ab.sh: wrk is not installed" >&2; exit 1; }
dirs=()
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "${dirs[@]}"; }
trap cleanup EXIT
start() { # start BIN PORT
  local dir; dir="$(mktemp -d)"; dirs+=("$dir")
  # The admin listener 100 ports up. An older binary without --admin-listen serves its admin
  # API on the function port.
  local admin=$(($2 + 100)) args=(--admin-listen "127.0.0.1:$(($2 + 100))")
  "$1" serve --help | grep -q -- --admin-listen || { admin=$2; args=(); }
  taskset -c 0 "$1" serve --listen "127.0.0.1:$2" "${args[@]}" --data "$dir" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf -o /dev/null "127.0.0.1:$admin/_wafer/health" && break; sleep 0.1; done
  WAFER_SERVER="http://127.0.0.1:$admin" WAFER_DATA="$dir" "$1" deploy hello "$module" >/dev/null
}
start "$a" 18301
start "$b" 18302
rps() { taskset -c 1 wrk -t1 -c32 -d"${seconds}s" "http://127.0.0.1:$1$path" | awk '/Requests\/sec/ {print $2}'; }
for port in 18301 18302; do taskset -c 1 wrk -t1 -c32 -d2s "http://127.0.0.1:$port$path" >/dev/null; done
ratios=()
for pair in $(seq "$pairs"); do
  if [ $((pair % 2)) = 1 ]; then ra="$(rps 18301)"; rb="$(rps 18302)"; else rb="$(rps 18302)"; ra="$(rps 18301)"; fi
  ratio="$(awk -v a="$ra" -v b="$rb" 'BEGIN {printf "%.3f", b / a}')"
  ratios+=("$ratio")
  printf 'pair %2d  A %10s  B %10s  B/A %s\n' "$pair" "$ra" "$rb" "$ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{r[NR] = $1} END {printf "median B/A over %d pairs: %.3f\n", NR, (r[int((NR + 1) / 2)] + r[int(NR / 2) + 1]) / 2}'
