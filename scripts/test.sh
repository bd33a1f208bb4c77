#!/usr/bin/env bash
# Runs Wafer's whole test suite: installs the toolchains, builds the example and test guests,
# then runs every unit and integration test (real servers on 127.0.0.1:0).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash examples/build.sh
cargo test --workspace --locked "$@"
