#!/usr/bin/env python3
"""Runs the WebAssembly/wasi-testsuite wasip1 tests against `wafer run`.

    python3 scripts/wasi-testsuite.py [--wafer PATH] [--timeout S] [-v] SUITE_DIR...

Each SUITE_DIR is searched for test suites: directories holding `.wasm` test programs
(e.g. tests/rust/testsuite/wasm32-wasip1 on the suite's `prod/testsuite-base` branch).
Every test runs the way the suite's own runner (test-runner/wasi_test_runner) runs it
through its wasmtime adapter (adapters/wasmtime.py):

    wafer run [--env K=V]... [--dir ROOT::/] TEST.wasm [ARGS]...

- the spec is TEST.json beside the test (none: no args, no env, exit code 0); its legacy
  keys are `args`, `env`, `root` (a directory relative to the spec, given to the guest
  at `/`), `stdout`, `stderr` and `exit_code` (default 0); newer specs list
  `operations` (run, read, write, wait, kill are supported here);
- `stdout`/`stderr` are read as the suite does: the first len(expected) characters of
  the stream must equal the expected text (text mode, so \\r\\n reads as \\n);
- stdin is a pipe, closed when the runner waits for the exit;
- the test path is passed as found under SUITE_DIR, relative to the current directory,
  which is not changed; wafer itself gets this script's environment, the guest only the
  spec's `env`;
- files and directories named `*.cleanup` under the root are removed before and after
  the test (tests leave them behind on failure);
- each wait has a time limit (the suite's default: 5 seconds).

Suites for another WASI version than wasm32-wasip1 (from manifest.json or the directory
name, as the suite decides) and tests for another world than wasi:cli/command are
skipped and not counted. Prints one PASS/FAIL line per test, then `N/M passed`; exits 1
if any test failed, 2 on a usage error. Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WASI_VERSIONS = {"wasm32-wasip1", "wasm32-wasip2", "wasm32-wasip3"}
SUPPORTED_VERSION = "wasm32-wasip1"
LEGACY_KEYS = {"args", "root", "env", "exit_code", "stderr", "stdout"}
CONFIG_KEYS = {"operations", "proposals", "world", "servers"}
DEFAULT_WORLD = "wasi:cli/command"
# Roots already warned about (see run_test).
WARNED: set[Path] = set()


class SpecError(Exception):
    """A test spec this runner cannot follow."""


@dataclass
class Op:
    """One step of a test, as the suite's runner models it."""

    kind: str  # run | read | write | wait | kill
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    root: Path | None = None
    stream: str = "stdout"
    payload: str = ""
    exit_code: int = 0
    signal: str = "SIGTERM"


@dataclass
class Spec:
    ops: list[Op]
    world: str = DEFAULT_WORLD
    proposals: list[str] = field(default_factory=list)
    debug: bool = False
    warnings: list[str] = field(default_factory=list)


def run_op(spec_path: Path, conf: dict[str, Any]) -> Op:
    root = conf.get("root")
    return Op(
        "run",
        args=[str(a) for a in conf.get("args", [])],
        env={str(k): str(v) for k, v in conf.get("env", {}).items()},
        # As the suite's Run.from_config: relative to the spec's directory.
        root=spec_path.parent / root if root else None,
    )


