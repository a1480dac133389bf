"""tests/mpy/ runs under MicroPython (tests/mpy/runner.py, driven by tests/test_micropython.py).

pytest must not collect these modules on CPython: they use MicroPython-only APIs such as
gc.mem_alloc().
"""

collect_ignore_glob = ["*.py"]
