"""Host-side bootstrap for the tools: the repo root on sys.path, and `micropython.const`
on CPython (the cores write `from micropython import const`; Blinka, when installed,
ships its own `micropython` module, which is then used)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

try:
    from micropython import const  # noqa: F401
except ImportError:
    import types

    _m = types.ModuleType("micropython")
    _m.const = lambda x: x
    sys.modules["micropython"] = _m
