#!/usr/bin/env python3
"""Runs the Spin conformance tests (fermyon/conformance-tests) against `wafer up spin.toml`.

See scripts/spin-conformance.sh and docs/spin-conformance.md. Standard library only.

For each test it does what the suite's own runner (its `conformance-tests` and
`test-environment` crates, as Spin's CLI runner uses them) does, with Debian's servers in
place of the suite's Docker images:

- starts the services the test's preconditions name (`http-echo`, `tcp-echo`: the suite's
  Python scripts; `redis`, `mqtt`, `postgres`: redis-server, mosquitto, PostgreSQL), each
  on a free port, and knows which "guest" port each one stands for (80, 7, 6379, 1883, 5432);
- renders the test's spin.toml into a fresh directory: `%{source=NAME}` becomes
  `component.wasm` (the component built from the suite's `components/NAME`, copied there, as
  the suite's packaging does), `%{port=N}` the host port of the service standing for N;
- runs `wafer up spin.toml` there, sends each invocation's request (its `%{port=N}`
  substituted in header values) as reqwest would, and judges the response by the suite's
  `assert_response`;
- stops everything it started and removes the directories it made.
"""

import argparse
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import http.client

sys.dont_write_bytecode = True  # leave no __pycache__ in the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import json5  # noqa: E402  (the sibling json5.py)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATE = re.compile(r"%\{(.*?)\}")
# The Docker services of the suite and the port each exposes (their Dockerfiles).
DOCKER_PORTS = {"redis": 6379, "mqtt": 1883, "postgres": 5432, "mysql": 3306}
# Debian's packages for the servers standing in for the Docker images.
PACKAGES = {"redis-server": "redis-server", "mosquitto": "mosquitto",
            "mosquitto_passwd": "mosquitto", "postgres": "postgresql"}


class TestError(Exception):
    """The test failed: the message is the reason."""


class NotRun(Exception):
    """The test cannot be run here: the message says why."""


# --------------------------------------------------------------------------------------------
# The test manifest (crates/conformance-tests/src/config.rs), read as serde reads it.

def parse_config(text):
    try:
        raw = json5.loads(text)
    except json5.JSON5Error as e:
        raise TestError(f"test config could not be parsed: {e}")

    def need(cond, what):
        if not cond:
            raise TestError(f"test config could not be parsed: {what}")

    need(isinstance(raw, dict), "not an object")
    # TestConfig is #[serde(deny_unknown_fields)].
    unknown = set(raw) - {"invocations", "preconditions"}
    need(not unknown, f"unknown field(s) {sorted(unknown)}")
    need(isinstance(raw.get("invocations"), list), "missing field `invocations`")
    invocations = []
    for inv in raw["invocations"]:
        need(isinstance(inv, dict) and "request" in inv and "response" in inv,
             "an invocation needs `request` and `response`")
        req, resp = inv["request"], inv["response"]
        need(isinstance(req, dict) and isinstance(req.get("path"), str),
             "missing field `path`")
        method = req.get("method", "GET")
        need(method in ("GET", "POST"), f"unknown method {method!r} (GET or POST)")
        headers = []
        for h in req.get("headers", []):
            need(isinstance(h, dict) and isinstance(h.get("name"), str)
                 and isinstance(h.get("value"), str), "a request header needs name and value")
            headers.append({"name": h["name"], "value": h["value"]})
        body = req.get("body")
        need(body is None or isinstance(body, str), "request body must be a string")
        need(isinstance(resp, dict) and isinstance(resp.get("headers"), list),
             "missing field `headers` in response")
        status = resp.get("status", 200)
        need(isinstance(status, int) and 0 <= status < 65536, "bad status")
        rheaders = []
        for h in resp["headers"]:
            need(isinstance(h, dict) and isinstance(h.get("name"), str),
                 "a response header needs a name")
            value = h.get("value")
            need(value is None or isinstance(value, str), "header value must be a string")
            optional = h.get("optional", False)
            need(isinstance(optional, bool), "`optional` must be a boolean")
            rheaders.append({"name": h["name"], "value": value, "optional": optional})
        rbody = resp.get("body")
        need(rbody is None or isinstance(rbody, str), "response body must be a string")
        invocations.append({
            "request": {"method": method, "path": req["path"], "headers": headers, "body": body},
            "response": {"status": status, "headers": rheaders, "body": rbody},
        })
    preconditions = []
    for p in raw.get("preconditions", []):
        need(isinstance(p, dict) and isinstance(p.get("kind"), str), "precondition without kind")
        if p["kind"] == "key-value-store":
            extra = set(p) - {"kind", "label"}
            need(not extra and isinstance(p.get("label"), str),
                 "key-value-store precondition takes exactly `label`")
        preconditions.append(p)
    return {"invocations": invocations, "preconditions": preconditions}


