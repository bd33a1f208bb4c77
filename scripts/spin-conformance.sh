#!/usr/bin/env bash
# Runs the Spin conformance tests (fermyon/conformance-tests) against `wafer up spin.toml`
# (docs/spin-conformance.md).
#
#   bash scripts/spin-conformance.sh [--wafer PATH] [--out DIR] [--componentize] [SUITE_DIR] [TEST_NAME...]
#
# SUITE_DIR (or $SPIN_CONFORMANCE_TESTS) is a checkout of the suite; nothing is fetched from
# the network but crates (the components are built from the suite's sources with cargo) and,
# when a server is missing, Debian packages. The components are built into
# ${CARGO_TARGET_DIR:-target}/spin-conformance unless --out says otherwise; wafer is
# target/release/wafer, built here, unless --wafer or $WAFER names one. Prints `PASS name` or
# `FAIL name: reason` for each test, then `passed N of M`; exits 0 only if all passed.
# `--help` lists the other options. The work is done by scripts/spin-conformance/run.py
# (Python 3, standard library only).
set -euo pipefail
exec python3 "$(dirname "$0")/spin-conformance/run.py" "$@"