def read_spec(wasm: Path) -> Spec:
    """The test's spec, read as test_case.Config.from_file reads it."""
    spec_path = wasm.with_suffix(".json")
    if not spec_path.exists():
        return Spec([Op("run"), Op("wait")])
    with open(spec_path, encoding="utf-8") as f:
        conf = json.load(f)
    if not isinstance(conf, dict):
        raise SpecError(f"{spec_path}: not a JSON object")
    keys = set(conf)
    if keys & CONFIG_KEYS and keys & LEGACY_KEYS:
        raise SpecError(f"{spec_path}: mixes legacy and operation-style keys")
    new_style = any(conf.get(k) is not None for k in ("operations", "proposals", "servers"))
    expected = CONFIG_KEYS if new_style else LEGACY_KEYS
    warnings = [f"unknown field `{k}` in {spec_path.name}" for k in conf if k not in expected]
    if not new_style:
        ops = [run_op(spec_path, conf)]
        for stream in ("stdout", "stderr"):
            if conf.get(stream) is not None:
                ops.append(Op("read", stream=stream, payload=conf[stream]))
        ops.append(Op("wait", exit_code=conf.get("exit_code", 0)))
        return Spec(ops, warnings=warnings)
    if conf.get("servers"):
        raise SpecError("needs HTTP servers (`servers`), which this runner does not provide")
    ops = []
    for o in conf.get("operations") or []:
        kind = o.get("type")
        if kind == "run":
            ops.append(run_op(spec_path, o))
        elif kind == "read":
            ops.append(Op("read", stream=o.get("id", "stdout"), payload=o.get("payload", "")))
        elif kind == "write":
            ops.append(Op("write", stream=o.get("id", "write"), payload=o.get("payload", "")))
        elif kind == "wait":
            ops.append(Op("wait", exit_code=o.get("exit_code", 0)))
        elif kind == "kill":
            ops.append(Op("kill", signal=o.get("signal", "SIGTERM")))
        else:
            raise SpecError(f"operation `{kind}` is not supported by this runner")
    return Spec(
        ops,
        world=conf.get("world", DEFAULT_WORLD),
        proposals=list(conf.get("proposals") or []),
        debug=bool(conf.get("debug")),
        warnings=warnings,
    )


def suite_version(suite: Path) -> str:
    """The suite's WASI version, decided as test_suite_runner._read_manifest does."""
    version = suite.name if suite.name in WASI_VERSIONS else SUPPORTED_VERSION
    manifest = suite / "manifest.json"
    if manifest.exists():
        with open(manifest, encoding="utf-8") as f:
            version = json.load(f).get("version", version)
    return version


def find_suites(dirs: list[Path]) -> list[Path]:
    """Every directory under `dirs` that directly holds `.wasm` files, sorted."""
    found: set[Path] = set()
    for d in dirs:
        for wasm in d.rglob("*.wasm"):
            found.add(wasm.parent)
    return sorted(found)


def cleanup(root: Path) -> None:
    """Removes `*.cleanup` under `root`, as test_suite_runner._cleanup_test_output does."""
    for f in root.glob("**/*.cleanup"):
        if f.is_symlink():
            continue
        if f.is_file():
            f.unlink()
        elif f.is_dir():
            shutil.rmtree(f)


