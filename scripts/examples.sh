#!/usr/bin/env bash
# Builds Wafer and the bundled examples, then serves them on 127.0.0.1:8080
# (override with WAFER_LISTEN). Ctrl-C stops the server.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash examples/build.sh
cargo build --release --locked -p wafer-cli
exec target/release/wafer up examples/wafer.toml "$@"
