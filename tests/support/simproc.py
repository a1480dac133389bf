"""tools/simulate.py in a process of its own, as a user starts it."""

import os
import subprocess
import sys

from support.util import ROOT, wait_port


def start(args, port, timeout=20):
    """Start tools/simulate.py with `args` from the root; return the Popen (stdout and stderr
    together, text) once something listens on 127.0.0.1:`port`. When nothing does, the
    process is killed and its output is the AssertionError."""
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "simulate.py")] + args,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(port, timeout=timeout)
    except TimeoutError:
        proc.kill()
        raise AssertionError(proc.communicate()[0]) from None
    return proc
