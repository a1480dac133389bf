"""pytest setup: repo root on sys.path, and `micropython.const` on CPython."""

import os
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The repo root holds CircuitPython's code.py, which would shadow the stdlib `code` module
# (pdb imports it; `python -m pytest` puts the working directory on sys.path). Import the
# stdlib one first, with the root hidden.
_path = sys.path[:]
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != ROOT]
sys.modules.pop("code", None)
import code  # noqa: E402,F401

sys.path[:] = _path
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

try:
    from micropython import const  # noqa: F401  (Blinka ships one)
except ImportError:
    mod = types.ModuleType("micropython")
    mod.const = lambda x: x
    sys.modules["micropython"] = mod


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _own_simdata(tmp_path, monkeypatch):
    """Every test's tools/simulate.py keeps its settings file in the test's own folder, so
    a setting one test saves (a scaling factor written over Modbus) never leaks into
    another test or into the developer's simdata/."""
    monkeypatch.setenv("HAN2X_SIMDATA", str(tmp_path / "simdata"))
