#!/usr/bin/env bash
# Runs Wafer's whole test suite: installs the toolchains, builds the example and test guests,
# then runs every unit and integration test (real servers on 127.0.0.1:0).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash examples/build.sh
# The guest SDKs' own unit tests, run natively: the Go package and the C header.
go="${GO:-/usr/lib/go-1.23/bin/go}"
(cd guests/go && env GOTOOLCHAIN=local GOWORK=off GOPROXY=off GOFLAGS= \
  GOCACHE="$root/target/guests/go-cache" GOPATH="$root/target/guests/gopath" "$go" test ./...)
mkdir -p target/guests/c
cc -std=c99 -Wall -Wextra -Werror -DWAFER_NATIVE_TEST -o target/guests/c/test_wafer guests/c/test_wafer.c
target/guests/c/test_wafer
cargo test --workspace --locked "$@"
