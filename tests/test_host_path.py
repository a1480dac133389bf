"""The host side's one import path (tools/_host.py): the repository root holds the board's
code.py, and no tool, bench or test may let it shadow the standard library's `code` module,
which pdb (and so pytest's --pdb, and amshan through construct) imports."""

import glob
import importlib.util
import os
import subprocess
import sys
import sysconfig

import pytest

from support.util import ROOT

STDLIB = sysconfig.get_paths()["stdlib"]

# Runs a host script as `python SCRIPT` would (its folder first on sys.path, the working
# directory the root), but only its module level, where each sets up its path; then says
# where `code` comes from and, when that is the stdlib, imports code and pdb for real; and
# where the firmware comes from for the scripts that set up the path (build_lib.py and
# run_all.py need only the stdlib).
_AS_SCRIPT = r"""
import importlib.util, os, runpy, sys
script = sys.argv[1]
sys.path[0] = os.path.dirname(os.path.abspath(script))
sys.argv = [script]
runpy.run_path(script, run_name="__host_path_test__")
origin = importlib.util.find_spec("code").origin
print("CODE", origin)
if not origin.startswith(os.getcwd()):
    import code, pdb
    print("PDB", code.InteractiveConsole.__name__, pdb.Pdb.__name__)
if "han2x_core" in sys.modules or "tools._host" in sys.modules:
    import han2x_core
    print("CORE", han2x_core.__file__)
"""


def _scripts():
    """Every host script that runs on CPython: tools and benches with a __main__ block
    (bench/mpy_*.py run under MicroPython)."""
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tools", "*.py"))
                       + glob.glob(os.path.join(ROOT, "bench", "*.py"))):
        if os.path.basename(path).startswith("mpy_"):
            continue
        with open(path) as f:
            if 'if __name__ == "__main__":' in f.read():
                found.append(os.path.relpath(path, ROOT))
    return found


def test_the_tests_import_the_stdlib_code_and_pdb():
    """Under pytest, however it was started (`python -m pytest` puts the root first)."""
    assert importlib.util.find_spec("code").origin.startswith(STDLIB)
    import code
    import pdb

    assert code.__file__.startswith(STDLIB) and pdb.Pdb and code.InteractiveConsole
    first_root = [os.path.abspath(p or ".") for p in sys.path].index(ROOT)
    assert all(os.path.abspath(p or ".") != ROOT for p in sys.path[:first_root])
    assert any(p.startswith(STDLIB) for p in sys.path[:first_root]), sys.path
    import han2x_core

    assert han2x_core.__file__.startswith(os.path.join(ROOT, "han2x_core"))


def test_python_m_pytest_from_the_root_keeps_the_stdlib_code():
    """As `make test` starts it: the working directory (the root) is sys.path[0] before
    tests/conftest.py runs."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "-p", "no:xdist", os.path.join("tests", "test_host_path.py") + "::"
         "test_the_tests_import_the_stdlib_code_and_pdb"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", _scripts())
def test_each_tool_and_bench_imports_the_stdlib_code_and_pdb(script):
    proc = subprocess.run([sys.executable, "-c", _AS_SCRIPT, script], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "CODE " + STDLIB in out and "PDB InteractiveConsole Pdb" in out, out
    with open(os.path.join(ROOT, script)) as f:
        sets_up = "import tools._host" in f.read()
    assert sets_up == ("CORE " + os.path.join(ROOT, "han2x_core") in out), out


def test_the_scripts_are_found():
    """The list above is not empty by accident: simulate, decode, flash and the benches."""
    names = _scripts()
    for name in ("tools/simulate.py", "tools/decode.py", "tools/flash.py",
                 "bench/bench_heap.py", "bench/bench_board.py"):
        assert name in names, names
