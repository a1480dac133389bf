"""Run tests/mpy/ under the real MicroPython binary with an RP2040-sized heap."""

import os

from support import mpy


def test_mpy_suite_passes_under_micropython():
    mpy.require()
    proc = mpy.run([os.path.join("tests", "mpy", "runner.py")])
    out = proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines, out
    assert lines[-1].endswith(" 0 failed"), out
    assert proc.returncode == 0, out
    assert "PASS test_decode.test_every_corpus_frame_decodes_to_expected" in proc.stdout, out
