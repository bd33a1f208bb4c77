"""The suite's own wasmtime adapter (SUITE/adapters/wasmtime.py, SUITE from the environment
variable WASI_TESTSUITE), with the one care Wafer's adapter takes too: `*.cleanup` links
left by earlier tests are removed before each test (see wafer.py)."""
import importlib.util
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from wafer import remove_leftover_links  # noqa: E402

_path = Path(os.environ["WASI_TESTSUITE"]) / "adapters" / "wasmtime.py"
_spec = importlib.util.spec_from_file_location("upstream_wasmtime", _path)
_upstream = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_upstream)

get_name = _upstream.get_name
get_version = _upstream.get_version
get_wasi_versions = _upstream.get_wasi_versions
get_wasi_worlds = _upstream.get_wasi_worlds


def compute_argv(test_path, args_env_root, proposals, wasi_world, wasi_version):
    remove_leftover_links(args_env_root[2])
    return _upstream.compute_argv(test_path, args_env_root, proposals, wasi_world,
                                  wasi_version)
