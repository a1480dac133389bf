#!/usr/bin/env python3
"""Where the heap goes on the real CircuitPython 10.2.1 (W5500-EVB-Pico in rp2040js, .mpy):
boots code.py with a collect + gc.mem_free() print after each start-up stage, then runs the
busy moment (telegrams every 2 s, 4 Modbus clients polling, the dashboard, diagnostics and
settings pages, /api/status) and prints the firmware's own free_memory / free_memory_min.

A developer's probe (issue 11): prints figures, asserts nothing.
    HAN2X_CIRCUITPYTHON_DIR=../shared/circuitpython .venv/bin/python bench/board_heap_points.py
    ... --busy     (then 4 Modbus clients at once, pages and telegrams; on 2026-12-01 the
                    emulated board's clock stopped twice in this phase; not reproduced in two
                    later runs. If it stops again, Board.tail() says whether node still reports
                    and what the SPI bridge is doing)
    ... --write    (the table into docs/benchmarks.md)  --console (the console's end)
"""

import json
import os
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.append(ROOT)
import tools._host  # noqa: E402,F401  (root and tests/ after the stdlib: docs/architecture.md)
from support.board_emu import temp_board  # noqa: E402
from support.util import load_corpus  # noqa: E402

PROBE = ("def _heap(label):\n"
         "    import gc\n"
         "    gc.collect()\n"
         "    print('HEAP %s %d' % (label, gc.mem_free()))\n")
# (anchor line, label): the probe goes before the anchor, at its indentation. code.py wires
# the loop, han2x_core/boardstart.py the start-up, han2x_core/assembly.py builds the device
# (both compiled here with mpy-cross, as flash.py ships them).
POINTS = (
    ("from han2x_core import boardstart", "startup imported"),
    ("regs = app.registers", "boardstart dropped"),
)
BOARDSTART_POINTS = (
    ("prof, known = board_io.profile_for(", "board_io imported"),
    ("loaded = SettingsStore(", "storage imported"),
    ('print("HAN2X", __version__', "settings loaded"),
    ("han = HanReader(", "han_reader imported"),
    ("from han2x_core import assembly", "HanReader built"),
    ("app = assembly.build(", "assembly imported (app, registers, modbus_server, ...)"),
    ("app.reset = reset", "device built (assembly.build)"),
    ("return app", "assembly dropped"),
)
ASSEMBLY_POINTS = (
    ("app = App(han, regs", "build: Registers"),
    ("saver = ScalingSaver(app)", "build: App"),
    ("if hasattr(han, \"watch\"):", "build: energy restored"),
    ("net = make_network()", "build: HAN receiver started"),
    ("modbus = ModbusServer(", "build: network up (W5500 driver, chip, socket pool)"),
    ("app.network = net", "build: Modbus server built"),
    ("if full:", "build: LEDs, button, board status"),
    ("if app.settings[\"mqtt_host\"]:", "build: web server built"),
    ("app.configure(settings)", "build: MQTT (when on), before configure"),
    ("return app", "build: configured"),
    ("from han2x_core.web import WebServer", "build: before the web modules"),
    ("web = WebServer(", "build: web modules imported"),
)
FRAMES = ("aidon-6534-l3-amsreader-20251214T160000", "aidon-6534-l2-elwiz-x077",
          "aidon-6534-l1-elwiz-x075")
WALL_S = 900


def probed(text, points, head):
    """text with a _heap(label) line before each anchor line; head goes first."""
    out = []
    for line in text.split("\n"):
        for anchor, label in points:
            if line.strip().startswith(anchor):
                indent = line[:len(line) - len(line.lstrip())]
                out.append("%s_heap(%r)" % (indent, label))
        out.append(line)
    missing = [a for a, _ in points if not any(l.strip().startswith(a) for l in out)]
    if missing:
        raise SystemExit("anchors not found (update POINTS): %r" % missing)
    return head + "\n".join(out)


def probed_code():
    with open(os.path.join(ROOT, "code.py")) as f:
        return probed(f.read(), POINTS, PROBE + "_heap('interpreter')\n")


def probed_module(folder, name, points):
    """han2x_core/<name>.mpy with the probes, compiled by CircuitPython's mpy-cross."""
    import subprocess

    from support.board_emu import mpy_cross

    with open(os.path.join(ROOT, "han2x_core", name + ".py")) as f:
        src = probed(f.read(), points, PROBE)
    py = os.path.join(folder, name + ".py")
    with open(py, "w") as f:
        f.write(src)
    subprocess.run([mpy_cross(), "-o", py[:-3] + ".mpy", "-s", "han2x_core." + name, py],
                   check=True)
    with open(py[:-3] + ".mpy", "rb") as f:
        return f.read()


def get(dev, path):
    url = "http://127.0.0.1:%d%s" % (dev.port(80), path)
    try:
        with urllib.request.urlopen(url, timeout=300) as r:
            body = r.read()
            return r.status, body
    except Exception as e:  # noqa: BLE001 - a figure too
        return type(e).__name__, b""


