#!/usr/bin/env bash
# Builds every example guest into <repo>/target/wasm/:
#   hello-rust.wasm rustenv.wasm routes-rust.wasm visits-rust.wasm (cargo, wasm32-wasip1)
#   wapc-rust.wasm exports-rust.wasm complex-rust.wasm (cargo, wasm32-wasip1)
#   telemetry.wasm aggregator.wasm pipeline-gateway.wasm (cargo, wasm32-wasip1)
#   wapc-rust-unknown.wasm         (cargo, wasm32-unknown-unknown)
#   echo-service.wasm              (cargo, wasm32-wasip2: a WASI 0.2 command component)
#   http-hello-rust.wasm http-echo-rust.wasm visits-component-rust.wasm
#   shapes-component-rust.wasm pipeline-monitor.wasm (cargo, wasm32-wasip2:
#   WASI 0.2 HTTP components)
#   http-p3-rust.wasm              (cargo, wasm32-wasip2: a WASI 0.3 HTTP component)
#   cli-rust.wasm cli-p3-rust.wasm (cargo, wasm32-wasip2: WASI 0.2 and 0.3 command components)
#   hello-go.wasm goenv.wasm visits-go.wasm (Go >= 1.21, GOOS=wasip1)
#   hello-c.wasm exports-c.wasm visits-c.wasm (clang + wasi-libc)
#   hello-as.wasm (AssemblyScript, asc + @assemblyscript/wasi-shim)
#   http-hello-py.wasm http-hello-js.wasm visits-component-py.wasm visits-component-js.wasm
#   (componentize-py, componentize-js: HTTP components)
#   http-p3-py.wasm                (componentize-py: a WASI 0.3 HTTP component)
#   hello-wat.wat watenv.wat       (copied as is; the server compiles .wat itself)
#   spin-rust.wasm spin-pg-rust.wasm spin-py.wasm spin-js.wasm (Spin applications built with
#   the official Spin SDKs: Rust spin-sdk 7, Python spin-sdk 5, the JS build tools; each also
#   copied to where its spin.toml's `source` points, inside its git-ignored build
#   directory, so that `wafer up examples/spin-*/spin.toml` finds it)
#   spin-outbound-v2.wasm spin-outbound-p3.wasm (test guests of crates/wafer-cli/tests/it/
#   spin_outbound.rs, from crates/wafer-cli/tests/guests/spin-outbound: Spin's outbound
#   Redis and MQTT through WASI 0.2 bindings and through the Spin Rust SDK 7)
#   spin-rust.wasm spin-py.wasm spin-js.wasm (Spin applications built with the official Spin
#   SDKs: Rust spin-sdk 7, Python spin-sdk 5, the JS build tools; each also copied to where
#   its spin.toml's `source` points, inside its git-ignored build directory, so that
#   `wafer up examples/spin-*/spin.toml` finds it)
#
# Intermediate output goes to <repo>/target/guests/. An artifact in target/wasm/ is only
# rewritten when its bytes change, so its mtime moves only when it really was rebuilt.
# Incremental rebuilds come from cargo's and Go's own caches; clang just recompiles.
#
# Usage: bash examples/build.sh        (from any directory)
# Overrides: GO=/path/to/go, CC=/path/to/clang, WASI_SYSROOT=/path/to/wasi-sysroot
# (default: /usr/share/wasi-sysroot if it exists, else /usr, where Debian's wasi-libc
# package puts its files: /usr/include/wasm32-wasi, /usr/lib/wasm32-wasi).
set -euo pipefail

root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
ex="$root/examples"
out="$root/target/wasm"
work="$root/target/guests"
cc="${CC:-clang}"

die() { echo "build.sh: error: $*" >&2; exit 1; }

# --- toolchain checks: all up front, so nothing is half-built -------------------------
missing=()

if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
  missing+=("cargo/rustc (Rust toolchain)")
else
  for target in wasm32-wasip1 wasm32-wasip2 wasm32-unknown-unknown; do
    libdir="$(rustc --print target-libdir --target "$target" 2>/dev/null || true)"
    if [ -z "$libdir" ] || ! compgen -G "$libdir/libstd-*.rlib" >/dev/null; then
      missing+=("Rust target $target (rustup target add $target)")
    fi
  done
fi

# Go: $GO if set, else `go` on PATH if it is >= 1.21, else the Debian golang-1.23 package.
go_ok() { # $1 = go binary; succeeds if it exists and is >= 1.21
  local v major minor
  v="$("$1" env GOVERSION 2>/dev/null)" || return 1
  [[ "$v" =~ ^go([0-9]+)\.([0-9]+) ]] || return 1
  major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}"
  (( major > 1 || (major == 1 && minor >= 21) ))
}
go=""
if [ -n "${GO:-}" ]; then
  go_ok "$GO" && go="$GO" || missing+=("Go >= 1.21 at \$GO=$GO")
