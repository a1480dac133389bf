"""The MicroPython binary (unix port, `make setup` puts it next to the venv's python) and how
tests and benches run scripts under it: an RP2040-sized heap, from the repository root."""

import os
import subprocess
import sys

from support.util import ROOT

MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")


def command(args, heap="192k"):
    """The command line that runs `args` (a script and its arguments, or "-c", code) under
    MicroPython with a heap of `heap`."""
    return [MICROPYTHON, "-X", "heapsize=" + heap] + list(args)


def require():
    """Fail the calling test (never skip it) when the binary is missing."""
    if not os.path.exists(MICROPYTHON):
        import pytest

        pytest.fail("no micropython binary next to %s: run `make setup`" % sys.executable)


def run(args, heap="192k", timeout=300):
    """Run to the end from the repository root; the CompletedProcess (stdout, stderr text)."""
    return subprocess.run(command(args, heap), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def start(args, heap="192k"):
    """Start from the repository root; stdout and stderr together on the Popen's stdout."""
    return subprocess.Popen(command(args, heap), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
