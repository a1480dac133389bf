#!/usr/bin/env python3
"""The whole device under load on the real CircuitPython 10.2.1 in the RP2040 emulator
(tests/support/board_emu.py), on both board images, from the drive flash.py installs (.mpy):

- boot to the first Modbus answer, in simulated seconds (the manual promises 5 s);
- then, for TELEGRAMS Aidon telegrams every 2 s on the HAN pin (8E1): 4 Modbus clients
  (pymodbus, one connection each) polling registers 0-78, the dashboard, settings and
  diagnostics pages loaded once each (served whole, or contained: 503 or a clean close),
  and /api/status polled every 2 simulated seconds, as the dashboard does;
- the lowest free heap, as the firmware tracks it (`free_memory_min`: the smallest
  gc.mem_free() its loop saw before each step's collect; /api/status, registers 40078-40079),
  against the board's budget (issue 11: >= 40 KB at the busiest moment);
- the peak step garbage: the most one loop step allocated (gc.mem_free() after one step's
  collect minus before the next one's). code.py carries three bench lines for it (INSTRUMENT
  below: a few hundred bytes of code.py bytecode, so the lowest free heap reads that much
  low); everything else is the drive as shipped;
- next to it, the 64-bit MicroPython VM's figure for the started device at 192 KB from .mpy
  (tests/mpy/device_vm.py, as bench_heap runs it): the fast proxy the tests keep.

Prints the figures and writes them into docs/benchmarks.md between the bench_board markers,
with the commit they were measured at (only when both boards ran). Asserts nothing.

    HAN2X_CIRCUITPYTHON_DIR=../shared/circuitpython .venv/bin/python bench/bench_board.py
        [--boards wiznet_w5500_evb_pico,adafruit_feather_rp2040] [--telegrams 6] [--no-vm]
"""

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
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
BUDGET = 40 * 1024  # issue 11: free heap at the busiest moment
# Aidon 6534 telegrams in turn: list 1 (44 bytes), list 2 (288), list 3 (396)
L1, L2, L3 = ("aidon-6534-l1-elwiz-x075", "aidon-6534-l2-elwiz-x077",
              "aidon-6534-l3-elwiz-20221012T130000")
SEQUENCE = (L1, L2, L1, L3, L1, L2, L1, L1)
PERIOD_MS = 2000
PAGES = ("/", "/settings", "/diagnostics")
MODBUS_CLIENTS = 4
WALL_S = 900  # per step, wall clock: the machine may be busy

# code.py's loop, and the same with the peak step garbage printed on each new peak.
LOOP = ("    while True:\n", "        gc.collect()\n        if stable_at is not None")
INSTRUMENT = ("    _peak, _after = 0, low  # bench_board\n    while True:\n",
              "        if _after - free > _peak:  # bench_board\n"
              "            _peak = _after - free\n"
              "            print('BENCH step garbage', _peak)\n"
              "        gc.collect()\n        _after = gc.mem_free()  # bench_board\n"
              "        if stable_at is not None")


def instrumented_code():
    with open(os.path.join(ROOT, "code.py")) as f:
        code = f.read()
    for old, new in zip(LOOP, INSTRUMENT):
        if code.count(old) != 1:
            raise RuntimeError("code.py's loop changed: update bench_board.LOOP (%r)" % old)
        code = code.replace(old, new)
    return code


def get(dev, path, timeout=120):
    """("served", bytes) | ("status", code) | ("closed", why): one HTTP GET."""
    url = "http://127.0.0.1:%d%s" % (dev.port(80), path)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
            return ("served", body) if r.status == 200 else ("status", r.status)
    except urllib.error.HTTPError as e:
        return ("status", e.code)
    except urllib.error.URLError as e:  # refused or reset before an answer
        return ("closed", e.reason if isinstance(e.reason, str) else type(e.reason).__name__)
    except (http.client.HTTPException, OSError) as e:
        return ("closed", type(e).__name__)


def status(dev):
    how, body = get(dev, "/api/status")
    return json.loads(body)["device"] if how == "served" else None