# --------------------------------------------------------------------------------------------
# Templates (crates/test-environment/src/manifest_template.rs).

def render_manifest(content, source_for, port_for):
    """EnvTemplate::substitute: each `%{key=value}` in turn, first to last; `source` and
    `port` are the only keys (any other is an error)."""
    while True:
        m = TEMPLATE.search(content)
        if not m:
            return content
        template = m.group(1)
        if "=" not in template:
            raise TestError(f"invalid template '{template}'(template should be in the form "
                            "$KEY=$VALUE)")
        key, value = template.split("=", 1)
        key = key.strip()
        if key == "source":
            replacement = source_for(value.strip())
        elif key == "port":
            replacement = str(port_for(value))
        else:
            raise TestError(f"unknown template key: {key}")
        content = content[:m.start()] + replacement + content[m.end():]


def substitute_header(value, port_for):
    """Request::substitute_from_env on a header value (replace_template): `port` only."""
    while True:
        for m in TEMPLATE.finditer(value):
            template = m.group(1)
            if "=" not in template:
                raise TestError(f"invalid template '{template}'(template should be in the "
                                "form $KEY=$VALUE)")
            key, val = (s.strip() for s in template.split("=", 1))
            if key != "port":
                raise TestError(f"unknown template key: {key}")
            value = value[:m.start()] + str(port_for(val)) + value[m.end():]
            break
        else:
            return value


# --------------------------------------------------------------------------------------------
# The request (crates/test-environment/src/http.rs) and the judging
# (crates/conformance-tests/src/lib.rs, `assertions::assert_response`).

