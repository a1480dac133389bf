"""Run tests/mpy/ under the real MicroPython binary with an RP2040-sized heap."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")


def test_mpy_suite_passes_under_micropython():
    if not os.path.exists(MICROPYTHON):
        pytest.fail("no micropython binary next to %s: run `make setup`" % sys.executable)
    proc = subprocess.run(
        [MICROPYTHON, "-X", "heapsize=192k", os.path.join("tests", "mpy", "runner.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines, out
    assert lines[-1].endswith(" 0 failed"), out
    assert proc.returncode == 0, out
    assert "PASS test_decode.test_every_corpus_frame_decodes_to_expected" in proc.stdout, out