else
  for cand in "$(command -v go 2>/dev/null || true)" /usr/lib/go-1.23/bin/go; do
    if [ -n "$cand" ] && [ -x "$cand" ] && GOTOOLCHAIN=local go_ok "$cand"; then
      go="$cand"
      break
    fi
  done
  [ -n "$go" ] || missing+=("Go >= 1.21 (go on PATH or /usr/lib/go-1.23/bin/go)")
fi

if ! command -v "$cc" >/dev/null 2>&1; then
  missing+=("clang")
else
  # A wasi-sdk style sysroot has include/stdio.h; Debian's multiarch one include/wasm32-wasi/.
  has_wasi_libc() { [ -f "$1/include/stdio.h" ] || [ -f "$1/include/wasm32-wasi/stdio.h" ]; }
  if [ -n "${WASI_SYSROOT:-}" ]; then
    wasi_sysroot="$WASI_SYSROOT"
  elif has_wasi_libc /usr/share/wasi-sysroot; then
    wasi_sysroot=/usr/share/wasi-sysroot
  else
    wasi_sysroot=/usr
  fi
  has_wasi_libc "$wasi_sysroot" \
    || missing+=("wasi-libc (no sysroot at ${WASI_SYSROOT:-/usr/share/wasi-sysroot or /usr}; package wasi-libc)")
  rt="$("$cc" --target=wasm32-wasi -rtlib=compiler-rt -print-libgcc-file-name 2>/dev/null || true)"
  [ -n "$rt" ] && [ -f "$rt" ] \
    || missing+=("wasm32 compiler-rt builtins${rt:+ ($rt)} (package libclang-rt-14-dev-wasm32)")
fi

venv="$root/target/guests/venv"
js="$root/target/guests/js"
as="$root/target/guests/as"
[ -x "$as/node_modules/.bin/asc" ] \
  || missing+=("the AssemblyScript compiler (in $as; scripts/setup.sh installs it)")
[ -x "$venv/bin/componentize-py" ] \
  || missing+=("componentize-py (in $venv; scripts/setup.sh installs it)")
command -v node >/dev/null 2>&1 \
  && [ -f "$js/node_modules/@bytecodealliance/componentize-js/package.json" ] \
  || missing+=("node and componentize-js (in $js; scripts/setup.sh installs it)")
spin_py="$root/target/guests/spin-py"
spin_js="$root/target/guests/spin-js"
[ -x "$spin_py/bin/componentize-py" ] && [ -n "$(compgen -G "$spin_py/lib/python3*/site-packages/spin_sdk")" ] \
  || missing+=("the Spin Python SDK and componentize-py (in $spin_py; scripts/setup.sh installs them)")
[ -f "$spin_js/node_modules/@spinframework/build-tools/package.json" ] \
  || missing+=("the Spin JS build tools (in $spin_js; scripts/setup.sh installs them)")

