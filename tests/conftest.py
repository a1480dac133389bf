"""pytest setup: the host side's one import path (tools/_host.py: the root and tests/ after
the standard library, so code.py never shadows the stdlib `code` that pdb imports), and each
test's own simdata/."""

import os
import sys

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tools._host  # noqa: E402,F401

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _own_simdata(tmp_path, monkeypatch):
    """Every test's tools/simulate.py keeps its settings file in the test's own folder, so
    a setting one test saves (a scaling factor written over Modbus) never leaks into
    another test or into the developer's simdata/."""
    monkeypatch.setenv("HAN2X_SIMDATA", str(tmp_path / "simdata"))

