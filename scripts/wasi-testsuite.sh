#!/usr/bin/env bash
# Runs WebAssembly/wasi-testsuite (its wasm32-wasip1 and wasm32-wasip3 tests) against Wafer,
# and against wasmtime when `--wasmtime` is given (for comparison), with the suite's own
# runner (docs/wasi-testsuite.md).
#
#   bash scripts/wasi-testsuite.sh SUITE [--wasmtime]
#
# SUITE is a checkout of the suite's `prod/testsuite-base` branch (it carries the prebuilt
# tests; it is not part of this repository). The runner is SUITE/test-runner (Python 3.12+);
# the adapters are scripts/wasi-testsuite/wafer.py, which runs target/release/wafer (built
# here) unless WAFER says otherwise, and wasmtime.py, the suite's own for wasmtime (WASMTIME
# names the binary). Results go to target/wasi-testsuite/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
suite=${1:?usage: scripts/wasi-testsuite.sh SUITE [--wasmtime]}
suite=$(cd "$suite" && pwd)
tests=("$suite"/tests/*/testsuite/wasm32-wasip*)
[ -d "${tests[0]}" ] || { echo "no tests in $suite/tests: is it a checkout of prod/testsuite-base?" >&2; exit 2; }

# The runner needs Python 3.12 or newer.
python=${PYTHON:-}
if [ -z "$python" ]; then
  for p in python3.13 python3.12 python3 ~/.pyenv/versions/3.1[2-9]*/bin/python3; do
    if "$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      python=$p; break
    fi
  done
fi
[ -n "$python" ] || { echo "the suite's runner needs Python 3.12 or newer (set PYTHON)" >&2; exit 2; }
"$python" -c 'import colorama, requests' 2>/dev/null ||
  "$python" -m pip install --quiet --root-user-action=ignore -r "$suite/test-runner/requirements/prod.txt"
out=$PWD/target/wasi-testsuite
mkdir -p "$out"
if [ -z "${WAFER:-}" ]; then
  cargo build --release --quiet -p wafer-cli
  export WAFER=$PWD/target/release/wafer
fi

status=0
run() { # NAME ADAPTER
  echo "== $1"
  (cd "$suite/test-runner" && "$python" -m wasi_test_runner -t "${tests[@]}" -r "$2" \
     --disable-colors --json-output-location "$out/$1.json") || status=1
}
run wafer "$PWD/scripts/wasi-testsuite/wafer.py"
if [ "${2:-}" = --wasmtime ]; then
  WASMTIME=${WASMTIME:-wasmtime} WASI_TESTSUITE=$suite run wasmtime "$PWD/scripts/wasi-testsuite/wasmtime.py"
fi
exit $status