def send(port, request, timeout):
    """Sends the request as reqwest does there: URL `http://127.0.0.1:PORT` joined with the
    path, the test's headers (names lowercased, as `HeaderName::from_bytes` makes them),
    reqwest's default `accept: */*` unless given, `host` from the URL unless given, no
    user-agent; a connection error is retried 5 times, 10 ms apart. Returns (status,
    [(name, value)], body bytes)."""
    headers = [(h["name"].lower(), h["value"]) for h in request["headers"]]
    names = {n for n, _ in headers}
    if "accept" not in names:
        headers.append(("accept", "*/*"))
    if "host" not in names:
        headers.insert(0, ("host", f"127.0.0.1:{port}"))
    body = request["body"].encode() if request["body"] is not None else None
    if body is not None:
        headers.append(("content-length", str(len(body))))
    path = request["path"] if request["path"].startswith("/") else "/" + request["path"]
    retries = 0
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.putrequest(request["method"], path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.getheaders(), data
        except (OSError, http.client.HTTPException) as e:
            if retries < 5 and not isinstance(e, socket.timeout):
                retries += 1
                time.sleep(0.01)
                continue
            raise TestError(f"failed to send the request to the runtime: {type(e).__name__}: {e}")
        finally:
            conn.close()


def _header_text(value):
    # reqwest's HeaderValue::to_str accepts visible ASCII and tab only.
    if all(c == "\t" or " " <= c <= "~" for c in value):
        return value
    return "<non-utf8>"


def _indent(text, n):
    return "\n".join((" " * n if i else "") + line for i, line in enumerate(text.splitlines()))


def judge(expected, status, headers, body):
    """assert_response: status, then body, then headers. Raises TestError on a mismatch."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = "<invalid utf-8>"
    if status != expected["status"]:
        raise TestError(f"actual status {status} != expected status {expected['status']} - "
                        f"body: {_indent(text, 2)}")
    want = expected["body"] or ""
    if text != want:
        raise TestError(f"actual body != expected body\nactual: {_indent(text, 2)}\n"
                        f"expected: {_indent(want, 2)}")
    # A HashMap of lowercased names to lowercased values: a repeated header keeps its last.
    actual = {}
    for name, value in headers:
        actual[name.lower()] = _header_text(value).lower()
    for h in expected["headers"]:
        name = h["name"].lower()
        value = actual.pop(name, None)
        if value is None:
            if h["optional"]:
                continue
            raise TestError(f"expected header '{h['name']}' not found in response")
        if h["value"] is not None and value != h["value"].lower():
            raise TestError(f"header '{h['name']}' has unexpected value '{value}' != "
                            f"'{h['value'].lower()}'")
    if actual:
        shown = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in actual.items()) + "}"
        raise TestError(f"unexpected headers: {shown}")


# --------------------------------------------------------------------------------------------
# Processes.

class Procs:
    """Every process this run started, each in its own process group, stopped by its id."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log, **kw):
        out = open(log, "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True, **kw)
        finally:
            out.close()
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            stop(p)
        self.procs.clear()


def stop(p, grace=5.0):
    if p.poll() is not None:
        _kill_group(p.pid, signal.SIGKILL)  # anything it left behind in its group
        return
    _kill_group(p.pid, signal.SIGTERM)
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(p.pid, signal.SIGKILL)
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        pass


def _kill_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout, what, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TestError(f"{what} exited with status {proc.returncode}{_log_tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TestError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s"
                    f"{_log_tail(log)}")


def _log_tail(log, lines=12):
    if not log or not os.path.exists(log):
        return ""
    with open(log, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    tail = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    return (": " + " / ".join(tail)) if tail else ""


_apt_updated = False


def need_tool(tool, extra_dirs=()):
    """The path of a server binary, installing its Debian package when it is missing."""
    global _apt_updated
    for attempt in (0, 1):
        found = shutil.which(tool)
        if found:
            return found
        for d in extra_dirs:
            for cand in sorted(glob.glob(os.path.join(d, tool)), reverse=True):
                if os.access(cand, os.X_OK):
                    return cand
        if attempt or os.geteuid() != 0 or not shutil.which("apt-get"):
            break
        pkg = PACKAGES.get(tool, tool)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if not _apt_updated:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False,
                           stdout=subprocess.DEVNULL)
            _apt_updated = True
        subprocess.run(["apt-get", "install", "-y", "-qq", pkg], env=env, check=False,
                       stdout=subprocess.DEVNULL)
    raise NotRun(f"needs {tool} (Debian package {PACKAGES.get(tool, tool)})")


# --------------------------------------------------------------------------------------------
# Services: the suite's Python scripts, and Debian's servers for its Docker images.

class Services:
    def __init__(self, suite, work, procs, timeout):
        self.suite = suite
        self.work = work
        self.procs = procs
        self.timeout = timeout
        self.ports = {}  # guest port -> (service, host port)
        self.dirs = []  # directories outside `work` to remove

    def expose(self, service, guest, host):
        if guest in self.ports:
            raise TestError(f"service '{self.ports[guest][0]}' already exposes port {guest} "
                            "to the host")
        self.ports[guest] = (service, host)

    def port_for(self, value):
        try:
            guest = int(value)
        except ValueError:
            raise TestError(f"failed to parse '{value}' as port")
        if guest not in self.ports:
            if guest == DOCKER_PORTS["mysql"]:
                raise NotRun("needs mysql")
            raise TestError(f"no port {guest} exposed by any service")
        return self.ports[guest][1]

    def start(self, name):
        if name in ("http-echo", "tcp-echo", "http-responses-from-file"):
            self.python(name)
        elif name == "redis":
            self.redis()
        elif name == "mqtt":
            self.mqtt()
        elif name == "postgres":
            self.postgres()
        elif name == "mysql":
            raise NotRun("needs mysql")
        else:
            raise NotRun(f"needs the service '{name}', which this runner does not start")

    def log(self, name):
        return os.path.join(self.work, f".service-{name}.log")

    def python(self, name):
        """PythonService: the script prints `PORT=(guest,host)` lines and then `READY`."""
        script = os.path.join(self.suite, "crates", "test-environment", "services", name + ".py")
        log = self.log(name)
        p = self.procs.start([sys.executable, "-u", script], log, cwd=self.work)
        deadline = time.monotonic() + self.timeout
        while True:
            with open(log, "rb") as f:
                out = f.read().decode("utf-8", "replace")
            if "READY" in out:
                break
            if p.poll() is not None or time.monotonic() > deadline:
                raise TestError(f"service {name} did not get ready{_log_tail(log)}")
            time.sleep(0.05)
        if p.poll() is not None:
            raise TestError(f"python service process exited early{_log_tail(log)}")
        for line in out.splitlines():
            k, _, v = line.strip().partition("=")
            if k.strip() == "PORT" and v:
                m = re.fullmatch(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)", v.strip())
                if not m:
                    raise TestError("malformed service port pair - PORT values should be in "
                                    "the form PORT=(80,8080)")
                self.expose(name, int(m.group(1)), int(m.group(2)))

    def redis(self):
        """redis: the official image, `redis-server` with its defaults, no persistence."""
        exe = need_tool("redis-server")
        port = free_port()
        data = os.path.join(self.work, ".redis")
        os.mkdir(data)
        p = self.procs.start([exe, "--port", str(port), "--bind", "127.0.0.1", "-::1",
                              "--save", "", "--appendonly", "no", "--dir", data,
                              "--daemonize", "no"], self.log("redis"))
        wait_port(port, p, self.timeout, "redis-server", self.log("redis"))
        self.expose("redis", 6379, port)

    def mqtt(self):
        """mqtt.Dockerfile: mosquitto 2, one listener, anonymous clients allowed and the
        user `user` with password `password`."""
        exe = need_tool("mosquitto", ["/usr/sbin"])
        passwd = need_tool("mosquitto_passwd")
        port = free_port()
        conf_dir = os.path.join(self.work, ".mosquitto")
        os.mkdir(conf_dir)
        creds = os.path.join(conf_dir, "credentials.txt")
        subprocess.run([passwd, "-c", "-b", creds, "user", "password"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chmod(creds, 0o600)
        conf = os.path.join(conf_dir, "mosquitto.conf")
        lines = [f"listener {port} 127.0.0.1"]
        if _has_ipv6_loopback():
            lines.append(f"listener {port} ::1")
        lines += ["allow_anonymous true", f"password_file {creds}", "log_type all",
                  "persistence false"]
        if os.geteuid() == 0:
            lines.append("user root")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = self.procs.start([exe, "-c", conf], self.log("mqtt"))
        wait_port(port, p, self.timeout, "mosquitto", self.log("mqtt"))
        self.expose("mqtt", 1883, port)

    def postgres(self):
        """postgres.Dockerfile: POSTGRES_USER=postgres, POSTGRES_PASSWORD=postgres,
        POSTGRES_DB=spin_dev, services/postgres-init/*.sql run in order into spin_dev;
        password (scram-sha-256) authentication over TCP, as the image has it."""
        bindirs = ["/usr/lib/postgresql/*/bin"]
        postgres = need_tool("postgres", bindirs)
        bindir = os.path.dirname(os.path.realpath(postgres))
        initdb = need_tool("initdb", [bindir] + bindirs)
        psql = need_tool("psql", [bindir])
        root = tempfile.mkdtemp(prefix="wafer-spin-pg-")
        self.dirs.append(root)
        kw = {}
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            import pwd
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise NotRun("needs a `postgres` user to run PostgreSQL as")
            os.chown(root, pw.pw_uid, pw.pw_gid)
            kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
        pwfile = os.path.join(root, "pwfile")
        with open(pwfile, "w") as f:
            f.write("postgres\n")
        os.mkdir(sock)
        if kw:
            os.chown(pwfile, kw["user"], kw["group"])
            os.chown(sock, kw["user"], kw["group"])
        log = self.log("postgres")
        with open(log, "ab") as out:
            r = subprocess.run([initdb, "-D", data, "-U", "postgres", f"--pwfile={pwfile}",
                                "--auth-local=trust", "--auth-host=scram-sha-256",
                                "-E", "UTF8", "--locale=C.UTF-8"],
                               stdout=out, stderr=subprocess.STDOUT, cwd=root, **kw)
        if r.returncode:
            raise TestError(f"initdb failed{_log_tail(log)}")
        port = free_port()
        p = self.procs.start([postgres, "-D", data, "-p", str(port), "-k", sock,
                              "-c", "listen_addresses=localhost", "-c", "timezone=UTC",
                              "-c", "fsync=off"], log, cwd=root, **kw)
        deadline = time.monotonic() + self.timeout
        while subprocess.run([psql, "-h", sock, "-p", str(port), "-U", "postgres", "-d",
                              "postgres", "-Atc", "select 1"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=root, **kw).returncode:
            if p.poll() is not None or time.monotonic() > deadline:
                raise TestError(f"postgres did not start{_log_tail(log)}")
            time.sleep(0.2)
        scripts = sorted(glob.glob(os.path.join(self.suite, "crates", "test-environment",
                                                "services", "postgres-init", "*.sql")))
        # Readable by the postgres user, whatever the suite's directory allows.
        init = os.path.join(root, "init")
        os.mkdir(init)
        for s in scripts:
            shutil.copy(s, init)
        if kw:
            for d, _, files in os.walk(init):
                os.chown(d, kw["user"], kw["group"])
                for f in files:
                    os.chown(os.path.join(d, f), kw["user"], kw["group"])
        steps = [["-d", "postgres", "-c", "CREATE DATABASE spin_dev"]]
        steps += [["-d", "spin_dev", "-f", os.path.join(init, os.path.basename(s))]
                  for s in scripts]
        for step in steps:
            with open(log, "ab") as out:
                r = subprocess.run([psql, "-h", sock, "-p", str(port), "-U", "postgres",
                                    "-v", "ON_ERROR_STOP=1", "-q"] + step,
                                   stdout=out, stderr=subprocess.STDOUT, cwd=root, **kw)
            if r.returncode:
                raise TestError(f"loading postgres-init failed at {step[-1]}{_log_tail(log)}")
        self.expose("postgres", 5432, port)

    def cleanup(self):
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.dirs.clear()


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# Which services each precondition needs, as Spin's conformance runner maps them.
def services_for(preconditions):
    services = []
    for p in preconditions:
        kind = p["kind"]
        if kind == "http-echo":
            services.append("http-echo")
        elif kind == "tcp-echo":
            services.append("tcp-echo")
        elif kind in ("redis", "mqtt", "postgres", "mysql"):
            services.append(kind)
        elif kind == "key-value-store":
            # Spin's runner: the `default` store, which `spin up` makes empty in the fresh
            # app directory; any other label is unsupported.
            if p["label"] != "default":
                raise NotRun(f"needs a key-value store labelled {p['label']!r} "
                             "(only `default` is supported)")
        elif kind == "sqlite":
            pass  # the `default` database, which `spin up` makes empty in the app directory
        else:
            raise NotRun(f"unknown precondition kind {kind!r}")
    return services


# --------------------------------------------------------------------------------------------
# Building the suite's components.

def build_components(suite, out, componentize, quiet):
    """Builds every crate under SUITE/components as the suite's packaging does (`cargo build
    --release --target=wasm32-unknown-unknown`: a core module carrying its WIT in
    `component-type` custom sections, which Spin componentizes when it loads it), and copies
    each to OUT/components/NAME.wasm. With `componentize`, also makes a component of each
    with `wasm-tools component new` (no adapter needed: the modules import no WASI 0.1) as
    OUT/components/NAME.component.wasm."""
    comps = sorted(d for d in os.listdir(os.path.join(suite, "components"))
                   if os.path.isfile(os.path.join(suite, "components", d, "Cargo.toml")))
    manifests = {os.path.realpath(os.path.join(suite, "components", d, "Cargo.toml")): d
                 for d in comps}
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                          cwd=suite, check=True, capture_output=True, text=True)
    packages = {}
    for pkg in json.loads(meta.stdout)["packages"]:
        d = manifests.get(os.path.realpath(pkg["manifest_path"]))
        if d:
            packages[pkg["name"]] = d
    argv = ["nice", "cargo", "build", "--release", "--locked", "--target=wasm32-unknown-unknown",
            "--message-format=json-render-diagnostics"]
    for name in sorted(packages):
        argv += ["-p", name]
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(out, "cargo"))
    if not quiet:
        print(f"building {len(packages)} components of {suite} into {out} ...", file=sys.stderr)
    r = subprocess.run(argv, cwd=suite, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL if quiet else None, text=True)
    artifacts = {}
    for line in r.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact":
            d = manifests.get(os.path.realpath(msg.get("manifest_path", "")))
            wasm = [f for f in msg.get("filenames", []) if f.endswith(".wasm")]
            if d and wasm:
                artifacts[d] = wasm[0]
    if r.returncode:
        sys.exit("building the suite's components failed (cargo's messages above)")
    dest = os.path.join(out, "components")
    os.makedirs(dest, exist_ok=True)
    wasm_tools = find_wasm_tools(out) if componentize else None
    for d in comps:
        if d not in artifacts:
            sys.exit(f"cargo built no .wasm for components/{d}")
        core = os.path.join(dest, d + ".wasm")
        shutil.copyfile(artifacts[d], core)
        if wasm_tools:
            subprocess.run([wasm_tools, "component", "new", core, "-o",
                            os.path.join(dest, d + ".component.wasm")], check=True)
    return dest


def find_wasm_tools(out):
    for cand in (os.environ.get("WASM_TOOLS"), shutil.which("wasm-tools"),
                 os.path.join(out, "tools", "bin", "wasm-tools")):
        if cand and os.access(cand, os.X_OK):
            return cand
    root = os.path.join(out, "tools")
    print("installing wasm-tools from crates.io into " + root, file=sys.stderr)
    subprocess.run(["nice", "cargo", "install", "--locked", "wasm-tools", "--no-default-features",
                    "--features", "component,validate,print,parse,metadata", "--root", root],
                   check=True)
    return os.path.join(root, "bin", "wasm-tools")


# --------------------------------------------------------------------------------------------
# One test.

def run_test(args, suite, name, components):
    test_dir = os.path.join(suite, "tests", name)
    with open(os.path.join(test_dir, "test.json5")) as f:
        config = parse_config(f.read())
    with open(os.path.join(test_dir, "spin.toml")) as f:
        manifest = f.read()
    procs = Procs()
    work = tempfile.mkdtemp(prefix=f"wafer-spin-{name}-")
    services = Services(suite, work, procs, args.timeout)
    wafer_log = os.path.join(work, ".wafer-up.log")
    try:
        for service in services_for(config["preconditions"]):
            services.start(service)

        def source_for(component):
            suffix = ".component.wasm" if args.componentize else ".wasm"
            path = os.path.join(components, component + suffix)
            if not os.path.exists(path):
                raise TestError(f"'{component}' is not a known component")
            # The suite's packaging copies every test's component to `component.wasm`.
            shutil.copyfile(path, os.path.join(work, "component.wasm"))
            return "component.wasm"

        rendered = render_manifest(manifest, source_for, services.port_for)
        with open(os.path.join(work, "spin.toml"), "w") as f:
            f.write(rendered)
        for inv in config["invocations"]:
            for h in inv["request"]["headers"]:
                h["value"] = substitute_header(h["value"], services.port_for)

        port = free_port()
        wafer = procs.start([args.wafer, "up", os.path.join(work, "spin.toml"),
                             "--listen", f"127.0.0.1:{port}", "--admin-listen", "127.0.0.1:0",
                             "--data", os.path.join(work, ".wafer")],
                            wafer_log, cwd=work, env=wafer_env())
        wait_port(port, wafer, args.timeout, "wafer up", wafer_log)
        for i, inv in enumerate(config["invocations"]):
            try:
                status, headers, body = send(port, inv["request"], args.timeout)
            except TestError as e:
                if wafer.poll() is not None:
                    raise TestError(f"wafer up exited with status {wafer.returncode}"
                                    f"{_log_tail(wafer_log)}")
                raise
            try:
                judge(inv["response"], status, headers, body)
            except TestError as e:
                prefix = f"invocation {i + 1}: " if len(config["invocations"]) > 1 else ""
                raise TestError(f"{prefix}assertion failed: {e}{_wafer_said(wafer, wafer_log)}")
    finally:
        procs.stop_all()
        if args.logs:
            keep = os.path.join(args.logs, name)
            os.makedirs(keep, exist_ok=True)
            for log in glob.glob(os.path.join(work, ".*.log")) + [os.path.join(work, "spin.toml")]:
                if os.path.exists(log):
                    shutil.copy(log, os.path.join(keep, os.path.basename(log).lstrip(".")))
        services.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def _wafer_said(proc, log):
    """When the server is gone or logged an error, its words help; otherwise nothing."""
    if proc.poll() is not None:
        return f" (wafer exited with status {proc.returncode}{_log_tail(log, 6)})"
    return ""


def wafer_env():
    env = dict(os.environ)
    for var in ("WAFER_LISTEN", "WAFER_ADMIN_LISTEN", "WAFER_DATA", "WAFER_ADMIN_TOKEN"):
        env.pop(var, None)
    env.setdefault("NO_COLOR", "1")
    return env


def one_line(text, limit=600):
    text = " ".join(text.split("\n"))
    return text if len(text) <= limit else text[:limit] + " ..."


def main():
    ap = argparse.ArgumentParser(
        prog="scripts/spin-conformance.sh",
        description="Runs the Spin conformance tests against `wafer up spin.toml`.")
    ap.add_argument("--wafer", default=os.environ.get("WAFER"),
                    help="the wafer binary (default $WAFER, else built: cargo build --release "
                         "-p wafer-cli)")
    ap.add_argument("--out", default=None,
                    help="where the components are built (default "
                         "${CARGO_TARGET_DIR:-target}/spin-conformance)")
    ap.add_argument("--componentize", action="store_true",
                    help="give wafer components made by `wasm-tools component new` instead "
                         "of the core modules the suite packages")
    ap.add_argument("--no-build", action="store_true",
                    help="use the components already in OUT/components")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds to wait for a server to listen or a response (default 60)")
    ap.add_argument("--logs", help="copy each test's rendered spin.toml and logs here")
    ap.add_argument("--build-only", action="store_true", help="build the components and stop")
    ap.add_argument("positional", nargs="*", metavar="[SUITE_DIR] [TEST_NAME ...]")
    args = ap.parse_args()

    pos = list(args.positional)
    suite = None
    if pos and os.path.isdir(os.path.join(pos[0], "tests")):
        suite = pos.pop(0)
    suite = suite or os.environ.get("SPIN_CONFORMANCE_TESTS")
    if not suite or not os.path.isdir(os.path.join(suite, "tests")):
        ap.error("give the path of a checkout of fermyon/conformance-tests, as SUITE_DIR or "
                 "$SPIN_CONFORMANCE_TESTS")
    suite = os.path.abspath(suite)
    all_tests = sorted(d for d in os.listdir(os.path.join(suite, "tests"))
                       if os.path.isdir(os.path.join(suite, "tests", d)))
    unknown = [t for t in pos if t not in all_tests]
    if unknown:
        ap.error(f"no such test(s): {', '.join(unknown)} (the suite has: {', '.join(all_tests)})")
    tests = pos or all_tests

    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    out = os.path.abspath(args.out or os.path.join(target, "spin-conformance"))
    if args.no_build:
        components = os.path.join(out, "components")
    else:
        components = build_components(suite, out, args.componentize, quiet=False)
    if args.build_only:
        print(f"components in {components}")
        return 0

    if not args.wafer:
        print("building wafer (cargo build --release -p wafer-cli) ...", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "wafer-cli"],
                       cwd=REPO, check=True)
        args.wafer = os.path.join(target, "release", "wafer")
    args.wafer = os.path.abspath(args.wafer)
    if not os.access(args.wafer, os.X_OK):
        sys.exit(f"no wafer binary at {args.wafer}")

    # Stop cleanly (the finally blocks run) on SIGTERM and SIGHUP as on Ctrl-C.
    def interrupted(signum, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    passed = 0
    for name in tests:
        try:
            run_test(args, suite, name, components)
        except TestError as e:
            print(f"FAIL {name}: {one_line(str(e))}", flush=True)
        except NotRun as e:
            print(f"SKIP {name}: not run: {e}", flush=True)
        except KeyboardInterrupt:
            print(f"FAIL {name}: interrupted", flush=True)
            print(f"passed {passed} of {len(tests)}")
            return 130
        else:
            passed += 1
            print(f"PASS {name}", flush=True)
    print(f"passed {passed} of {len(tests)}")
    return 0 if passed == len(tests) else 1


if __name__ == "__main__":
    sys.exit(main())