def first_answer(dev):
    deadline = time.monotonic() + WALL_S
    while time.monotonic() < deadline:
        if modbus_registers(dev.port(502), 0, 2) is not None:
            return dev.sim_s
        time.sleep(0.1)
    raise RuntimeError("no Modbus answer\n" + dev.tail())


class Poller(threading.Thread):
    """One Modbus client on its own connection, reading registers 0-78 once a simulated
    second (a wall-clock pace would flood a slow emulator) until stopped."""

    def __init__(self, dev, stop):
        super().__init__(daemon=True)
        self.dev, self.stop, self.ok, self.failed, self.fmin = dev, stop, 0, 0, None

    def run(self):
        import logging

        from pymodbus.client import ModbusTcpClient

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # failures are counted
        client = ModbusTcpClient("127.0.0.1", port=self.dev.port(502), timeout=WALL_S,
                                 retries=0)
        while not self.stop.is_set():
            sim0 = self.dev.sim_s
            try:
                if not client.connected:
                    client.connect()
                r = client.read_holding_registers(0, count=79, device_id=1)
                if r.isError():
                    raise ValueError(r)
                self.ok += 1
                self.fmin = r.registers[77] << 16 | r.registers[78]
            except Exception:  # noqa: BLE001 - a refused, dropped or late answer: counted
                self.failed += 1
                client.close()
            while self.dev.sim_s < sim0 + 1 and not self.stop.wait(0.1):
                pass
        client.close()


def run_board(board, telegrams):
    """{figure: value} for one board image."""
    corpus = {c["id"]: c for c in load_corpus()}
    dev = temp_board(board, code=instrumented_code())
    stop = threading.Event()
    pollers = []
    try:
        wall0 = time.monotonic()
        dev.wait_for("HAN2X address", WALL_S)
        out = {"boot_s": first_answer(dev)}
        s = status(dev)
        out["start_free"] = s and s["free_memory"]
        pollers = [Poller(dev, stop) for _ in range(MODBUS_CLIENTS)]
        for p in pollers:
            p.start()
        bursts = []
        for i in range(telegrams):
            frame = corpus[SEQUENCE[i % len(SEQUENCE)]]["hex"]
            frame_ms = len(frame) // 2 * 11 * 1000 // 2400  # 8E1: 11 bits a byte
            bursts.append(dev.send_han([frame], "8E1", gap_ms=PERIOD_MS - frame_ms,
                                       delay_ms=0))
        dev.wait_han(bursts[min(1, telegrams - 1)], WALL_S)  # a full reading to show
        polls = [0, 0]  # /api/status answered, not answered
        out["pages"] = {}
        for path in PAGES:
            how, what = get(dev, path)
            out["pages"][path] = "served (%s bytes)" % format(len(what), ",") \
                if how == "served" else "contained (%s %s)" % (how, what)
            polls[status(dev) is None] += 1
        while bursts[-1] not in dev.han_done:  # the dashboard's poll: every 2 s simulated
            if dev.proc.poll() is not None or time.monotonic() - wall0 > 3 * WALL_S:
                raise RuntimeError("telegrams not sent\n" + dev.tail())
            sim0 = dev.sim_s
            polls[status(dev) is None] += 1
            while dev.sim_s < sim0 + 2 and bursts[-1] not in dev.han_done:
                time.sleep(0.1)
        stop.set()
        for p in pollers:
            p.join(30)
        s = None
        for _ in range(10):  # the last word: /api/status, else the registers
            s = status(dev)
            if s is not None:
                break
            time.sleep(1)
        regs = [p.fmin for p in pollers if p.fmin is not None]  # never rises: the lowest
        garbage = [int(n) for n in re.findall(r"BENCH step garbage (\d+)", dev.console)]
        out.update(
            end_free=s and s["free_memory"],
            fmin=s["free_memory_min"] if s else min(regs, default=None),
            garbage=max(garbage) if garbage else None,
            frames_ok=s and s["frames_ok"], telegrams=telegrams,
            web_errors=s and s["web_errors"], last_error=s and s["last_error"],
            modbus=(sum(p.ok for p in pollers), sum(p.failed for p in pollers)),
            polls=tuple(polls), sim_s=dev.sim_s, wall_s=time.monotonic() - wall0,
            tracebacks=dev.console.count("Traceback"))
        return out
    finally:
        stop.set()
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
                            "boot.py", "lib", "tools/flash.py", "bench/bench_board.py"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return head + (" plus uncommitted changes" if dirty else "")


