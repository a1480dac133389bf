"""Load the fake CircuitPython modules without leaving them on sys.path.

    with installed(board_id="adafruit_feather_rp2040") as hw:
        hw.digitalio.levels["D5"] = False     # FACTRESET held
        runpy.run_path("boot.py")

installed() puts fresh copies into sys.modules (board, busio, digitalio, microcontroller,
rp2pio, storage, supervisor, watchdog) and restores whatever was there afterwards, so
Blinka's modules in the same test process are not disturbed. CircuitPython's gc.mem_free()
is there too while installed: it answers hw.mem_free[0] (bytes). load(name) gives one fresh
module without touching sys.modules (for code that takes modules as arguments).
Either way every function and method the circuitpython-stubs describe binds its arguments
against the stub's signature first (_stubs.strict).
"""

import contextlib
import importlib.util
import os
import sys
import types

from support.fakes import _stubs

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ("watchdog", "microcontroller", "board", "busio", "digitalio", "rp2pio", "storage",
         "supervisor")


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return _stubs.strict(mod, name)


@contextlib.contextmanager
def installed(board_id="wiznet_w5500_evb_pico"):
    import gc

    saved = {name: sys.modules.get(name) for name in NAMES}
    ns = types.SimpleNamespace(mem_free=[150000])
    gc.mem_free = lambda: ns.mem_free[0]
    try:
        for name in NAMES:
            spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + ".py"))
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            spec.loader.exec_module(mod)
            setattr(ns, name, _stubs.strict(mod, name))
        ns.microcontroller._reset()
        ns.board.board_id = board_id
        yield ns
    finally:
        del gc.mem_free
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
