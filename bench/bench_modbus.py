#!/usr/bin/env python3
"""Modbus TCP serving speed: `make run`'s device (tools/simulate.py) vs a pymodbus 3.16 server.

The same closed-loop load against both, on 127.0.0.1, in one run: FC03 reads of the 50
original registers (40001-40050), over 1 and over 4 connections (one process per
connection, raw sockets, so the load generator is not the bottleneck). Prints requests/s,
p50 and p99 latency for both and the ratios (aim: >= 2x pymodbus's requests/s, <= 1/2 its
p99). Then, on MicroPython (192 KB heap): heap bytes allocated per read request, in the
protocol core and through the whole server shell with real sockets (aim: 0).
Speed is printed, never asserted.
"""

import multiprocessing
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)
import tools._host  # noqa: E402,F401  (root and tests/ after the stdlib: docs/architecture.md)
from support.util import free_port, wait_port  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
REQUEST = struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 0, 50)
ANSWER_LEN = 9 + 100
from support.mpy import MICROPYTHON  # noqa: E402


def _client(port, seconds, queue):
    """One connection, closed loop: send, wait for the whole answer, repeat."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(ANSWER_LEN)
    view = memoryview(buf)
    lat = []
    clock = time.perf_counter_ns
    end = clock() + int(seconds * 1e9)
    errors = 0
    while True:
        t0 = clock()
        if t0 > end:
            break
        s.sendall(REQUEST)
        got = 0
        while got < ANSWER_LEN:
            n = s.recv_into(view[got:], ANSWER_LEN - got)
            if not n:
                raise ConnectionError("server closed")
            got += n
        lat.append(clock() - t0)
        if buf[7] != 3 or buf[8] != 100:
            errors += 1
    s.close()
    queue.put((lat, errors))


def load(port, connections, seconds=SECONDS):
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_client, args=(port, seconds, queue))
             for _ in range(connections)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 30) for _ in procs]
    for p in procs:
        p.join()
    lat = sorted(x for r in results for x in r[0])
    errors = sum(r[1] for r in results)
    return {
        "rps": len(lat) / seconds,
        "p50_ms": lat[len(lat) // 2] / 1e6,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6,
        "errors": errors,
    }


def start_ours(port):
    settings = os.path.join(tempfile.mkdtemp(prefix="bench-modbus-"), "settings.toml")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "simulate.py"),
                             "--modbus-port", str(port), "--quiet", "--http-port", "0",
                             "--settings", settings],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_port(port, 20)
    return proc


_PYMODBUS_SERVER = r"""
import asyncio, logging, sys
logging.disable(logging.CRITICAL)
from pymodbus.server import StartAsyncTcpServer
from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusDeviceContext,
                                ModbusServerContext)
block = ModbusSequentialDataBlock(1, [i for i in range(77)])
ctx = ModbusServerContext(devices=ModbusDeviceContext(hr=block, ir=block), single=True)
asyncio.run(StartAsyncTcpServer(context=ctx, address=("127.0.0.1", int(sys.argv[1]))))
"""


def start_pymodbus(port):
    proc = subprocess.Popen([sys.executable, "-c", _PYMODBUS_SERVER, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_port(port, 20)
    return proc


def run_pair():
    results = {}
    for name, start in (("han2x", start_ours), ("pymodbus", start_pymodbus)):
        port = free_port()
        proc = start(port)
        try:
            time.sleep(0.3)
            for conns in (1, 4):
                results[(name, conns)] = load(port, conns)
        finally:
            proc.terminate()
            proc.wait(10)
    print("FC03 x 50 registers, closed loop, %.0f s per run, 127.0.0.1, %d CPUs" % (
        SECONDS, os.cpu_count() or 0))
    print("%-10s %5s %12s %9s %9s %7s" % ("server", "conns", "requests/s", "p50 ms", "p99 ms",
                                          "errors"))
    for (name, conns), r in results.items():
        print("%-10s %5d %12.0f %9.3f %9.3f %7d" % (name, conns, r["rps"], r["p50_ms"],
                                                    r["p99_ms"], r["errors"]))
    for conns in (1, 4):
        ours, peer = results[("han2x", conns)], results[("pymodbus", conns)]
        print("%d conn%s: han2x/pymodbus requests/s = %.2fx (aim >= 2), p99 = %.2fx (aim <= 0.5)"
              % (conns, "" if conns == 1 else "s", ours["rps"] / peer["rps"],
                 ours["p99_ms"] / peer["p99_ms"]))


def run_micropython():
    if not os.path.exists(MICROPYTHON):
        print("MicroPython: no binary at %s, skipped" % MICROPYTHON)
        return
    port = free_port()
    script = os.path.join(ROOT, "bench", "mpy_modbus.py")
    proc = subprocess.Popen([MICROPYTHON, "-X", "heapsize=192k", script, str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        wait_port(port, 20)
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for i in range(2000):
                s.sendall(REQUEST)
                got = 0
                while got < ANSWER_LEN:
                    chunk = s.recv(ANSWER_LEN - got)
                    if not chunk:
                        raise ConnectionError("MicroPython server closed")
                    got += len(chunk)
        except OSError as e:  # the server died: say why (its own output)
            proc.kill()
            raise RuntimeError("request %d: %r\n%s" % (i, e, proc.communicate()[0]))
        s.close()
        out = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    print(out.strip())


def main():
    run_pair()
    run_micropython()
    return 0


if __name__ == "__main__":
    sys.exit(main())
