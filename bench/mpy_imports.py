"""MicroPython half of bench_heap.py's import figure: heap held by every han2x_core module
compiled from source, imported one after another with a gc.collect() after each (as
tests/test_device_vm.py::test_all_modules_import_from_source_at_once). Runs on the unix
port (64-bit) and, through bench/wasm/run.mjs, on the WebAssembly build (32-bit), so the
two can be compared module by module. A module's figure includes whatever it imports that
was not imported before it (the order is sorted by name, the package first). With a
directory argument the package is taken from there instead: bench_heap.py puts .mpy files
compiled by mpy-cross there, to compare loading precompiled modules with compiling source.

The work is split into step(i) calls (import module i after collecting) and finish(): the
WebAssembly runner makes each its own call from JavaScript, because that build's collector
also scans stale stack slots (which hold on to the compiler's garbage) unless the stack has
been unwound back to JavaScript. Heap in use is gc.mem_alloc(): that build's heap grows.
Prints "module NAME BYTES", then "total BYTES COUNT" and "bits 32|64".
"""

import gc
import os
import sys

try:
    ROOT = __file__.rsplit("/", 1)[0] + "/.." if "/" in __file__ else ".."
    DRIVEN = False
except NameError:  # the WebAssembly runner: han2x_core is under /app; it calls step()
    ROOT = "/app"
    DRIVEN = True
if len(sys.argv) > 1:
    ROOT = sys.argv[1]
sys.path.insert(0, ROOT)

NAMES = ["__init__"] + sorted(n.split(".")[0] for n in os.listdir(ROOT + "/han2x_core")
                              if n.split(".")[-1] in ("py", "mpy") and n[:9] != "__init__.")
STEPS = len(NAMES)
_used = []


def step(i):
    gc.collect()
    _used.append(gc.mem_alloc())
    if i > 0:
        print("module", NAMES[i - 1], _used[i] - _used[i - 1])
    name = NAMES[i]
    __import__("han2x_core" if name == "__init__" else "han2x_core." + name)


def finish():
    gc.collect()
    _used.append(gc.mem_alloc())
    print("module", NAMES[-1], _used[-1] - _used[-2])
    print("total", _used[-1] - _used[0], len(NAMES))
    print("bits", 64 if sys.maxsize > 1 << 32 else 32)


if not DRIVEN:
    for i in range(STEPS):
        step(i)
    finish()