def modbus_poller(port, stop, counts, i):
    from pymodbus.client import ModbusTcpClient

    c = ModbusTcpClient("127.0.0.1", port=port, timeout=30, retries=0)
    try:
        while not stop.is_set():
            if not c.connected and not c.connect():
                time.sleep(1)
                continue
            try:
                r = c.read_holding_registers(0, count=50, device_id=1)
                counts[i] += 0 if r.isError() else 1
            except Exception:  # noqa: BLE001
                counts[i] -= 1000
                c.close()
            time.sleep(0.5)
    finally:
        c.close()


def status(dev):
    st, body = get(dev, "/api/status")
    return json.loads(body)["device"] if st == 200 else {"error": st}


def run(busy):
    """[(label, value)] of one boot."""
    corpus = {c["id"]: c for c in load_corpus()}
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        files = {"han2x_core/%s.mpy" % name: probed_module(folder, name, points)
                 for name, points in (("assembly", ASSEMBLY_POINTS),
                                      ("boardstart", BOARDSTART_POINTS))}
    dev = temp_board("wiznet_w5500_evb_pico", code=probed_code(), settings="dhcp = false\n",
                     files=files)
    rows = []
    try:
        t0 = time.monotonic()
        while "HEAP boardstart dropped" not in dev.console:
            if time.monotonic() - t0 > WALL_S or dev.proc.poll() is not None:
                raise SystemExit("no start\n" + dev.tail())
            time.sleep(1)
        time.sleep(3)
        for line in dev.console.splitlines():
            if "HEAP " in line:  # the first follows the console's title escape
                label, value = line[line.index("HEAP ") + 5:].rsplit(" ", 1)
                rows.append(("gc.mem_free() after a collect: " + label, int(value)))
        d = status(dev)
        rows.append(("/api/status right after the start: free_memory", d.get("free_memory")))
        rows.append(("... free_memory_min", d.get("free_memory_min")))
        dev.wait_han(dev.send_han([corpus[f]["hex"] for f in FRAMES], "8E1", gap_ms=1500), 600)
        d = status(dev)
        rows.append(("after 3 Aidon telegrams: free_memory", d.get("free_memory")))
        rows.append(("... free_memory_min (frames_ok %s)" % d.get("frames_ok"),
                     d.get("free_memory_min")))
        pages = []
        for path in ("/", "/diagnostics", "/settings"):
            st, body = get(dev, path)
            pages.append("%s %s" % (path, st))
        d = status(dev)
        rows.append(("after %s: free_memory" % ", ".join(pages), d.get("free_memory")))
        rows.append(("... free_memory_min (web_errors %s)" % d.get("web_errors"),
                     d.get("free_memory_min")))
        if busy:  # 4 Modbus clients at once with pages and telegrams (issue 11's busy moment)
            stop = threading.Event()
            counts = [0] * 4
            threads = [threading.Thread(target=modbus_poller,
                                        args=(dev.port(502), stop, counts, i), daemon=True)
                       for i in range(4)]
            for t in threads:
                t.start()
            burst = dev.send_han([corpus[f]["hex"] for f in FRAMES], "8E1", gap_ms=1500)
            for path in ("/", "/api/status", "/diagnostics"):
                print("GET", path, get(dev, path)[0], "sim %.1f s" % dev.sim_s, flush=True)
            dev.wait_han(burst, 600)
            stop.set()
            for t in threads:
                t.join(60)
            d = status(dev)
            rows.append(("busy, Modbus reads %s: free_memory_min" % counts,
                         d.get("free_memory_min")))
        print("wall %.0f s, sim %.1f s" % (time.monotonic() - t0, dev.sim_s))
        return rows
    finally:
        if "--console" in sys.argv:
            print(dev.console[-3000:])
        dev.close()


def main():
    rows = run("--busy" in sys.argv)
    lines = ["| point | bytes |", "|---|---|"]
    lines += ["| %s | %s |" % (label, "-" if v is None else "{:,}".format(v))
              for label, v in rows]
    print("\n".join(lines))
    if "--write" in sys.argv:
        from bench_board import commit

        doc = os.path.join(ROOT, "docs", "benchmarks.md")
        begin, end = ("<!-- board_heap_points.py writes from here; do not edit by hand -->",
                      "<!-- board_heap_points.py end -->")
        with open(doc) as f:
            text = f.read()
        block = "\n".join([begin, "", "Measured at commit %s, CircuitPython 10.2.1 in rp2040js "
                           "(W5500-EVB-Pico, .mpy, static address)." % commit(), ""]
                          + lines + ["", end])
        if begin in text:
            text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
        else:
            text = (text.rstrip("\n") + "\n\n## board_heap_points.py: where the heap goes at "
                    "start\n\n`bench/board_heap_points.py` boots code.py with a collect and "
                    "`gc.mem_free()` printed after each start-up stage, then reads the "
                    "firmware's own figures over /api/status after telegrams and pages.\n\n"
                    + block + "\n")
        with open(doc, "w") as f:
            f.write(text)
        print("written to docs/benchmarks.md")


if __name__ == "__main__":
    main()
