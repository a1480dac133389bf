"""The one import-path set-up of the host side (tools, benches, tests).

Every host script starts with the same two lines:

    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import tools._host  # noqa: E402,F401

and tests get the same from tests/conftest.py. Importing this module puts the repository
root and tests/ (for the `support` package) on sys.path *after* the standard library and
site-packages, and removes them from anywhere before them (`python -m ...` from the root
puts the root first, pytest puts tests/ first): the root holds
CircuitPython's code.py, which must never shadow the standard library's `code` module
(pdb, pytest's debugger and anything else that imports `code`). Nothing in the root has
the name of an installed module, so the firmware (`han2x_core`) and `tools` import as
before. tests/test_host_path.py checks this for every tool, bench and the tests.

It also gives CPython `micropython.const` when Blinka (which ships a `micropython` module)
is not installed: the cores write `from micropython import const`.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") not in (ROOT, TESTS)]
sys.path += [ROOT, TESTS]

try:
    from micropython import const  # noqa: F401
except ImportError:
    import types

    _m = types.ModuleType("micropython")
    _m.const = lambda x: x
    sys.modules["micropython"] = _m