if [ ${#missing[@]} -gt 0 ]; then
  {
    echo "build.sh: error: missing toolchain(s):"
    printf '  - %s\n' "${missing[@]}"
    echo "Run scripts/setup.sh to install them."
  } >&2
  exit 1
fi

mkdir -p "$out" "$work"

# install <built file> <name in target/wasm>: copy only if the bytes differ; one line per artifact.
install_artifact() {
  local src="$1" dst="$out/$2" state
  [ -s "$src" ] || die "expected build output $src is missing or empty"
  if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
    state="unchanged"
  else
    cp -- "$src" "$dst.tmp.$$"
    mv -f -- "$dst.tmp.$$" "$dst"
    state="built"
  fi
  printf '%-9s target/wasm/%-16s %8d bytes\n' "$state" "$2" "$(wc -c <"$dst")"
}

# --- Rust -----------------------------------------------------------------------------
CARGO_TARGET_DIR="$work" cargo build --quiet --release --target wasm32-wasip1 \
  --manifest-path "$ex/Cargo.toml" \
  || die "cargo build of the Rust examples failed"
for crate in hello-rust rustenv routes-rust visits-rust telemetry aggregator pipeline-gateway; do
  install_artifact "$work/wasm32-wasip1/release/$crate.wasm" "$crate.wasm"
done
# Library crates (cdylib) are named with underscores.
for crate in wapc-rust exports-rust complex-rust; do
  install_artifact "$work/wasm32-wasip1/release/${crate//-/_}.wasm" "$crate.wasm"
done
# WASI 0.2 components: a command run as a service (wasi:sockets), and HTTP components
# (wasi:http/proxy).
CARGO_TARGET_DIR="$work" cargo build --quiet --release --target wasm32-wasip2 \
  --manifest-path "$ex/Cargo.toml" -p echo-service -p http-hello-rust -p http-echo-rust \
  -p visits-component-rust -p shapes-component-rust -p pipeline-monitor -p http-p3-rust -p cli-rust -p cli-p3-rust \
  || die "cargo build of the WASI 0.2 and 0.3 component examples failed"
install_artifact "$work/wasm32-wasip2/release/echo-service.wasm" "echo-service.wasm"
install_artifact "$work/wasm32-wasip2/release/http_hello_rust.wasm" "http-hello-rust.wasm"
install_artifact "$work/wasm32-wasip2/release/http_echo_rust.wasm" "http-echo-rust.wasm"
install_artifact "$work/wasm32-wasip2/release/visits_component_rust.wasm" "visits-component-rust.wasm"
install_artifact "$work/wasm32-wasip2/release/shapes_component_rust.wasm" "shapes-component-rust.wasm"
install_artifact "$work/wasm32-wasip2/release/pipeline_monitor.wasm" "pipeline-monitor.wasm"
install_artifact "$work/wasm32-wasip2/release/http_p3_rust.wasm" "http-p3-rust.wasm"
install_artifact "$work/wasm32-wasip2/release/cli-rust.wasm" "cli-rust.wasm"
install_artifact "$work/wasm32-wasip2/release/cli_p3_rust.wasm" "cli-p3-rust.wasm"
# The waPC guest also without WASI, as most waPC hosts build it.
CARGO_TARGET_DIR="$work" cargo build --quiet --release --target wasm32-unknown-unknown \
  --manifest-path "$ex/Cargo.toml" -p wapc-rust \
  || die "cargo build of examples/wapc-rust for wasm32-unknown-unknown failed"
install_artifact "$work/wasm32-unknown-unknown/release/wapc_rust.wasm" "wapc-rust-unknown.wasm"

# --- Go -------------------------------------------------------------------------------
mkdir -p "$work/go"
for mod in hello-go goenv visits-go; do
  (
    cd "$ex/$mod"
    env GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOWORK=off GOPROXY=off GOFLAGS= \
      GOCACHE="$work/go-cache" GOPATH="$work/gopath" \
      "$go" build -trimpath -buildvcs=false -ldflags="-s -w" -o "$work/go/$mod.wasm" .
  ) || die "go build of examples/$mod failed (using $go)"
  install_artifact "$work/go/$mod.wasm" "$mod.wasm"
done

# --- C --------------------------------------------------------------------------------
mkdir -p "$work/c"
"$cc" -O2 --target=wasm32-wasi --sysroot="$wasi_sysroot" -Wall -Wextra -Wl,--strip-all \
  -o "$work/c/hello-c.wasm" "$ex/hello-c/hello.c" \
  || die "clang build of examples/hello-c failed"
install_artifact "$work/c/hello-c.wasm" "hello-c.wasm"
# A reactor (no main): its exports are called, `_initialize` sets up libc first.
"$cc" -O2 --target=wasm32-wasi --sysroot="$wasi_sysroot" -mexec-model=reactor -Wall -Wextra \
  -Wl,--strip-all -o "$work/c/exports-c.wasm" "$ex/exports-c/exports.c" \
  || die "clang build of examples/exports-c failed"
install_artifact "$work/c/exports-c.wasm" "exports-c.wasm"
# The capabilities example, with the C SDK header (guests/c/wafer.h).
"$cc" -O2 --target=wasm32-wasi --sysroot="$wasi_sysroot" -Wall -Wextra -Wl,--strip-all \
  -I"$root/guests/c" -o "$work/c/visits-c.wasm" "$ex/visits-c/visits.c" \
  || die "clang build of examples/visits-c failed"
install_artifact "$work/c/visits-c.wasm" "visits-c.wasm"

# --- Python and JavaScript HTTP components ----------------------------------------------
# Each takes 10-15 s, so each is rebuilt only when its sources are newer than its output.
stale() { # stale OUTPUT SOURCE...: the output is missing or older than a source
  [ ! -f "$1" ] || [ -n "$(find "${@:2}" -newer "$1" -print -quit)" ]
}
componentize_py() { # componentize_py EXAMPLE WIT-DIR WORLD OUTPUT
  # componentize-py writes __pycache__ beside the app: build from a copy.
  local src="$work/$1-src"
  rm -rf "$src" && mkdir -p "$src"
  cp "$ex/$1/app.py" "$src/"
  (cd "$src" && "$venv/bin/componentize-py" -d "$2" -w "$3" componentize app -o "$4.tmp") \
    >/dev/null || die "componentize-py build of examples/$1 failed"
  mv -f "$4.tmp" "$4"
}
py_out="$work/http-hello-py.wasm"
if stale "$py_out" "$ex/http-hello-py"; then
  componentize_py http-hello-py "$ex/http-hello-py/wit" hello "$py_out"
fi
install_artifact "$py_out" "http-hello-py.wasm"
# The same tool, with the wasi:http/service@0.3.0 world: a WASI 0.3 (component-model async) one.
p3py_out="$work/http-p3-py.wasm"
if stale "$p3py_out" "$ex/http-p3-py"; then
  componentize_py http-p3-py "$ex/http-p3-py/wit" service "$p3py_out"
fi
install_artifact "$p3py_out" "http-p3-py.wasm"
# AssemblyScript: compiled where setup.sh installed asc and the WASI shim (the example's
# asconfig.json extends the shim's, found under node_modules beside it).
as_out="$work/hello-as.wasm"
if stale "$as_out" "$ex/hello-as"; then
  rm -rf "$work/hello-as-src" && mkdir -p "$work/hello-as-src"
  cp -r "$ex/hello-as/assembly" "$ex/hello-as/asconfig.json" "$work/hello-as-src/"
  ln -s "$as/node_modules" "$work/hello-as-src/node_modules"
  (cd "$work/hello-as-src" && "$as/node_modules/.bin/asc" assembly/index.ts --target release \
    --outFile "$as_out.tmp") || die "asc build of examples/hello-as failed"
  mv -f "$as_out.tmp" "$as_out"
fi
install_artifact "$as_out" "hello-as.wasm"
js_out="$work/http-hello-js.wasm"
if stale "$js_out" "$ex/http-hello-js" "$ex/componentize-js.mjs"; then
  node "$ex/componentize-js.mjs" "$ex/http-hello-js" hello "$js_out.tmp" "$js" >/dev/null \
    || die "componentize-js build of examples/http-hello-js failed"
  mv -f "$js_out.tmp" "$js_out"
fi
install_artifact "$js_out" "http-hello-js.wasm"
# The visits components: their world, with the wasi:* packages of the hello examples and
# Wafer's own (wit/deps) beside it.
wit_for() { # wit_for DIR EXAMPLE WASI-DEPS: assembles the world of EXAMPLE in DIR
  rm -rf "$1" && mkdir -p "$1/deps"
  cp "$ex/$2/wit/world.wit" "$1/"
  cp "$ex/$3"/wit/deps/*.wit "$1/deps/"
  cp -r "$root"/wit/deps/keyvalue "$root"/wit/deps/config-0.2.0-draft "$root"/wit/deps/logging \
    "$root"/wit/deps/pubsub "$1/deps/"
}
vpy_out="$work/visits-component-py.wasm"
if stale "$vpy_out" "$ex/visits-component-py" "$root/wit"; then
  wit_for "$work/visits-py-wit" visits-component-py http-hello-py
  componentize_py visits-component-py "$work/visits-py-wit" visits "$vpy_out"
fi
install_artifact "$vpy_out" "visits-component-py.wasm"
vjs_out="$work/visits-component-js.wasm"
if stale "$vjs_out" "$ex/visits-component-js" "$root/wit" "$ex/componentize-js.mjs"; then
  wit_for "$work/visits-js-wit" visits-component-js http-hello-js
  node "$ex/componentize-js.mjs" "$ex/visits-component-js" visits "$vjs_out.tmp" "$js" \
    "$work/visits-js-wit" >/dev/null \
    || die "componentize-js build of examples/visits-component-js failed"
  mv -f "$vjs_out.tmp" "$vjs_out"
fi
install_artifact "$vjs_out" "visits-component-js.wasm"

# --- Spin applications (examples/spin-*) -----------------------------------------------
# Each is a Spin app built as its spin.toml's build command does; the component goes to
# target/wasm/ and to the path the manifest's `source` names (git-ignored).
install_spin_source() { # install_spin_source <built file> <app dir> <source path in spin.toml>
  local dst="$2/$3"
  mkdir -p "$(dirname -- "$dst")"
  cmp -s "$1" "$dst" 2>/dev/null || { cp -- "$1" "$dst.tmp.$$" && mv -f -- "$dst.tmp.$$" "$dst"; }
}
# Rust, spin-sdk 7 (WASI 0.3): its own workspace and lock file, built in its own target/
# directory as `spin build` does, so the manifest's source is cargo's output itself.
CARGO_TARGET_DIR="$ex/spin-rust/target" cargo build --quiet --release --locked \
  --target wasm32-wasip2 --manifest-path "$ex/spin-rust/Cargo.toml" \
  || die "cargo build of examples/spin-rust failed (spin-sdk 7 needs Rust >= 1.94)"
install_artifact "$ex/spin-rust/target/wasm32-wasip2/release/spin_rust.wasm" "spin-rust.wasm"
# The same SDK with outbound PostgreSQL: the same lock file's versions, built in spin-rust's
# target/ directory to share its compiled dependencies, then put where its manifest's
# `source` points.
CARGO_TARGET_DIR="$ex/spin-rust/target" cargo build --quiet --release --locked \
  --target wasm32-wasip2 --manifest-path "$ex/spin-pg-rust/Cargo.toml" \
  || die "cargo build of examples/spin-pg-rust failed (spin-sdk 7 needs Rust >= 1.94)"
spin_pg_out="$ex/spin-rust/target/wasm32-wasip2/release/spin_pg_rust.wasm"
install_artifact "$spin_pg_out" "spin-pg-rust.wasm"
install_spin_source "$spin_pg_out" "$ex/spin-pg-rust" target/wasm32-wasip2/release/spin_pg_rust.wasm
# Python, spin-sdk 5: componentize-py finds the SDK's WIT and bindings (its
# componentize-py.toml) through the venv, which must come first on PATH, as if activated.
spin_py_out="$work/spin-py.wasm"
if stale "$spin_py_out" "$ex/spin-py/app.py" "$ex/spin-py/requirements.txt"; then
  rm -rf "$work/spin-py-src" && mkdir -p "$work/spin-py-src"
  cp "$ex/spin-py/app.py" "$work/spin-py-src/"
  (cd "$work/spin-py-src" && PATH="$spin_py/bin:$PATH" VIRTUAL_ENV="$spin_py" \
    componentize-py -w spin:up/http-trigger@4.1.0 componentize app -o "$spin_py_out.tmp") \
    >/dev/null || die "componentize-py build of examples/spin-py failed"
  mv -f "$spin_py_out.tmp" "$spin_py_out"
fi
install_artifact "$spin_py_out" "spin-py.wasm"
install_spin_source "$spin_py_out" "$ex/spin-py" app.wasm
# JavaScript, @spinframework/build-tools (j2w, ComponentizeJS; WASI 0.2): `npm run build` in a
# copy of the app with the packages setup.sh installed. j2w reports a failure but exits 0,
# so its output is checked.
spin_js_out="$work/spin-js.wasm"
if stale "$spin_js_out" "$ex/spin-js/src" "$ex/spin-js/wit" "$ex/spin-js/build.mjs" \
  "$ex/spin-js/package.json"; then
  src="$work/spin-js-src"
  rm -rf "$src" && mkdir -p "$src"
  cp -r "$ex/spin-js/src" "$ex/spin-js/wit" "$ex/spin-js/build.mjs" "$ex/spin-js/package.json" "$src/"
  ln -s "$spin_js/node_modules" "$src/node_modules"
  (cd "$src" && npm run --silent build) >/dev/null && [ -s "$src/dist/spin-js.wasm" ] \
    || die "the build of examples/spin-js failed (npm run build in $src)"
  mv -f "$src/dist/spin-js.wasm" "$spin_js_out"
fi
install_artifact "$spin_js_out" "spin-js.wasm"
install_spin_source "$spin_js_out" "$ex/spin-js" dist/spin-js.wasm

# --- Test guests (crates/wafer-cli/tests/guests/spin-outbound) ---------------------------
# A workspace and lock file of their own, like examples/spin-rust (spin-sdk 7 needs Rust >= 1.94).
outbound="$root/crates/wafer-cli/tests/guests/spin-outbound"
CARGO_TARGET_DIR="$work/spin-outbound" cargo build --quiet --release --locked \
  --target wasm32-wasip2 --manifest-path "$outbound/Cargo.toml" \
  || die "cargo build of the spin-outbound test guests failed"
install_artifact "$work/spin-outbound/wasm32-wasip2/release/spin_outbound_v2.wasm" "spin-outbound-v2.wasm"
install_artifact "$work/spin-outbound/wasm32-wasip2/release/spin_outbound_p3.wasm" "spin-outbound-p3.wasm"

# --- WAT (served as text) -------------------------------------------------------------
install_artifact "$ex/hello-wat/hello.wat" "hello-wat.wat"
install_artifact "$ex/watenv/watenv.wat" "watenv.wat"
