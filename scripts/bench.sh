#!/usr/bin/env bash
# Wafer's benchmark: HTTP throughput/latency of Wafer against a native hyper server.
#
# Both servers are pinned to CPU 0 and the load generator (wrk, one thread) to CPU 1, so the
# server side gets exactly one core. Every target is measured with 32 connections and with 1
# connection; each measured run is preceded by a 2 s warm-up run. Targets:
#   native            bench/native-hello (hyper, current-thread tokio) - the reference
#   wafer hello-wat   `wafer up` serving target/wasm/hello-wat.wat
#   wafer hello-rust  `wafer up` serving target/wasm/hello-rust.wasm
#   wafer http-hello-rust  `wafer up` serving the Rust HTTP component (wasi:http/proxy)
#   wafer http-hello-rust-reuse  the same with instance_reuse = $BENCH_REUSE
#   wafer http-p3-rust  `wafer up` serving the Rust WASI 0.3 HTTP component (wasi:http/handler)
#   wafer http-p3-rust-reuse  the same with instance_reuse = $BENCH_REUSE and
#                     max_concurrent_per_instance = $BENCH_CONCURRENT
#   wasmtime-serve    `wasmtime serve` with the same 0.2 component, if wasmtime is installed
#   wasmtime-serve-reuse  the same with --max-instance-reuse-count $BENCH_REUSE
#   wasmtime-serve-p3 `wasmtime serve -Wcomponent-model-async -Sp3,http` with the 0.3
#                     component, a fresh instance per request (--max-instance-reuse-count 1:
#                     wasmtime's default for 0.3 components is reuse)
#   wasmtime-serve-p3-reuse  the same with --max-instance-reuse-count $BENCH_REUSE
#                     --max-instance-concurrent-reuse-count $BENCH_CONCURRENT
# Then every server is left without requests for 10 s and its CPU time over that read (an
# idle server should use none); native and the WAT hello are measured again in alternating
# pairs at 32 connections (the median of their ratios is the headline figure: it is not skewed by the VM's speed drifting between two
# runs a minute apart), the Go example's first request after each of $BENCH_RESTARTS restarts
# of `wafer serve` (with native-hello's first request after its own restarts alongside, the
# floor), a two-node cluster on nats-server (deploy-to-served latency across the nodes, and
# requests/s through both against the embedded node), the cost of tracing (an untraced and a
# traced server in alternating pairs, spans sent to an OTLP sink), and, if it was built,
# target/<profile>/wafer-bench (in-process timings).
#
# Everything Rust is built with the `dist` profile (fat LTO, see Cargo.toml), the native
# reference included, so both sides get the same compiler treatment.
#
# Beside requests/s and latency, every target's row gives the server's CPU time per request,
# user and system apart (from /proc/PID/stat over the measured run). Requests/s also counts
# the time a server waits for the load generator to wake; CPU per request counts only the
# server's own work, so it is the figure to compare between runs and machines. Each Wafer /
# wasmtime serve pair (0.2 and 0.3, fresh and reused) is summed up in one line: both sides'
# requests/s and CPU time per request (user + system), and the requests/s ratio.
#
# Output: a table on stdout, the same rows as JSON lines in target/bench/results.jsonl
# (overwritten each run), and the raw wrk outputs in target/bench/wrk-<target>-c<N>.txt.
#
# Usage: bash scripts/bench.sh          (from any directory)
# Environment:
#   BENCH_SECONDS=10        length of each measured wrk run (warm-up is always 2 s)
#   BENCH_TARGETS="native wafer"   which servers to measure (e.g. "native" alone)
#   BENCH_NO_BUILD=1        skip the cargo build and examples/build.sh (use what is built)
#   BENCH_PROFILE=dist      the cargo profile to build and run (`release` builds faster)
#   BENCH_SERVER_CPU=0 BENCH_CLIENT_CPU=1   CPUs for the servers / for wrk
#   BENCH_PORT=18090        first port tried; the servers take the first free ports from here
#   BENCH_REUSE=128         requests per instance in the reuse runs (wasmtime's WASIp3 default)
#   BENCH_CONCURRENT=16     requests at once per 0.3 instance in the reuse runs (wasmtime's default)
#   BENCH_PAIRS=5           alternating native / hello-wat pairs at c32 (0: none), see below
#   BENCH_PAIR_SECONDS=5    length of each measured run in a pair
#   BENCH_IDLE_SECONDS=10   how long every server is left idle, after its load, to read its idle CPU (0: not)
#   BENCH_RESTARTS=10       restarts of `wafer serve` to time the Go example's first request
#   BENCH_TRACING=1         the tracing section (0 skips it)
#   BENCH_CLUSTER=1         the cluster section (needs nats-server; 0 skips it)
#   CARGO_TARGET_DIR        honoured for the Rust binaries; guests are always in target/wasm
set -euo pipefail

root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  target_dir="$(realpath -m -- "$CARGO_TARGET_DIR")"
else
  target_dir="$root/target"
fi
profile="${BENCH_PROFILE:-dist}"
bin="$target_dir/$profile"
wasm_dir="$root/target/wasm"
out_dir="$root/target/bench"
cd "$root"

