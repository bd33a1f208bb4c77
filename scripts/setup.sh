#!/usr/bin/env bash
# Installs what building Wafer's examples and running its tests need, on Debian bookworm:
# the wasm Rust targets, clang + wasi-libc for C guests, Go >= 1.21 for GOOS=wasip1 guests,
# wrk/hyperfine for the benchmark, nats-server for the cluster tests, redis-server and
# mosquitto for the Spin outbound Redis and MQTT tests, the CNCF distribution server
# (docker-registry) and htpasswd (apache2-utils) for the OCI registry tests, Chromium + ChromeDriver
# for the dashboard test, the AssemblyScript compiler, and componentize-py /
# componentize-js for the Python and JavaScript components, and the Spin Python SDK and JS
# build tools for the Spin example apps, and PostgreSQL for the Spin outbound tests.
# Idempotent: a second run
# installs nothing.
set -euo pipefail

need_apt=()
command -v clang >/dev/null && [ -e /usr/lib/wasm32-wasi/libc.a ] \
  && compgen -G "/usr/lib/llvm-14/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null \
  || need_apt+=(clang lld wasi-libc libclang-rt-14-dev-wasm32)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v hyperfine >/dev/null || need_apt+=(hyperfine)
# Cluster tests start real NATS servers (JetStream: KV, Object Store).
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null || need_apt+=(nats-server)
# Spin's outbound Redis and MQTT are tested against a real redis-server and mosquitto.
[ -x /usr/bin/redis-server ] || command -v redis-server >/dev/null || need_apt+=(redis-server)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || need_apt+=(mosquitto)
# `wafer push` and `oci://` modules are tested against a real registry, with basic
# authentication from an htpasswd file (bcrypt, made by `htpasswd -B`).
[ -x /usr/bin/docker-registry ] || command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v htpasswd >/dev/null || need_apt+=(apache2-utils)
[ -x /usr/lib/go-1.23/bin/go ] || need_apt+=(golang-1.23-go)
# Spin's outbound PostgreSQL is tested against a real server (initdb + postgres per test).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
# The dashboard is tested in a real headless Chromium, driven over WebDriver.
command -v chromium >/dev/null && command -v chromedriver >/dev/null \
  || need_apt+=(chromium chromium-driver fonts-dejavu-core)

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

if [ ${#need_apt[@]} -gt 0 ]; then
  # Go 1.23 lives in bookworm-backports. Add that suite by copying the machine's own Debian
  # source entry (whatever mirror it uses) with the suite changed.
  if [[ " ${need_apt[*]} " == *" golang-1.23-go "* ]] \
    && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      awk 'BEGIN{RS=""; ORS="\n\n"} /Suites:[^\n]*bookworm( |$|\n)/ && !done {
             sub(/Suites:[^\n]*/, "Suites: bookworm-backports"); print; done=1 }' \
        /etc/apt/sources.list.d/debian.sources | $sudo tee /etc/apt/sources.list.d/wafer-backports.sources >/dev/null
    else
      grep -E '^deb .* bookworm( |$)' /etc/apt/sources.list | head -n1 \
        | sed -E 's/ bookworm( |$)/ bookworm-backports\1/' | $sudo tee /etc/apt/sources.list.d/wafer-backports.list >/dev/null
    fi
  fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

installed=$(rustup target list --installed)
for t in wasm32-wasip1 wasm32-wasip2 wasm32-unknown-unknown; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

# Python and JavaScript HTTP components: componentize-py (PyPI) in a venv and
# componentize-js (npm), both under target/guests/ (out of the repo, reused between runs).
root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
venv="$root/target/guests/venv"
if [ ! -x "$venv/bin/componentize-py" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    -r "$root/examples/http-hello-py/requirements.txt"
fi
js="$root/target/guests/js"
if [ ! -f "$js/node_modules/@bytecodealliance/componentize-js/package.json" ] \
  || ! cmp -s "$root/examples/http-hello-js/package-lock.json" "$js/package-lock.json"; then
  mkdir -p "$js"
  cp "$root/examples/http-hello-js/package.json" "$root/examples/http-hello-js/package-lock.json" "$js/"
  # `npm install` with the lock, not `npm ci`: some optional platform packages in the lock
  # were never published, which `npm ci` refuses.
  npm install --prefix "$js" --no-audit --no-fund --silent
  cp "$root/examples/http-hello-js/package-lock.json" "$js/package-lock.json"
fi

# AssemblyScript (the hello-as example): the compiler and the WASI shim, under target/guests/as.
as="$root/target/guests/as"
if [ ! -f "$as/node_modules/@assemblyscript/wasi-shim/asconfig.json" ] \
  || ! cmp -s "$root/examples/hello-as/package-lock.json" "$as/package-lock.json"; then
  mkdir -p "$as"
  cp "$root/examples/hello-as/package.json" "$root/examples/hello-as/package-lock.json" "$as/"
  npm ci --prefix "$as" --no-audit --no-fund --silent
fi

# The Spin example apps (examples/spin-py, examples/spin-js): the Spin Python SDK with the
# componentize-py it is built with, in a venv of its own, and the Spin JS build tools (npm),
# under target/guests/. Reinstalled when the app's requirements or lock file change.
spin_py="$root/target/guests/spin-py"
if [ ! -x "$spin_py/bin/componentize-py" ] \
  || ! cmp -s "$root/examples/spin-py/requirements.txt" "$spin_py/requirements.txt"; then
  python3 -m venv "$spin_py"
  "$spin_py/bin/pip" install --quiet --disable-pip-version-check \
    -r "$root/examples/spin-py/requirements.txt"
  cp "$root/examples/spin-py/requirements.txt" "$spin_py/requirements.txt"
fi
spin_js="$root/target/guests/spin-js"
if [ ! -f "$spin_js/node_modules/@spinframework/build-tools/package.json" ] \
  || ! cmp -s "$root/examples/spin-js/package-lock.json" "$spin_js/package-lock.json"; then
  mkdir -p "$spin_js"
  cp "$root/examples/spin-js/package.json" "$root/examples/spin-js/package-lock.json" "$spin_js/"
  npm ci --prefix "$spin_js" --no-audit --no-fund --silent
fi
