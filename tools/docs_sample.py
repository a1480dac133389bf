#!/usr/bin/env python3
"""The sample output in docs/install.md, made by the tool it shows: runs tools/flash.py on
an empty CircuitPython 10.2.1 drive (a folder with a boot_out.txt) and writes what it
prints into the ``` block after the marker line <!-- sample: tools/docs_sample.py --> in
docs/install.md, with the folder shown as /media/pat/CIRCUITPY and the copy lines between
the first and the last elided.

Usage: tools/docs_sample.py [--mpy-cross FILE] [--check]
--check changes nothing: exit 1 when the docs differ from a fresh run (file sizes aside).
"""

import argparse
import io
import os
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)
import tools._host  # noqa: E402,F401  (root and tests/ after the stdlib: docs/architecture.md)
DOC = os.path.join(ROOT, "docs", "install.md")
MARKER = "<!-- sample: tools/docs_sample.py -->"
BOOT_OUT = ("Adafruit CircuitPython 10.2.1 on 2026-11-30; Adafruit Feather RP2040 with rp2040\r\n"
            "Board ID:adafruit_feather_rp2040\r\n")
SHOWN_DRIVE = "/media/pat/CIRCUITPY"
SHOWN_MPY_CROSS = "/home/pat/bin/mpy-cross-linux-amd64-10.2.1.static"


def run_flash(mpy_cross):
    """flash.py's lines for a first install on an empty drive, as a user would see them."""
    from tools import flash

    with tempfile.TemporaryDirectory() as tmp:
        drive = os.path.join(tmp, "CIRCUITPY")
        os.mkdir(drive)
        with open(os.path.join(drive, "boot_out.txt"), "w", newline="") as f:
            f.write(BOOT_OUT)
        lib = os.path.join(tmp, "lib")  # empty: built from the pins, as on a first run
        argv = ["--target", drive, "--offline", "--lib", lib]
        if mpy_cross:
            argv += ["--mpy-cross", mpy_cross]
        lines = []
        rc = flash.main(argv, out=lines.append)
        if rc != 0:
            raise SystemExit("flash.py failed (%d):\n%s" % (rc, "\n".join(lines)))
        out = []
        for line in lines:
            line = line.replace(drive, SHOWN_DRIVE).replace(lib, "lib")
            line = re.sub(r"^mpy-cross: \S+", "mpy-cross: " + SHOWN_MPY_CROSS, line)
            out.append(line)
    copies = [i for i, line in enumerate(out) if re.match(r"\[\d+/\d+\] ", line)]
    if len(copies) > 2:
        out[copies[1]:copies[-1]] = ["..."]
    return out


def sample_block(text):
    """(start, end) of the lines of the ``` block after the marker in text."""
    at = text.index(MARKER)
    start = text.index("```\n", at) + 4
    return start, text.index("```", start)


def without_sizes(text):
    return re.sub(r"\(\d+\.\d KiB\)", "(size)", text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mpy-cross", help="CircuitPython's mpy-cross (default: flash.py finds it)")
    p.add_argument("--check", action="store_true", help="compare only, write nothing")
    args = p.parse_args(argv)
    fresh = "\n".join(run_flash(args.mpy_cross)) + "\n"
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    start, end = sample_block(text)
    if args.check:
        if without_sizes(text[start:end]) != without_sizes(fresh):
            print("docs/install.md's sample is out of date: run tools/docs_sample.py\n--- docs\n"
                  "%s--- flash.py now\n%s" % (text[start:end], fresh))
            return 1
        return 0
    with io.open(DOC, "w", encoding="utf-8", newline="\n") as f:
        f.write(text[:start] + fresh + text[end:])
    print("wrote the sample in docs/install.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
