"""Soak: >= 1,000 Modbus connect/read/disconnect cycles, abrupt disconnects, idle clients
and more clients than sockets, against the firmware on the W5500 model (real driver) and
on CPython sockets (tools/simulate.py). Afterwards the server must accept and answer as
at the start, with every hardware socket and reservation back."""

import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from han2x_core import FIRMWARE_VERSION
from support.net_helpers import Device, modbus_read
from support.util import ROOT, free_port, wait_port

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

CYCLES = 1000


def first_answer(port, seconds=10.0):
    """Registers 40043-40050 (firmware .. scaling: constant while the soak runs)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return modbus_read(port, 42, 8, timeout=1.0)
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def connect(port, seconds=3.0):
    """Connect like a real client: a refused or reset attempt is retried (the W5500 refuses
    SYNs while no socket listens, e.g. the moment a dead listener is replaced)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=2.0)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def rst_close(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def cycles(port, n, seconds):
    """n fresh-connection reads; returns (ok, failed). Bounded by count and time."""
    ok = failed = 0
    deadline = time.monotonic() + seconds
    for i in range(n):
        if time.monotonic() > deadline:
            break
        try:
            words = modbus_read(port, 42, 1, tid=i & 0xFFFF, timeout=2.0)
            ok += words == [FIRMWARE_VERSION]  # register 40043
        except (OSError, ValueError):
            failed += 1
    return ok, failed


def abrupt(port, n):
    """Connect and vanish: nothing sent, half a request, or a request without reading the
    answer; each closed with a TCP reset."""
    for i in range(n):
        try:
            s = connect(port)
        except OSError:
            continue
        try:
            if i % 3 == 1:
                s.sendall(b"\x00\x01\x00\x00\x00\x06\x01")  # 7 of 12 bytes
            elif i % 3 == 2:
                s.sendall(struct.pack(">HHHBBHH", i, 0, 6, 1, 3, 0, 50))
        except OSError:  # the server may drop it first (its socket budget is full): fine
            pass
        rst_close(s)


def idle_then_active(port, idle_n, active_n):
    """idle_n clients connect and say nothing; new clients must still be answered (the
    server frees the longest-idle slot) within a few seconds each."""
    idle = []
    for _ in range(idle_n):
        idle.append(connect(port))
        time.sleep(0.05)
    served = 0
    for i in range(active_n):
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                modbus_read(port, 0, 2, tid=i, timeout=2.0)
                served += 1
                break
            except (OSError, ValueError):
                time.sleep(0.05)
    for s in idle:
        s.close()
    return served


def crowd(port, clients, reads, seconds=20.0):
    """More clients than the W5500 has sockets, all at once, each doing several reads on
    one connection (reconnecting when dropped). Returns total successful reads."""
    total = [0]
    lock = threading.Lock()

    def worker(k):
        deadline = time.monotonic() + seconds
        done = 0
        sock = None
        while done < reads and time.monotonic() < deadline:
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
                modbus_read(port, 0, 4, tid=k, timeout=2.0, sock=sock)
                done += 1
            except (OSError, ValueError):
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.02)
        if sock is not None:
            sock.close()
        with lock:
            total[0] += done

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 5)
    return total[0]


def real_clients(port):
    """pymodbus and mbpoll, as integrators use them."""
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=1)
    assert client.connect()
    rr = client.read_holding_registers(42, count=1, device_id=1)
    client.close()
    assert not rr.isError() and rr.registers == [FIRMWARE_VERSION]
    out = subprocess.run(["mbpoll", "-m", "tcp", "-a", "1", "-r", "43", "-c", "1", "-t", "4",
                          "-1", "-q", "-p", str(port), "127.0.0.1"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[43]:" in out.stdout


def workload(port, report):
    start = time.monotonic()
    ok, failed = cycles(port, CYCLES, 75.0)  # ~5 s alone; bounded for busy CI machines
    report["cycles"] = (ok, failed, round(time.monotonic() - start, 1))
    assert ok == CYCLES and failed == 0
    abrupt(port, 90)
    report["idle_served"] = idle_then_active(port, 5, 10)
    assert report["idle_served"] == 10
    report["crowd_reads"] = crowd(port, 12, 20)
    assert report["crowd_reads"] >= 12 * 20 // 2
    real_clients(port)


def settle(dev, seconds=10.0):
    deadline = time.monotonic() + seconds
    while dev.call(lambda: dev.modbus.client_count) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_soak_on_the_w5500_model():
    report = {}
    with Device({"modbus_idle_timeout_s": 5}) as dev:
        port = dev.port(502)
        before_values = first_answer(port)
        settle(dev)
        before = dev.sockets_in_use()
        assert before[0] == 4  # two Modbus and two web listeners (docs/network.md)
        workload(port, report)
        settle(dev)  # everyone has gone: the server must be back where it started
        after = dev.sockets_in_use()
        assert after == before, (before, after, report)
        listening = sorted(sk.port for sk in dev.model.sockets if sk.status == 0x14)
        assert listening == sorted(list(dev.model._listeners) * 2), listening  # two a port
        # answered at the first try, within a 1 s client timeout (no stopwatch)
        assert modbus_read(port, 42, 8, timeout=1.0) == before_values
        assert dev.app.service_errors == 0, dev.app.last_error  # a client cannot cause one
        assert dev.max_step_s < 2.0, report


def test_soak_on_cpython_sockets():
    """The same workload against `make run` (tools/simulate.py) on CPython sockets."""
    port = free_port()
    cmd = [sys.executable, os.path.join(ROOT, "tools", "simulate.py"), "--host", "127.0.0.1",
           "--modbus-port", str(port), "--http-port", str(free_port()), "--quiet",
           "--max-seconds", "110"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(port, 15)
        before_values = first_answer(port)
        report = {}
        workload(port, report)
        assert proc.poll() is None
        assert first_answer(port) == before_values
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
