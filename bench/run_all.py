#!/usr/bin/env python3
"""Run every bench/bench_*.py in turn (`make bench`): bench_board (the real CircuitPython in
the RP2040 emulator), bench_decode, bench_heap, bench_modbus.
Each prints its own figures; docs/benchmarks.md explains them."""

import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    failed = []
    for path in sorted(glob.glob(os.path.join(HERE, "bench_*.py"))):
        name = os.path.basename(path)
        print("=== %s" % name, flush=True)
        t0 = time.monotonic()
        rc = subprocess.call([sys.executable, path])
        print("=== %s: %s in %.1f s\n" % (name, "ok" if rc == 0 else "FAILED (%d)" % rc,
                                         time.monotonic() - t0), flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
