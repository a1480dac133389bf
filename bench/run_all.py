#!/usr/bin/env python3
"""Run every bench/bench_*.py in turn (`make bench`): bench_decode, bench_heap, bench_modbus,
then bench_board (the real CircuitPython in the RP2040 emulator; several minutes) last.
Each prints its own figures; docs/benchmarks.md explains them.

    .venv/bin/python bench/run_all.py [--skip bench_board[,bench_x ...]]
"""

import argparse
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LAST = "bench_board.py"  # the long one: the fast figures come first


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip", default="", help="benches to leave out, comma-separated "
                    "(e.g. bench_board)")
    args = ap.parse_args(argv)
    skip = {n if n.endswith(".py") else n + ".py" for n in args.skip.split(",") if n}
    paths = sorted(glob.glob(os.path.join(HERE, "bench_*.py")),
                   key=lambda p: (os.path.basename(p) == LAST, p))
    unknown = skip - {os.path.basename(p) for p in paths}
    if unknown:
        ap.error("no such bench: " + ", ".join(sorted(unknown)))
    failed = []
    for path in paths:
        name = os.path.basename(path)
        if name in skip:
            print("=== %s: skipped\n" % name, flush=True)
            continue
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
