"""Run every tests/mpy/test_*.py module's test_* functions under MicroPython.

Usage: micropython -X heapsize=192k tests/mpy/runner.py [name-filter]
Prints PASS/FAIL per test and a final line "N passed, N failed"; exit status 1 on failure.
The tests import han2x_core from the repository root, which is put on sys.path here.
"""

import gc
import os
import sys


def _dirname(path):
    i = path.rfind("/")
    if i < 0:
        return "."
    return path[:i] if i else "/"


HERE = _dirname(__file__)
ROOT = _dirname(_dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from testrun import run  # noqa: E402


def main(argv):
    pattern = argv[1] if len(argv) > 1 else ""
    modules = sorted(n[:-3] for n in os.listdir(HERE)
                     if n.startswith("test_") and n.endswith(".py"))
    passed = 0
    failed = 0
    for name in modules:
        try:
            mod = __import__(name)
        except Exception as e:
            failed += 1
            print("FAIL", name, "(import)")
            sys.print_exception(e)
            continue
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            test = getattr(mod, attr)
            if not callable(test):
                continue
            full = name + "." + attr
            if pattern and pattern not in full:
                continue
            if run(full, test):
                passed += 1
            else:
                failed += 1
        # Free the module (and what only it referenced) before the next one: the heap is
        # shared by all modules in this one process.
        mod = None
        test = None
        sys.modules.pop(name, None)
        gc.collect()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


sys.exit(main(sys.argv))