def num(n):
    return "-" if n is None else "{:,}".format(n)


def budget(r):
    if r["fmin"] is None:
        return "-"
    gap = r["fmin"] - BUDGET
    return "met (+%s)" % num(gap) if gap >= 0 else "**short by %s**" % num(-gap)


def report(results, vm_free):
    rows = [
        ("boot to the first Modbus answer, simulated s (manual: 5 s)",
         lambda r: "%.2f" % r["boot_s"]),
        ("`free_memory` after the start (bytes)", lambda r: num(r["start_free"])),
        ("**lowest free heap** (`free_memory_min`, bytes)", lambda r: num(r["fmin"])),
        ("against the budget (>= %s bytes)" % num(BUDGET), budget),
        ("peak step garbage (bytes, one loop step)", lambda r: num(r["garbage"])),
        ("`free_memory` at the end", lambda r: num(r["end_free"])),
    ] + [("page %s" % p, lambda r, p=p: r["pages"][p]) for p in PAGES] + [
        ("telegrams sent / decoded (`frames_ok`)",
         lambda r: "%d / %s" % (r["telegrams"], num(r["frames_ok"]))),
        ("Modbus reads (%d clients) answered / not" % MODBUS_CLIENTS,
         lambda r: "%s / %s" % tuple(map(num, r["modbus"]))),
        ("/api/status polls answered / not", lambda r: "%d / %d" % r["polls"]),
        ("`web_errors`, `last_error` at the end",
         lambda r: "%s, %s" % (num(r["web_errors"]), r["last_error"] or "none")),
        ("tracebacks on the console", lambda r: str(r["tracebacks"])),
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
                 "started device: %s bytes free (a proxy only)." % num(vm_free))
    for b in boards:
        if "error" in results[b]:
            lines.append("%s: the run failed: `%s`" % (BOARD_NAMES[b], results[b]["error"]))
    return lines


def write_doc(lines, telegrams):
    with open(DOC) as f:
        text = f.read()
    block = "\n".join([BEGIN, "", "Measured at commit %s, CircuitPython %s in rp2040js, %d "
                       "telegrams." % (commit(), CP_VERSION, telegrams), ""] + lines + ["", END])
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: block, text,
                      flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## bench_board.py: the real CircuitPython\n\n" + \
            block + "\n"
    with open(DOC, "w") as f:
        f.write(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boards", default=",".join(BOARD_NAMES))
    ap.add_argument("--telegrams", type=int, default=6)
    ap.add_argument("--no-vm", action="store_true", help="leave out the VM's figure")
    args = ap.parse_args(argv)
    boards = args.boards.split(",")
    results = {}
    for board in boards:
        print("booting %s ..." % board, flush=True)
        try:
            results[board] = run_board(board, args.telegrams)
        except Exception as e:  # noqa: BLE001 - a failed run is a figure too
            results[board] = {"error": "%s: %s" % (type(e).__name__, str(e)[:300])}
        print("  %s" % results[board], flush=True)
    vm_free = None
    if not args.no_vm:
        try:
            vm_free = vm_started_free()
        except Exception as e:  # noqa: BLE001 - the proxy is optional
            print("VM figure failed: %r" % e)
    lines = report(results, vm_free)
    print("\n".join(lines))
    if set(boards) == set(BOARD_NAMES) and not args.no_vm:
        write_doc(lines, args.telegrams)
        print("written to docs/benchmarks.md")
    return 1 if all("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
