#!/usr/bin/env python3
"""The whole device on the real CircuitPython 10.2.1 in the RP2040 emulator (tests/support/board_emu.py),
on both board images, from the drive flash.py installs (.mpy):

- boot to the first Modbus answer, in simulated seconds (the manual promises 5 s);
- the firmware's own free heap (/api/status `free_memory`, gc.mem_free() after the loop's
  collect; `free_memory_min` when the firmware reports it) right after the start, and again
  after Aidon telegrams while a Modbus client polls;
- next to it, the MicroPython VM's figure for the started device at 192 KB from .mpy
  (tests/mpy/device_vm.py, as bench_heap runs it): the proxy this replaces.

Prints the figures and writes them into docs/benchmarks.md between the bench_board markers,
with the commit they were measured at. Asserts nothing about them.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.append(ROOT)
import tools._host  # noqa: E402,F401  (root and tests/ after the stdlib: docs/architecture.md)
from support.board_emu import BOARD_NAMES, CP_VERSION, temp_board  # noqa: E402
from test_board_emu import modbus_registers  # noqa: E402
from support.util import load_corpus  # noqa: E402

DOC = os.path.join(ROOT, "docs", "benchmarks.md")
BEGIN = "<!-- bench_board.py writes from here; do not edit by hand -->"
END = "<!-- bench_board.py end -->"
FRAMES = ("aidon-6534-l1-elwiz-x075", "aidon-6534-l2-elwiz-x077",
          "aidon-6534-l3-elwiz-20221012T130000")
WALL_S = 600


def status(dev):
    with urllib.request.urlopen("http://127.0.0.1:%d/api/status" % dev.port(80),
                                timeout=60) as r:
        return json.loads(r.read())


def first_answer(dev):
    deadline = time.monotonic() + WALL_S
    while time.monotonic() < deadline:
        if modbus_registers(dev.port(502), 0, 2) is not None:
            return dev.sim_s
        time.sleep(0.1)
    raise RuntimeError("no Modbus answer\n" + dev.tail())


def run_board(board):
    """{figure: value} for one board image."""
    corpus = {c["id"]: c for c in load_corpus()}
    dev = temp_board(board)
    try:
        wall0 = time.monotonic()
        dev.wait_for("HAN2X address", WALL_S)
        out = {"boot_s": first_answer(dev)}
        s = status(dev)
        out["start_free"] = s.get("free_memory")
        out["start_min"] = s.get("free_memory_min")
        burst = dev.send_han([corpus[f]["hex"] for f in FRAMES], "8E1", gap_ms=500)
        reads = 0
        while burst not in dev.han_done and time.monotonic() - wall0 < 3 * WALL_S:
            reads += modbus_registers(dev.port(502)) is not None
            time.sleep(0.5)
        dev.wait_han(burst, WALL_S)
        s = status(dev)
        out.update(run_free=s.get("free_memory"), run_min=s.get("free_memory_min"),
                   frames_ok=s.get("frames_ok"), reads=reads, sim_s=dev.sim_s,
                   wall_s=time.monotonic() - wall0)
        return out
    finally:
        dev.close()


def vm_started_free():
    """The MicroPython VM's free heap once the device started, 192k, .mpy (bench_heap)."""
    import bench_heap

    core = tempfile.mkdtemp(prefix="bench-core-")
    folder = tempfile.mkdtemp(prefix="bench-board-vm-")
    p = None
    try:
        if not bench_heap.compile_mpy(core):
            return None
        shutil.copytree(os.path.join(ROOT, "han2x_core", "www"),
                        os.path.join(core, "han2x_core", "www"))
        p = bench_heap.start_device("192k", folder, start_ms=0, max_s=20, core=core)
        free = int(p.wait_line("started", 30).split()[2])
        bench_heap.stop_device(p.modbus_port)
        p.finish(30)
        return free
    finally:
        if p is not None:
            p.kill()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(core, ignore_errors=True)


def commit():
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "han2x_core", "code.py",
                            "boot.py", "lib/requirements.txt"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return head + (" plus uncommitted firmware changes" if dirty else "")


def num(n):
    return "-" if n is None else "{:,}".format(n)


def report(results, vm_free):
    rows = [
        ("boot to the first Modbus answer, simulated s (manual: 5 s)",
         lambda r: "%.2f" % r["boot_s"]),
        ("`free_memory` after the start (bytes)", lambda r: num(r["start_free"])),
        ("`free_memory_min` after the start", lambda r: num(r["start_min"])),
        ("`free_memory` after %d Aidon telegrams, Modbus polled" % len(FRAMES),
         lambda r: num(r["run_free"])),
        ("`free_memory_min` then", lambda r: num(r["run_min"])),
        ("telegrams decoded (`frames_ok`)", lambda r: num(r["frames_ok"])),
        ("Modbus reads answered meanwhile", lambda r: num(r["reads"])),
        ("simulated s / wall s of the whole run",
         lambda r: "%.1f / %.0f" % (r["sim_s"], r["wall_s"])),
    ]
    boards = list(results)
    lines = ["| figure | " + " | ".join(BOARD_NAMES[b] for b in boards) + " |",
             "|---|" + "---|" * len(boards)]
    for label, fmt in rows:
        lines.append("| %s | %s |" % (label, " | ".join(
            fmt(results[b]) if "error" not in results[b] else "failed" for b in boards)))
    lines.append("")
    lines.append("MicroPython VM (64-bit, `tests/mpy/device_vm.py`, 192 KB heap, .mpy), the "
                 "same started state: %s bytes free." % num(vm_free))
    for b in boards:
        if "error" in results[b]:
            lines.append("%s: the run failed: `%s`" % (BOARD_NAMES[b], results[b]["error"]))
    return lines


def write_doc(lines):
    with open(DOC) as f:
        text = f.read()
    block = "\n".join([BEGIN, "", "Measured at commit %s, CircuitPython %s in rp2040js."
                       % (commit(), CP_VERSION), ""] + lines + ["", END])
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: block, text,
                      flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## bench_board.py: the real CircuitPython\n\n" + \
            block + "\n"
    with open(DOC, "w") as f:
        f.write(text)


def main():
    results = {}
    for board in BOARD_NAMES:
        print("booting %s ..." % board, flush=True)
        try:
            results[board] = run_board(board)
        except Exception as e:  # noqa: BLE001 - a failed run is a figure too
            results[board] = {"error": "%s: %s" % (type(e).__name__, str(e)[:300])}
        print("  %s" % results[board], flush=True)
    vm_free = vm_started_free()
    lines = report(results, vm_free)
    print("\n".join(lines))
    write_doc(lines)
    print("written to docs/benchmarks.md")
    return 1 if all("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
