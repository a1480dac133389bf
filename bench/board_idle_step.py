#!/usr/bin/env python3
"""What an idle loop step costs on the real CircuitPython 10.2.1 (W5500-EVB-Pico in
rp2040js, .mpy; tests/support/board_emu.py): CPU per step and per polled service (simulated
time: time.monotonic_ns() around app.step() and around each service's poll()) and the
garbage per step (free after one step's collect minus free before the next one's), averaged
over 100 steps: first with nobody connected, then with 4 Modbus clients connected that each
read once and then stay idle. No HAN input.

A developer's probe (docs/network.md, "How often the servers look for connections"): prints
the console's PROBE lines, asserts nothing, writes nothing.
    HAN2X_CIRCUITPYTHON_DIR=../shared/circuitpython .venv/bin/python bench/board_idle_step.py
"""

import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.append(ROOT)
import tools._host  # noqa: E402,F401  (root and tests/ after the stdlib: docs/architecture.md)
from support.board_emu import temp_board  # noqa: E402
from support.net_helpers import modbus_read  # noqa: E402

# (code.py's text, what replaces it): the probe's lines around the loop
PROBE = [
    ("    while True:\n",
     "    def _wrap(s, acc):\n"
     "        p = s.poll\n"
     "        k = getattr(s, 'name', type(s).__name__)\n"
     "        acc[k] = 0\n"
     "        def w(now):\n"
     "            t = time.monotonic_ns()\n"
     "            p(now)\n"
     "            acc[k] += time.monotonic_ns() - t\n"
     "        s.poll = w\n"
     "    _acc = {}\n"
     "    for _s in app.services:\n"
     "        _wrap(_s, _acc)\n"
     "    _n, _g, _st, _after, _busy = 0, 0, 0, low, 0\n"
     "    while True:\n"),
    ("        busy = app.step(now)\n",
     "        _t0 = time.monotonic_ns()\n"
     "        busy = app.step(now)\n"
     "        _st += time.monotonic_ns() - _t0\n"),
    ("        gc.collect()\n        if stable_at is not None",
     "        _g += _after - free\n"
     "        _n += 1\n"
     "        _busy += 1 if busy else 0\n"
     "        if _n == 100:\n"
     "            print('PROBE steps', _n, 'busy', _busy, 'step_us', _st // _n // 1000,"
     " 'garbage_B', _g // _n, ' '.join('%s_us=%d' % (k, v // _n // 1000)"
     " for k, v in _acc.items()))\n"
     "            _n, _g, _st, _busy = 0, 0, 0, 0\n"
     "            for k in _acc:\n"
     "                _acc[k] = 0\n"
     "        gc.collect()\n"
     "        _after = gc.mem_free()\n"
     "        if stable_at is not None"),
]


def probed_code():
    with open(os.path.join(ROOT, "code.py")) as f:
        code = f.read()
    for old, new in PROBE:
        if code.count(old) != 1:
            raise RuntimeError("code.py's loop changed: update PROBE (%r)" % old)
        code = code.replace(old, new)
    return code


def main():
    dev = temp_board("wiznet_w5500_evb_pico", code=probed_code())
    try:
        dev.wait_for("HAN2X address", 900)
        at = 0
        for _ in range(3):  # the first block holds the start
            at = dev.wait_for("PROBE", 900, at)
        port = dev.port(502)
        clients = []
        for k in range(4):
            s = socket.create_connection(("127.0.0.1", port), timeout=120)
            modbus_read(port, 42, 1, tid=k + 1, sock=s)
            clients.append(s)
        mark = len(dev.console)
        at = mark
        for _ in range(4):  # the first block holds the connections
            at = dev.wait_for("PROBE", 900, at)
        for s in clients:
            modbus_read(port, 42, 1, sock=s)  # still served
            s.close()
        for name, text in (("no client", dev.console[:mark]),
                           ("4 idle Modbus clients", dev.console[mark:])):
            print(name)
            for line in text.splitlines():
                if line.startswith("PROBE"):
                    print("  " + line)
    finally:
        dev.close()


if __name__ == "__main__":
    main()