seconds="${BENCH_SECONDS:-10}"
targets=" ${BENCH_TARGETS:-native wafer} "
server_cpu="${BENCH_SERVER_CPU:-0}"
client_cpu="${BENCH_CLIENT_CPU:-1}"
warmup_seconds=2
conns_list=(32 1)
wafer_functions=(hello-wat hello-rust http-hello-rust http-p3-rust)
reuse="${BENCH_REUSE:-128}"
concurrent="${BENCH_CONCURRENT:-16}"
pairs="${BENCH_PAIRS:-5}"
pair_seconds="${BENCH_PAIR_SECONDS:-5}"
restarts="${BENCH_RESTARTS:-10}"
idle_seconds="${BENCH_IDLE_SECONDS:-10}"

die() { echo "bench.sh: error: $*" >&2; exit 1; }
log() { echo "bench.sh: $*" >&2; }

[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a positive integer, got '$seconds'"
[[ "$reuse" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REUSE must be a positive integer, got '$reuse'"
[[ "$concurrent" =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONCURRENT must be a positive integer, got '$concurrent'"
[[ "$pairs" =~ ^[0-9]+$ ]] || die "BENCH_PAIRS must be a whole number, got '$pairs'"
[[ "$pair_seconds" =~ ^[1-9][0-9]*$ ]] || die "BENCH_PAIR_SECONDS must be a positive integer, got '$pair_seconds'"
[[ "$idle_seconds" =~ ^[0-9]+$ ]] || die "BENCH_IDLE_SECONDS must be a whole number, got '$idle_seconds'"
[[ "$restarts" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RESTARTS must be a positive integer, got '$restarts'"
for tool in cargo curl wrk taskset awk; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (scripts/setup.sh installs wrk)"
done
ncpu="$(nproc)"
if [ "$ncpu" -lt 2 ]; then
  log "warning: only $ncpu CPU; servers and wrk share CPU 0, so figures are not comparable"
  server_cpu=0 client_cpu=0
fi

# --- cleanup --------------------------------------------------------------------------
tmp="$(mktemp -d "${TMPDIR:-/tmp}/wafer-bench.XXXXXX")"
server_pids=()
stop_servers() {
  local pid
  for pid in "${server_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${server_pids[@]}"; do
    # Give each server a moment to exit on SIGTERM, then make sure.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  server_pids=()
}
cleanup() {
  stop_servers
  rm -rf -- "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build ----------------------------------------------------------------------------
want_wafer=0
[[ "$targets" == *" wafer "* ]] && want_wafer=1
want_native=0
[[ "$targets" == *" native "* ]] && want_native=1
[ $want_native = 1 ] || [ $want_wafer = 1 ] || die "BENCH_TARGETS must name native and/or wafer"

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  pkgs=(-p native-hello)
  [ $want_wafer = 1 ] && pkgs+=(-p wafer-cli)
  if [ -f bench/Cargo.toml ] && grep -Eq '^[[:space:]]*name[[:space:]]*=[[:space:]]*"wafer-bench"' bench/Cargo.toml; then
    pkgs+=(-p wafer-bench)
  fi
  log "building: cargo build --profile $profile ${pkgs[*]}"
  cargo build --profile "$profile" "${pkgs[@]}"
  if [ $want_wafer = 1 ]; then
    log "building guests: bash examples/build.sh"
    bash examples/build.sh
  fi
fi

# guest_path <function>: prints target/wasm/<function>.wasm or .wat, whichever exists.
guest_path() {
  local ext
  for ext in wasm wat; do
    if [ -f "$wasm_dir/$1.$ext" ]; then echo "$wasm_dir/$1.$ext"; return 0; fi
  done
  return 1
}

[ $want_native = 1 ] && { [ -x "$bin/native-hello" ] || die "$bin/native-hello is missing"; }
if [ $want_wafer = 1 ]; then
  [ -x "$bin/wafer" ] || die "$bin/wafer is missing"
  for f in "${wafer_functions[@]}"; do
    guest_path "$f" >/dev/null || die "guest $f is missing from target/wasm (bash examples/build.sh builds it)"
  done
fi

# --- servers --------------------------------------------------------------------------
next_port="${BENCH_PORT:-18090}"
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_port <var>: sets the variable to the first port >= next_port nobody listens on, and
# advances next_port. Not through $(...): a subshell's next_port would not advance, and two
# ports taken before either server listens would be the same one.
free_port() {
  local p="$next_port"
  while port_in_use "$p"; do
    p=$((p + 1))
    [ "$p" -lt $((next_port + 200)) ] || die "no free port in $next_port..$p"
  done
  next_port=$((p + 1))
  printf -v "$1" '%s' "$p"
}

# start_server <name> <cmd...>: starts the command pinned to the server CPU, logging to $tmp.
# The log is emptied here, not by the background job's redirection, which may run only after
# wait_listening has read a restarted server's old log and its "listening on" line.
started_pid=""
start_server() {
  local name="$1"
  shift
  : >"$tmp/$name.log"
  taskset -c "$server_cpu" "$@" >>"$tmp/$name.log" 2>&1 &
  started_pid=$!
  server_pids+=("$started_pid")
}

# wait_ready <name> <pid> <url>: polls until the URL answers 200 (60 s), failing fast if the
# server exits. Prints the first line of the answer so a wrong body is noticed.
wait_ready() {
  local name="$1" pid="$2" url="$3" deadline=$((SECONDS + 60)) code
  while :; do
    code="$(curl -s -o "$tmp/probe.body" -w '%{http_code}' --max-time 2 "$url" || true)"
    if [ "$code" = 200 ]; then
      log "$name ready at $url: $(head -c 80 "$tmp/probe.body" | head -n1)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited before answering $url; its log:"
      sed 's/^/    /' "$tmp/$name.log" >&2 || true
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$name did not answer 200 at $url within 60 s (last status: ${code:-none}); its log:"
      tail -n 40 "$tmp/$name.log" | sed 's/^/    /' >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

# TOML basic string with backslashes and quotes escaped.
toml_str() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; printf '"%s"' "$s"; }

bench_targets=() # "label|url"
declare -A pid_of=() # the server process behind each target label, for its CPU time
if [ $want_native = 1 ]; then
  free_port port
  start_server native "$bin/native-hello" "127.0.0.1:$port"
  wait_ready native "$started_pid" "http://127.0.0.1:$port/"
  bench_targets+=("native|http://127.0.0.1:$port/")
  pid_of[native]="$started_pid"
fi
if [ $want_wafer = 1 ]; then
  free_port port
  manifest="$tmp/wafer.toml"
  : >"$manifest"
  for f in "${wafer_functions[@]}"; do
    m="$(guest_path "$f")"
    printf '[[function]]\nname = %s\nmodule = %s\n\n' "$(toml_str "$f")" "$(toml_str "$m")" >>"$manifest"
  done
  printf '[[function]]\nname = "http-hello-rust-reuse"\nmodule = %s\nlimits = { instance_reuse = %d }\n\n' \
    "$(toml_str "$(guest_path http-hello-rust)")" "$reuse" >>"$manifest"
  printf '[[function]]\nname = "http-p3-rust-reuse"\nmodule = %s\nlimits = { instance_reuse = %d, max_concurrent_per_instance = %d }\n\n' \
    "$(toml_str "$(guest_path http-p3-rust)")" "$reuse" "$concurrent" >>"$manifest"
  mkdir -p "$tmp/data"
  free_port admin_port
  start_server wafer "$bin/wafer" up "$manifest" --listen "127.0.0.1:$port" \
    --admin-listen "127.0.0.1:$admin_port" --data "$tmp/data"
  wafer_pid="$started_pid"
  for f in "${wafer_functions[@]}" http-hello-rust-reuse http-p3-rust-reuse; do
    wait_ready wafer "$wafer_pid" "http://127.0.0.1:$port/$f"
    bench_targets+=("wafer $f|http://127.0.0.1:$port/$f")
    pid_of["wafer $f"]="$wafer_pid"
  done
fi

# --- wasmtime serve -------------------------------------------------------------------
# The same Rust hello components under `wasmtime serve`, when a wasmtime is installed:
# $WASMTIME, else `wasmtime` on PATH. (cargo install wasmtime-cli --locked --version 48.0.8
# installs the one to compare with.) A fresh instance per request is wasmtime's default for a
# 0.2 component; for a 0.3 one its default is reuse (128 requests, 16 at once), so the fresh
# 0.3 row asks for one request per instance.
wasmtime_bin="${WASMTIME:-$(command -v wasmtime 2>/dev/null || true)}"
if [ $want_wafer = 1 ] && [ -n "$wasmtime_bin" ] && [ -x "$wasmtime_bin" ]; then
  log "wasmtime: $("$wasmtime_bin" --version 2>/dev/null || echo 'version unknown') at $wasmtime_bin"
  # start_wasmtime <label> <guest> <serve flags...>: one `wasmtime serve` target.
  start_wasmtime() {
    local label="$1" guest="$2" port
    shift 2
    free_port port
    # -Scli: Rust's std imports wasi:cli interfaces beyond the proxy world, as Wafer provides.
    start_server "$label" "$wasmtime_bin" serve -Scli --addr "127.0.0.1:$port" "$@" "$(guest_path "$guest")"
    wait_ready "$label" "$started_pid" "http://127.0.0.1:$port/"
    bench_targets+=("$label|http://127.0.0.1:$port/")
    pid_of["$label"]="$started_pid"
  }
  start_wasmtime wasmtime-serve http-hello-rust
  start_wasmtime wasmtime-serve-reuse http-hello-rust --max-instance-reuse-count "$reuse"
  p3=(-Wcomponent-model-async -Sp3,http)
  start_wasmtime wasmtime-serve-p3 http-p3-rust "${p3[@]}" \
    --max-instance-reuse-count 1 --max-instance-concurrent-reuse-count 1
  start_wasmtime wasmtime-serve-p3-reuse http-p3-rust "${p3[@]}" \
    --max-instance-reuse-count "$reuse" --max-instance-concurrent-reuse-count "$concurrent"
else
  log "wasmtime: not installed (set WASMTIME=/path/to/wasmtime); wasmtime serve is not measured"
fi

# --- measure --------------------------------------------------------------------------
# Anything else running (e.g. a cargo build) skews the figures badly: hello-world rps on
# this kind of machine drops ~5x under a parallel build. Warn, don't refuse.
load1="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)"
busy="$(ps -eo comm= 2>/dev/null | grep -cE '^(rustc|cargo|cc1|cc1plus|clang|go|ld|lld)$' || true)"
if [ "${busy:-0}" -gt 0 ] || awk -v l="$load1" 'BEGIN { exit !(l >= 1.0) }'; then
  log "warning: machine is busy (load $load1, $busy compiler processes); figures will be low and noisy"
fi

# parse_wrk <file>: prints "rps p50_ms p99_ms requests errors" ("null" where wrk printed
# nothing). errors = non-2xx/3xx responses + socket errors (connect, read, write, timeout).
parse_wrk() {
  awk '
    # Numbers are printed with explicit formats: awk would otherwise use "%.6g".
    function num(x,   s) { s = sprintf("%.5f", x); sub(/0+$/, "", s); sub(/\.$/, "", s); return s }
    function ms(v,   n, u) {
      if (!match(v, /^[0-9]+(\.[0-9]+)?/)) return "null"
      n = substr(v, 1, RLENGTH) + 0; u = substr(v, RLENGTH + 1)
      if (u == "us") return num(n / 1000)
      if (u == "ms") return num(n)
      if (u == "s")  return num(n * 1000)
      if (u == "m")  return num(n * 60000)
      if (u == "h")  return num(n * 3600000)
      return "null"
    }
    BEGIN { rps = p50 = p99 = reqs = "null"; errors = 0 }
    $1 == "Requests/sec:" && $2 ~ /^[0-9]+(\.[0-9]+)?$/ { rps = $2 }
    $1 == "50%"             { p50 = ms($2) }
    $1 == "99%"             { p99 = ms($2) }
    $2 == "requests" && $3 == "in" && $1 ~ /^[0-9]+$/ { reqs = $1 }
    /Non-2xx or 3xx responses:/ { errors += $NF }
    $1 == "Socket" && $2 == "errors:" {
      for (i = 3; i <= NF; i++) { v = $i; gsub(/,/, "", v); if (v ~ /^[0-9]+$/) errors += v }
    }
    END { print rps, p50, p99, reqs, errors }
  ' "$1"
}

mkdir -p "$out_dir"
results="$out_dir/results.jsonl"
: >"$results.tmp"
run_ts="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
git_rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
json_str() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; printf '"%s"' "$s"; }

# cpu_ticks <pid>: the process's user and system CPU time so far, in clock ticks (fields 14
# and 15 of /proc/PID/stat, counted after the parenthesised command name); nothing if the
# process is gone.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12, $13 }' "/proc/$1/stat" 2>/dev/null || true; }
clk_tck="$(getconf CLK_TCK)"
# per_request <ticks> <requests>: microseconds of CPU per request.
per_request() { awk -v t="$1" -v n="$2" -v hz="$clk_tck" 'BEGIN { if (n > 0) printf "%.1f", t / hz / n * 1e6; else print "null" }'; }

declare -A native_rps=() rps_of=() cpu_of=() # rps_of["label|conns"]; cpu_of: user + system us per request
rows=()
failed=0
for conns in "${conns_list[@]}"; do
  for t in "${bench_targets[@]}"; do
    label="${t%%|*}" url="${t#*|}"
    slug="${label// /-}"
    raw="$out_dir/wrk-$slug-c$conns.txt"
    log "$label, $conns connection(s): warm-up ${warmup_seconds}s, measuring ${seconds}s"
    taskset -c "$client_cpu" wrk -t1 -c"$conns" -d"${warmup_seconds}s" "$url" >/dev/null 2>&1 || true
    read -r user0 sys0 < <(cpu_ticks "${pid_of[$label]}")
    if ! taskset -c "$client_cpu" wrk -t1 -c"$conns" -d"${seconds}s" --latency "$url" >"$raw" 2>&1; then
      log "wrk failed against $url:"
      sed 's/^/    /' "$raw" >&2
    fi
    read -r user1 sys1 < <(cpu_ticks "${pid_of[$label]}")
    read -r rps p50 p99 reqs errors < <(parse_wrk "$raw")
    user_us=null sys_us=null cpu_us=null
    if [ "$reqs" != null ] && [ -n "$user0" ] && [ -n "$user1" ]; then
      user_us="$(per_request $((user1 - user0)) "$reqs")" sys_us="$(per_request $((sys1 - sys0)) "$reqs")"
      cpu_us="$(per_request $((user1 - user0 + sys1 - sys0)) "$reqs")"
    fi
    if [ "$rps" = null ] || [ "$reqs" = null ] || [ "$reqs" = 0 ]; then
      log "no result for $label at c$conns (raw output: $raw)"
      failed=1
    fi
    if [ "$errors" != 0 ]; then
      log "warning: $label at c$conns: $errors errors/non-2xx responses (see $raw)"
      failed=1
    fi
    [ "$label" = native ] && native_rps[$conns]="$rps"
    rps_of["$label|$conns"]="$rps"
    cpu_of["$label|$conns"]="$cpu_us"
    ratio=null
    base="${native_rps[$conns]:-null}"
    if [ "$rps" != null ] && [ "$base" != null ]; then
      ratio="$(awk -v a="$rps" -v b="$base" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "null" }')"
    fi
    rows+=("$label|$conns|$rps|$p50|$p99|$ratio|$errors|$user_us|$sys_us")
    printf '{"ts":%s,"git_rev":%s,"cpu":%s,"target":%s,"url":%s,"connections":%d,"seconds":%d,"rps":%s,"p50_ms":%s,"p99_ms":%s,"ratio_to_native":%s,"requests":%s,"errors":%s,"cpu_user_us_per_request":%s,"cpu_system_us_per_request":%s}\n' \
      "$(json_str "$run_ts")" "$(json_str "$git_rev")" "$(json_str "$cpu_model")" \
      "$(json_str "$label")" "$(json_str "$url")" "$conns" "$seconds" \
      "$rps" "$p50" "$p99" "$ratio" "$reqs" "$errors" "$user_us" "$sys_us" >>"$results.tmp"
  done
done
mv -f -- "$results.tmp" "$results"

# --- idle -----------------------------------------------------------------------------
# With no request in flight a server should use no CPU: every server, right after its load,
# is left alone for $idle_seconds s and its CPU time over that span read.
idle_report=()
if [ "$idle_seconds" -gt 0 ]; then
  declare -A idle_pids=() idle_start=()
  for label in "${!pid_of[@]}"; do
    case "$label" in wafer\ *) name=wafer ;; *) name="$label" ;; esac
    idle_pids[$name]="${pid_of[$label]}"
  done
  log "idle: ${idle_seconds}s with no requests"
  for name in "${!idle_pids[@]}"; do
    read -r u s < <(cpu_ticks "${idle_pids[$name]}") && idle_start[$name]=$((u + s))
  done
  sleep "$idle_seconds"
  for name in $(printf '%s\n' "${!idle_pids[@]}" | sort); do
    [ -n "${idle_start[$name]:-}" ] || continue
    read -r u s < <(cpu_ticks "${idle_pids[$name]}") || continue
    pct="$(awk -v t=$((u + s - idle_start[$name])) -v hz="$clk_tck" -v d="$idle_seconds" 'BEGIN { printf "%.2f", t / hz / d * 100 }')"
    idle_report+=("$name $pct%")
    printf '{"ts":%s,"git_rev":%s,"target":%s,"idle_seconds":%d,"idle_cpu_percent":%s}\n' \
      "$(json_str "$run_ts")" "$(json_str "$git_rev")" "$(json_str "$name")" "$idle_seconds" "$pct" >>"$results"
  done
fi

# --- alternating pairs ----------------------------------------------------------------
# This kind of VM drifts in speed by up to a quarter within minutes, so a ratio of two runs
# taken a minute apart can be off by as much. The headline figure, the WAT hello against
# native at 32 connections, is therefore measured again in back-to-back pairs (native, then
# Wafer, each after its own warm-up); the median of the pairs' ratios is the one to quote.
pair_ratios=()
url_of() { local t; for t in "${bench_targets[@]}"; do [ "${t%%|*}" = "$1" ] && echo "${t#*|}"; done; return 0; }
native_url="$(url_of native)" wat_url="$(url_of "wafer hello-wat")"
if [ "$pairs" -gt 0 ] && [ -n "$native_url" ] && [ -n "$wat_url" ]; then
  log "alternating pairs: native / wafer hello-wat at c32, $pairs pairs of ${pair_seconds}s each"
  pair_rps() { # <url> <raw file>: warm up, measure, print rps
    taskset -c "$client_cpu" wrk -t1 -c32 -d"${warmup_seconds}s" "$1" >/dev/null 2>&1 || true
    taskset -c "$client_cpu" wrk -t1 -c32 -d"${pair_seconds}s" "$1" >"$2" 2>&1 || true
    parse_wrk "$2" | cut -d' ' -f1
  }
  for i in $(seq "$pairs"); do
    n="$(pair_rps "$native_url" "$out_dir/wrk-pair$i-native.txt")"
    w="$(pair_rps "$wat_url" "$out_dir/wrk-pair$i-hello-wat.txt")"
    if [ "$n" = null ] || [ "$w" = null ]; then
      log "no result for pair $i (raw output: $out_dir/wrk-pair$i-*.txt)"
      failed=1
      continue
    fi
    pair_ratios+=("$(awk -v a="$w" -v b="$n" 'BEGIN { printf "%.3f", a / b }')")
    log "pair $i: native $n rps, hello-wat $w rps, ratio ${pair_ratios[-1]}"
  done
fi
# --- tracing --------------------------------------------------------------------------
# The cost of tracing: two `wafer serve` with the WAT hello alone, one of them exporting
# every span (OTEL_TRACES_SAMPLER=always_on, a batch queue big enough to drop none) over
# OTLP gRPC to `wafer-bench otlp-sink` on the client CPU, measured like the headline figure in
# $pairs alternating pairs at c32. Both sides' requests/s and server CPU per request, their
# ratios, and the spans the sink received per request. CPU per request is the figure to
# quote: the sink shares wrk's CPU, so the traced side's requests/s also pays for decoding.
trace_report=()
if [ $want_wafer = 1 ] && [ "${BENCH_TRACING:-1}" != 0 ] && [ "$pairs" -gt 0 ] && [ -x "$bin/wafer-bench" ]; then
  log "tracing: untraced / traced wafer serve, hello-wat at c32, $pairs pairs of ${pair_seconds}s each"
  free_port sink_port
  echo 0 >"$tmp/spans"
  taskset -c "$client_cpu" "$bin/wafer-bench" otlp-sink "$sink_port" "$tmp/spans" >"$tmp/otlp-sink.log" 2>&1 &
  server_pids+=($!)
  for _ in $(seq 100); do port_in_use "$sink_port" && break; sleep 0.05; done
  declare -A trace_url=() trace_pid=()
  for side in untraced traced; do
    free_port port
    free_port admin_port
    otel=()
    [ "$side" = traced ] && otel=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port"
      OTEL_TRACES_SAMPLER=always_on OTEL_BSP_MAX_QUEUE_SIZE=1000000 OTEL_SERVICE_NAME=wafer-bench)
    start_server "trace-$side" env "${otel[@]}" "$bin/wafer" serve --listen "127.0.0.1:$port" \
      --admin-listen "127.0.0.1:$admin_port" --data "$tmp/trace-$side"
    trace_pid[$side]="$started_pid"
    wait_ready "trace-$side" "$started_pid" "http://127.0.0.1:$port/readyz"
    WAFER_TOKEN="$(cat "$tmp/trace-$side/admin-token")" "$bin/wafer" deploy hello-wat "$(guest_path hello-wat)" \
      --server "http://127.0.0.1:$admin_port" >/dev/null
    trace_url[$side]="http://127.0.0.1:$port/hello-wat"
    wait_ready "trace-$side" "$started_pid" "${trace_url[$side]}"
  done
  traced_requests=0
  # trace_run <side> <pair>: warm up, measure; prints "rps cpu_us_per_request".
  trace_run() {
    local raw="$out_dir/wrk-tracing-$2-$1.txt" u0 s0 u1 s1 rps reqs warm
    taskset -c "$client_cpu" wrk -t1 -c32 -d"${warmup_seconds}s" "${trace_url[$1]}" >"$raw.warmup" 2>&1 || true
    read -r u0 s0 < <(cpu_ticks "${trace_pid[$1]}")
    taskset -c "$client_cpu" wrk -t1 -c32 -d"${pair_seconds}s" "${trace_url[$1]}" >"$raw" 2>&1 || true
    read -r u1 s1 < <(cpu_ticks "${trace_pid[$1]}")
    read -r rps _ _ reqs _ < <(parse_wrk "$raw")
    read -r _ _ _ warm _ < <(parse_wrk "$raw.warmup")
    echo "$rps $(per_request $((u1 - u0 + s1 - s0)) "$reqs") $reqs $warm"
  }
  trace_rps_ratios=() trace_cpu_ratios=() untraced_cpu=() traced_cpu=()
  for i in $(seq "$pairs"); do
    if [ $((i % 2)) = 1 ]; then
      read -r ur uc _ _ < <(trace_run untraced "$i"); read -r tr tc treqs twarm < <(trace_run traced "$i")
    else
      read -r tr tc treqs twarm < <(trace_run traced "$i"); read -r ur uc _ _ < <(trace_run untraced "$i")
    fi
    if [ "$ur" = null ] || [ "$tr" = null ] || [ "$uc" = null ] || [ "$tc" = null ]; then
      log "no result for tracing pair $i (raw output: $out_dir/wrk-tracing-$i-*.txt)"
      failed=1
      continue
    fi
    traced_requests=$((traced_requests + treqs + twarm))
    untraced_cpu+=("$uc") traced_cpu+=("$tc")
    trace_rps_ratios+=("$(awk -v a="$tr" -v b="$ur" 'BEGIN { printf "%.3f", a / b }')")
    trace_cpu_ratios+=("$(awk -v a="$tc" -v b="$uc" 'BEGIN { printf "%.3f", a / b }')")
    log "tracing pair $i: untraced $ur rps, $uc us CPU/request; traced $tr rps, $tc us CPU/request"
  done
  # The last batch goes out within the batch delay (5 s).
  sleep 6
  spans="$(cat "$tmp/spans")"
  if [ ${#trace_rps_ratios[@]} -gt 0 ]; then
    trace_report+=("tracing (OTLP gRPC, every span exported), hello-wat at c32 in ${#trace_rps_ratios[@]} alternating pairs:")
    trace_report+=("  server CPU us/request: untraced $(median "${untraced_cpu[@]}"), traced $(median "${traced_cpu[@]}"); traced / untraced: ${trace_cpu_ratios[*]}; median $(median "${trace_cpu_ratios[@]}")")
    trace_report+=("  requests/s traced / untraced: ${trace_rps_ratios[*]}; median $(median "${trace_rps_ratios[@]}")")
    trace_report+=("  spans received: $spans for $traced_requests requests ($(awk -v s="$spans" -v r="$traced_requests" 'BEGIN { printf "%.2f", (r > 0 ? s / r : 0) }') per request; each makes 3: server, call, instantiate)")
    printf '{"ts":%s,"git_rev":%s,"target":"tracing","pairs":%d,"cpu_ratio_median":%s,"rps_ratio_median":%s,"spans":%s,"requests":%s}\n' \
      "$(json_str "$run_ts")" "$(json_str "$git_rev")" "${#trace_rps_ratios[@]}" "$(median "${trace_cpu_ratios[@]}")" \
      "$(median "${trace_rps_ratios[@]}")" "$spans" "$traced_requests" >>"$results"
  fi
fi
cluster_report=()
# --- cluster --------------------------------------------------------------------------
# Two nodes of a cluster on one nats-server (all on the server CPU): the deploy-to-served
# latency from node A to node B over 50 deploys (wafer-bench propagation), and requests/s of
# the WAT hello through both nodes (two wrk, 16 connections each) against the embedded node
# above taken the same way, back to back. On this 2-core machine both nodes share one core,
# so the ratio is a sanity check (NATS is not on a request's path), not a scaling claim.
nats_bin="$(command -v nats-server || true)"
[ -z "$nats_bin" ] && [ -x /usr/sbin/nats-server ] && nats_bin=/usr/sbin/nats-server
if [ $want_wafer = 1 ] && [ "${BENCH_CLUSTER:-1}" != 0 ] && [ -n "$nats_bin" ] && [ -x "$bin/wafer-bench" ] && [ -n "$wat_url" ]; then
  log "cluster: two nodes on one nats-server"
  cluster_report+=("cluster (two nodes on one nats-server, all on CPU $server_cpu):")
  free_port nats_port
  start_server nats "$nats_bin" -js -a 127.0.0.1 -p "$nats_port" -sd "$tmp/nats"
  for _ in $(seq 100); do port_in_use "$nats_port" && break; sleep 0.05; done
  node_urls=()
  admin_urls=()
  for node in a b; do
    free_port port
    free_port admin_port
    start_server "node-$node" "$bin/wafer" serve --listen "127.0.0.1:$port" \
      --admin-listen "127.0.0.1:$admin_port" --data "$tmp/node-$node" \
      --cluster "nats://127.0.0.1:$nats_port"
    wait_ready "node-$node" "$started_pid" "http://127.0.0.1:$port/readyz"
    node_urls+=("http://127.0.0.1:$port")
    admin_urls+=("http://127.0.0.1:$admin_port")
  done
  token="$(cat "$tmp/node-a/admin-token")"
  if propagation="$("$bin/wafer-bench" propagation "${admin_urls[0]}" "${node_urls[0]}" "${node_urls[1]}" "$token" \
    "$(guest_path hello-wat)" "$(guest_path hello-c)" 50)"; then
    mapfile -t -O "${#cluster_report[@]}" cluster_report <<<"$propagation"
  else
    log "propagation failed"
    failed=1
  fi
  WAFER_TOKEN="$token" "$bin/wafer" deploy hello-wat "$(guest_path hello-wat)" --server "${admin_urls[0]}" >/dev/null
  wait_ready node-b "$started_pid" "${node_urls[1]}/hello-wat"
  # two_wrk <url1> <url2>: requests/s of two wrk runs side by side, 16 connections each.
  two_wrk() {
    local i=0 url total=0 rps
    for url in "$1" "$2"; do
      taskset -c "$client_cpu" wrk -t1 -c16 -d"${warmup_seconds}s" "$url" >/dev/null 2>&1 &
    done
    wait_wrk
    for url in "$1" "$2"; do
      taskset -c "$client_cpu" wrk -t1 -c16 -d"${pair_seconds}s" --latency "$url" >"$out_dir/wrk-two-$i.txt" 2>&1 &
      i=$((i + 1))
    done
    wait_wrk
    for i in 0 1; do
      read -r rps _ < <(parse_wrk "$out_dir/wrk-two-$i.txt")
      total="$(awk -v a="$total" -v b="$rps" 'BEGIN { printf "%.0f", a + b }')"
    done
    echo "$total"
  }
  # Waits for the background wrk runs (not the servers).
  wait_wrk() { local pid; for pid in $(jobs -rp); do [[ " ${server_pids[*]} " == *" $pid "* ]] || wait "$pid" || true; done; }
  embedded="$(two_wrk "$wat_url" "$wat_url")"
  clustered="$(two_wrk "${node_urls[0]}/hello-wat" "${node_urls[1]}/hello-wat")"
  cluster_report+=("  hello-wat requests/s, two wrk x 16 connections: embedded node $embedded, 2-node cluster $clustered; cluster / embedded = $(awk -v a="$clustered" -v b="$embedded" 'BEGIN { printf "%.2f", a / b }')")
fi

stop_servers

# --- report ---------------------------------------------------------------------------
echo
echo "Wafer benchmark ($profile build): ${seconds}s per run (after a ${warmup_seconds}s warm-up), wrk -t1 on CPU $client_cpu, servers on CPU $server_cpu"
echo "CPU: ${cpu_model:-unknown}; git $git_rev; load before measuring: $load1"
printf '%-28s %5s %12s %9s %9s %9s %7s %9s %9s\n' target conns rps "p50 ms" "p99 ms" "x native" errors \
  "user us" "sys us"
fmt_num() { # <value> <printf format>
  if [ "$1" = null ]; then printf '%s' "n/a"; else awk -v v="$1" -v f="$2" 'BEGIN { printf f, v }'; fi
}
for r in "${rows[@]}"; do
  IFS='|' read -r label conns rps p50 p99 ratio errors user_us sys_us <<<"$r"
  printf '%-28s %5s %12s %9s %9s %9s %7s %9s %9s\n' "$label" "$conns" \
    "$(fmt_num "$rps" '%.0f')" "$(fmt_num "$p50" '%.3f')" "$(fmt_num "$p99" '%.3f')" \
    "$(fmt_num "$ratio" '%.3f')" "$errors" "$(fmt_num "$user_us" '%.1f')" "$(fmt_num "$sys_us" '%.1f')"
done
# One line per Wafer / wasmtime serve pair: requests/s and CPU us per request (user + system)
# of each side, and the requests/s ratio.
for conns in "${conns_list[@]}"; do
  for pair in "http-hello-rust|http-hello-rust|wasmtime-serve|fresh instances" \
    "http-hello-rust|http-hello-rust-reuse|wasmtime-serve-reuse|instance reuse $reuse" \
    "http-p3-rust|http-p3-rust|wasmtime-serve-p3|fresh instances" \
    "http-p3-rust|http-p3-rust-reuse|wasmtime-serve-p3-reuse|instance reuse $reuse, $concurrent at once"; do
    IFS='|' read -r guest ours theirs what <<<"$pair"
    a="${rps_of["wafer $ours|$conns"]:-null}" b="${rps_of["$theirs|$conns"]:-null}"
    if [ "$a" != null ] && [ "$b" != null ]; then
      printf '%s at c%s, %s: wafer %s rps, %s us CPU/request; wasmtime serve %s rps, %s us CPU/request; wafer / wasmtime serve = %s\n' \
        "$guest" "$conns" "$what" "$(fmt_num "$a" '%.0f')" "$(fmt_num "${cpu_of["wafer $ours|$conns"]:-null}" '%.1f')" \
        "$(fmt_num "$b" '%.0f')" "$(fmt_num "${cpu_of["$theirs|$conns"]:-null}" '%.1f')" \
        "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')"
    fi
  done
done
if [ ${#idle_report[@]} -gt 0 ]; then
  echo "idle CPU over ${idle_seconds}s with no requests, % of a core (CPU ticks of $((1000 / clk_tck)) ms): ${idle_report[*]}"
fi
if [ ${#pair_ratios[@]} -gt 0 ]; then
  echo "hello-wat / native at c32 in ${#pair_ratios[@]} alternating pairs: ${pair_ratios[*]}; median $(median "${pair_ratios[@]}")"
fi
if [ ${#trace_report[@]} -gt 0 ]; then
  echo
  printf '%s\n' "${trace_report[@]}"
fi
if [ ${#cluster_report[@]} -gt 0 ]; then
  echo
  printf '%s\n' "${cluster_report[@]}"
fi
echo "results: ${results#"$root"/}; raw wrk output: ${out_dir#"$root"/}/wrk-*.txt"

# --- restart --------------------------------------------------------------------------
# The Go example's first request after a real restart of `wafer serve`: deploy it once, then
# $restarts times stop the server (SIGTERM), start it on the same data directory, and time the
# first request once it prints its address. The artifact directory must not change: a
# restart compiles nothing.
restart_ms=()
if [ $want_wafer = 1 ] && go_wasm="$(guest_path hello-go)"; then
  data="$tmp/restart-data"
  free_port port
  free_port admin_port
  url="http://127.0.0.1:$port/hello-go"
  # wait_listening <name>: waits (30 s) until the server started last prints its address.
  wait_listening() {
    local deadline=$((SECONDS + 30))
    until grep -q '^listening on ' "$tmp/$1.log"; do
      kill -0 "$started_pid" 2>/dev/null || { sed 's/^/    /' "$tmp/$1.log" >&2; die "$1 exited"; }
      [ "$SECONDS" -lt "$deadline" ] || die "$1 did not start within 30 s"
      sleep 0.01
    done
  }
  start_go_server() {
    start_server restart "$bin/wafer" serve --listen "127.0.0.1:$port" \
      --admin-listen "127.0.0.1:$admin_port" --data "$data"
    wait_listening restart
  }
  start_go_server
  WAFER_DATA="$data" "$bin/wafer" deploy hello-go "$go_wasm" --server "http://127.0.0.1:$admin_port" >/dev/null
  curl -sf -o /dev/null "$url" || die "hello-go does not answer after deploy"
  artifacts_before="$(find "$data/artifacts" -type f -printf '%p %T@\n' | sort)"
  # The floor, measured alongside: native-hello's first request after its own restart
  # (process start, a new connection, curl), so a slow moment of the VM shows in both.
  free_port native_port
  start_native_server() {
    start_server restart-native "$bin/native-hello" "127.0.0.1:$native_port"
    wait_listening restart-native
  }
  first_ms() { # <url>: the time of one request, in ms
    local t
    t="$(taskset -c "$client_cpu" curl -sf -o /dev/null -w '%{time_total}' "$1")" || die "$1 does not answer after a restart"
    awk -v t="$t" 'BEGIN { printf "%.2f", t * 1000 }'
  }
  native_restart_ms=()
  for _ in $(seq "$restarts"); do
    stop_servers
    start_go_server
    restart_ms+=("$(first_ms "$url")")
    if [ $want_native = 1 ]; then
      start_native_server
      native_restart_ms+=("$(first_ms "http://127.0.0.1:$native_port/")")
    fi
  done
  stop_servers
  artifacts_after="$(find "$data/artifacts" -type f -printf '%p %T@\n' | sort)"
  echo
  echo "hello-go, first request after a restart of wafer serve (curl time_total, $restarts restarts): ${restart_ms[*]} ms; median $(median "${restart_ms[@]}")"
  if [ ${#native_restart_ms[@]} -gt 0 ]; then
    echo "native-hello, first request after a restart, alongside: ${native_restart_ms[*]} ms; median $(median "${native_restart_ms[@]}")"
  fi
  if [ -n "$artifacts_before" ] && [ "$artifacts_before" = "$artifacts_after" ]; then
    echo "compiled artifacts unchanged across the restarts: nothing was recompiled"
  else
    log "error: the compiled artifacts changed across restarts"
    failed=1
  fi
fi

if [ -x "$bin/wafer-bench" ]; then
  echo
  echo "wafer-bench (in-process timings):"
  taskset -c "$server_cpu" "$bin/wafer-bench" || { log "wafer-bench failed"; failed=1; }
fi

exit "$failed"