def stderr_summary(text: str | None) -> str:
    """wafer's own `error:` line if there is one (a trap is followed by its backtrace),
    else the last line the guest wrote."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    line = errors[-1] if errors else lines[-1] if lines else ""
    return line[:240]


@dataclass
class Outcome:
    failure: str | None = None
    argv: list[str] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""


def run_test(wafer: list[str], wasm: Path, spec: Spec, timeout: float) -> Outcome:
    out = Outcome()
    proc: subprocess.Popen[str] | None = None
    roots: list[Path] = []

    def fail(msg: str) -> None:
        if out.failure is None:
            out.failure = msg

    def finish() -> tuple[int, str, str]:
        assert proc is not None
        stdout, stderr = proc.communicate(timeout=timeout)
        out.stdout += stdout or ""
        out.stderr += stderr or ""
        return proc.returncode, stdout, stderr

    try:
        for op in spec.ops:
            if out.failure:
                break
            if op.kind == "run":
                argv = list(wafer) + ["run"]
                for k, v in op.env.items():
                    argv += ["--env", f"{k}={v}"]
                if op.root:
                    roots.append(op.root)
                    if op.root not in WARNED and Path.cwd().resolve().is_relative_to(
                        op.root.resolve()
                    ):
                        WARNED.add(op.root)
                        # wafer run then sets PWD for the guest; wasmtime would not.
                        print(f"warning: the current directory is inside {op.root}: "
                              "wafer run gives the guest PWD", file=sys.stderr)
                    cleanup(op.root)
                    # adapters/wasmtime.py: `--dir ROOT::/`; the tests look for a
                    # preopen named `/`.
                    argv += ["--dir", f"{op.root}::/"]
                argv += [str(wasm)] + op.args
                out.argv = argv
                env = os.environ.copy()
                if spec.debug:
                    env["DEBUG"] = "true"
                try:
                    proc = subprocess.Popen(
                        argv,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        env=env,
                        text=True,
                        encoding="utf-8",
                        errors="replace",
                    )
                except OSError as e:
                    fail(f"cannot start {argv[0]}: {e}")
            elif proc is None:
                fail(f"`{op.kind}` with no process running")
            elif op.kind == "read":
                pipe = proc.stdout if op.stream == "stdout" else proc.stderr
                if op.stream not in ("stdout", "stderr") or pipe is None:
                    fail(f"cannot read stream `{op.stream}`")
                    continue
                got = pipe.read(len(op.payload))
                setattr(out, op.stream, getattr(out, op.stream) + got)
                if got != op.payload:
                    fail(f"{op.stream}: expected {op.payload!r}, got {got!r}")
            elif op.kind == "write":
                if op.stream != "stdin" or proc.stdin is None:
                    fail(f"cannot write stream `{op.stream}`")
                    continue
                proc.stdin.write(op.payload)
                proc.stdin.flush()
            elif op.kind == "wait":
                try:
                    code, _, stderr = finish()
                except subprocess.TimeoutExpired:
                    fail(f"timed out after {timeout:g}s")
                    continue
                finally:
                    if proc.returncode is not None:
                        proc = None
                if code != op.exit_code:
                    why = f"expected exit code {op.exit_code}, got {code}"
                    if stderr_summary(stderr):
                        why += f" (stderr: {stderr_summary(stderr)})"
                    fail(why)
            elif op.kind == "kill":
                proc.send_signal(signal.Signals[op.signal])
    finally:
        if proc is not None:
            # Not waited for (an earlier step failed, or the spec never waits): the
            # suite kills it and counts that as a failure.
            proc.kill()
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            fail("the process was still running at the end of the test")
        for root in roots:
            cleanup(root)
    return out


def main() -> int:
    repo = Path(__file__).resolve().parent.parent
    default_wafer = repo / "target" / "debug" / "wafer"
    parser = argparse.ArgumentParser(
        description="Run wasi-testsuite wasip1 tests with `wafer run`.",
    )
    parser.add_argument(
        "--wafer",
        default=os.environ.get("WAFER") or (str(default_wafer) if default_wafer.exists() else "wafer"),
        help="the wafer binary (default: $WAFER, else target/debug/wafer, else wafer on PATH)",
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds per test (default 5, as the suite)"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show the command and output of failures"
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="SUITE_DIR")
    opts = parser.parse_args()
    for d in opts.dirs:
        if not d.is_dir():
            parser.error(f"{d} is not a directory")
    wafer = [opts.wafer]

    passed = failed = 0
    for suite in find_suites(opts.dirs):
        version = suite_version(suite)
        if version != SUPPORTED_VERSION:
            count = len(list(suite.glob("*.wasm")))
            print(f"SKIP {suite}: {count} {version} tests (wafer run runs {SUPPORTED_VERSION})")
            continue
        for wasm in sorted(suite.glob("*.wasm")):
            name = str(wasm)
            try:
                spec = read_spec(wasm)
            except (SpecError, ValueError, OSError) as e:
                print(f"FAIL {name}: {e}")
                failed += 1
                continue
            if spec.world != DEFAULT_WORLD:
                print(f"SKIP {name}: world {spec.world}")
                continue
            for w in spec.warnings:
                print(f"warning: {w}", file=sys.stderr)
            out = run_test(wafer, wasm, spec, opts.timeout)
            if out.failure is None:
                print(f"PASS {name}")
                passed += 1
                continue
            print(f"FAIL {name}: {out.failure}")
            failed += 1
            if opts.verbose:
                print(f"  command: {subprocess.list2cmdline(out.argv)}")
                for label, text in (("stdout", out.stdout), ("stderr", out.stderr)):
                    for line in text.splitlines()[-20:]:
                        print(f"  {label}: {line}")
        sys.stdout.flush()

    total = passed + failed
    print(f"{passed}/{total} passed")
    if total == 0:
        print("error: no tests found", file=sys.stderr)
        return 1
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
