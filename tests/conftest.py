"""pytest setup: repo root on sys.path, and `micropython.const` on CPython."""

import os
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
