"""wasi-testsuite runtime adapter for Wafer (see scripts/wasi-testsuite.sh).

Commands run with `wafer run`; `wasi:http/service` tests are served by a Wafer server
through `wafer run --serve`, which prints `Serving HTTP on http://ADDR/` on stderr as
`wasmtime serve` does. The test's own HTTP servers listen on 127.0.0.1, so an `http` test's
function is granted that host (`--http 127.0.0.1:*`); a `sockets` test's command gets the
host's network (`--network`).

One thing is more careful than the suite's runner: it removes the `*.cleanup` files tests
leave behind but skips symbolic links, and `filesystem-read-directory` fails whenever a
`parent.cleanup` link is left from an earlier test (or its own earlier run). Both adapters
here (this one and wasmtime.py, which wraps the suite's own) remove such links first.
"""
import os
import shlex
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Tuple

WAFER = shlex.split(os.getenv("WAFER", "wafer"))


def get_name() -> str:
    return "wafer"


def get_version() -> str:
    result = subprocess.run(WAFER[0:1] + ["--version"], encoding="UTF-8",
                            capture_output=True, check=True)
    return result.stdout.split()[1]


def get_wasi_versions() -> List[str]:
    return ["wasm32-wasip1", "wasm32-wasip3"]


def get_wasi_worlds() -> List[str]:
    return ["wasi:cli/command", "wasi:http/service"]


def get_timeout_seconds() -> float:
    return float(os.getenv("WASI_TESTSUITE_TIMEOUT", "5"))


def compute_argv(test_path: str,
                 args_env_root: Tuple[List[str], Dict[str, str], Optional[str]],
                 proposals: List[str],
                 wasi_world: str,
                 wasi_version: str) -> List[str]:
    args, env, root = args_env_root
    remove_leftover_links(root)
    argv = WAFER + ["run"]
    if wasi_world == "wasi:http/service":
        argv += ["--serve", "--listen", "127.0.0.1:0"]
        if "http" in proposals:
            argv += ["--http", "127.0.0.1:*"]
    elif "sockets" in proposals:
        argv += ["--network"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    if root:
        argv += ["--dir", f"{root}::/"]
    return argv + [test_path] + args


def remove_leftover_links(root: Optional[str]) -> None:
    """Removes the `*.cleanup` symbolic links earlier tests left under `root`."""
    if root:
        for path in Path(root).glob("**/*.cleanup"):
            if path.is_symlink():
                path.unlink()
