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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """`--dist loadgroup` (make test): pytest-xdist 3.8 tells the controller a test's
    xdist_group by appending "@group" to item._nodeid, which pytest 9.2 no longer reads
    (pytest-xdist issue 1386). Without it the groups are ignored and every worker that got
    one test of a board story booted that story itself: each emulator story ran twice.
    Here the suffix goes onto the id pytest 9.2 reads; a pytest or xdist that already
    carries it is left alone."""
    if not getattr(config.option, "loadgroup", False):  # set in xdist workers only
        return
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        nodeid = item.nodeid
        if names and not nodeid.endswith("@" + "_".join(names)) and hasattr(item, "_id"):
            item._id = type(item._id).parse(nodeid + "@" + "_".join(names))
