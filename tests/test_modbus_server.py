"""The Modbus server shell on real sockets (127.0.0.1): many clients, slow, vanished and
evicted clients, connect/disconnect cycles, re-binding; plus fake sockets for the W5500's
error shapes (OSError with errno None, RuntimeError from accept, sends that do not move).
"""

import errno
import socket
import struct
import threading
import time

import pytest
from pymodbus import FramerType
from pymodbus.client import ModbusTcpClient

from han2x_core.modbus_server import ModbusServer
from han2x_core.registers import Registers
from support.modbus_frames import mbap_read
from support.util import free_port, recv_exact

MASK = (1 << 29) - 1


def now_ms():
    return time.monotonic_ns() // 1_000_000 & MASK


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


class Running:
    """A ModbusServer polled by a background thread, like the app loop does."""

    def __init__(self, **kw):
        self.regs = Registers(firmware_version=10)
        self.regs.update({"voltage_l1_dv": 2390, "active_power_import_w": 1234,
                          "current_l1_ma": 5000}, now_ms())
        self.port = free_port()
        self.server = ModbusServer(socket, self.regs, port=self.port, **kw)
        self.server.start("127.0.0.1")
        self.calls = []  # functions run in the loop thread (registers are not thread-safe)
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self._stop:
            while self.calls:
                self.calls.pop(0)()
            self.server.poll(now_ms())
            time.sleep(0.0005)

    def run_in_loop(self, fn):
        done = threading.Event()
        self.calls.append(lambda: (fn(), done.set()))
        assert done.wait(5)

    def stop(self):
        self._stop = True
        self.thread.join(5)
        self.server.stop()


@pytest.fixture
def running():
    started = []

    def start(**kw):
        r = Running(**kw)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def is_closed_by_server(sock, timeout=5.0):
    sock.settimeout(timeout)
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


# ---- real clients ------------------------------------------------------------------------------

def test_pymodbus_tcp_and_rtu_framers(running):
    r = running()
    for framer in (FramerType.SOCKET, FramerType.RTU):
        client = ModbusTcpClient("127.0.0.1", port=r.port, framer=framer, timeout=3)
        assert client.connect()
        rr = client.read_holding_registers(0, count=50, device_id=1)
        assert not rr.isError()
        assert rr.registers[14:16] == [0, 2390] and rr.registers[0:2] == [0, 1234]
        ri = client.read_input_registers(14, count=2, device_id=0)
        assert ri.registers == [0, 2390]
        wr = client.write_registers(48, [0, 2000], device_id=255)
        assert not wr.isError()
        assert client.read_holding_registers(44, count=6, device_id=1).registers == \
            [0, 2000, 0, 0, 0, 2000]
        assert client.write_register(49, 1000, device_id=1).isError() is False
        bad = client.write_register(49, 5, device_id=1)
        assert bad.isError() and bad.exception_code == 3
        bad = client.read_holding_registers(100, count=10, device_id=1)  # past the map (102)
        assert bad.isError() and bad.exception_code == 2
        client.close()
    assert r.server.requests >= 14


def test_many_clients_at_once(running):
    r = running(max_clients=5)
    socks = [connect(r.port) for _ in range(5)]
    assert wait_for(lambda: r.server.client_count == 5)
    for round_ in range(30):
        for i, s in enumerate(socks):
            s.sendall(mbap_read(round_ * 10 + i))
        for i, s in enumerate(socks):
            ans = recv_exact(s, 13)
            assert ans == struct.pack(">HHHBBB", round_ * 10 + i, 0, 7, 1, 3, 4) + \
                bytes.fromhex("00000956")
    for s in socks:
        s.close()
    assert wait_for(lambda: r.server.client_count == 0)


def test_pipelined_requests_in_one_segment(running):
    r = running()
    s = connect(r.port)
    s.sendall(b"".join(mbap_read(i) for i in range(40)))
    data = recv_exact(s, 13 * 40)
    for i in range(40):
        assert struct.unpack(">H", data[13 * i:13 * i + 2])[0] == i
    s.close()


def test_slow_client_does_not_delay_others(running):
    r = running(max_clients=3)
    slow = connect(r.port)
    stop = threading.Event()
    request = mbap_read(99)

    def dribble():
        for i in range(2 * len(request)):  # two requests, one byte at a time
            slow.send(request[i % len(request):i % len(request) + 1])  # never reads answers
            time.sleep(0.02)
        stop.set()

    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    client = ModbusTcpClient("127.0.0.1", port=r.port, timeout=2, retries=0)
    assert client.connect()
    reads = 0
    while not stop.is_set() or reads < 200:
        assert client.read_holding_registers(14, count=2, device_id=1).registers == [0, 2390]
        reads += 1
    client.close()
    t.join()
    # The slow client was answered too, whenever its frames completed.
    slow.settimeout(2)
    assert slow.recv(13)[:2] == b"\x00\x63"
    slow.close()


def test_client_that_never_reads_does_not_block_the_loop(running):
    r = running(max_clients=3)
    hog = connect(r.port)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.settimeout(0.2)
    blob = b"".join(mbap_read(i, 0, 77) for i in range(300))
    sent = 0
    try:
        for _ in range(100):  # push requests until the kernel buffers are full
            sent += hog.send(blob)
    except (socket.timeout, BlockingIOError):
        pass
    client = ModbusTcpClient("127.0.0.1", port=r.port, timeout=2, retries=0)
    assert client.connect()
    for _ in range(100):
        assert client.read_holding_registers(14, count=2, device_id=1).registers == [0, 2390]
    client.close()
    hog.close()
    assert sent > 0


def test_vanished_clients_are_reclaimed_by_idle_timeout(running):
    r = running(max_clients=4, idle_timeout_ms=300)
    ghosts = [connect(r.port) for _ in range(4)]
    ghosts[0].sendall(mbap_read(1)[:5])  # half a frame, then silence
    assert wait_for(lambda: r.server.client_count == 4, 5)
    assert wait_for(lambda: r.server.client_count == 0, 10)
    assert r.server.timed_out == 4
    for g in ghosts:
        assert is_closed_by_server(g)
        g.close()
    s = connect(r.port)
    s.sendall(mbap_read(5))
    assert recv_exact(s, 13)[-4:] == bytes.fromhex("00000956")
    s.close()


def test_full_server_evicts_the_longest_idle_client(running):
    r = running(max_clients=2)
    a = connect(r.port)
    a.sendall(mbap_read(1))
    recv_exact(a, 13)
    time.sleep(0.05)
    b = connect(r.port)
    b.sendall(mbap_read(2))
    recv_exact(b, 13)
    assert wait_for(lambda: r.server.client_count == 2)
    c = connect(r.port)
    c.sendall(mbap_read(3))
    assert recv_exact(c, 13)[:2] == b"\x00\x03"
    assert is_closed_by_server(a)  # a was idle longest
    b.sendall(mbap_read(4))
    assert recv_exact(b, 13)[:2] == b"\x00\x04"
    assert r.server.evicted == 1 and r.server.client_count == 2
    for s in (a, b, c):
        s.close()


@pytest.mark.slow
@pytest.mark.parametrize("every_s,polls", [(1, 6), (10, 3)])
@pytest.mark.parametrize("rate", [1, 4, 20])
def test_opening_connections_does_not_knock_a_polling_client_off(running, rate, every_s, polls):
    """An attacker opens idle connections at `rate` per second and never sends a byte (nor
    closes them for 10 s) while a real client polls every `every_s` seconds on one
    connection. Every poll is answered: the server evicts the attacker's newest connection,
    never the client that has sent requests. Bounded: `polls` polls, (polls-1)*every_s s."""
    r = running(max_clients=4)
    client = connect(r.port)
    client.sendall(mbap_read(0))
    assert recv_exact(client, 13)[:2] == b"\x00\x00"
    stop = threading.Event()
    opened = []
    made = [0, 0]  # opened, closed by the attacker after 10 s

    def attack():
        while not stop.is_set():
            try:
                opened.append((time.monotonic(), socket.create_connection(
                    ("127.0.0.1", r.port), timeout=1)))
                made[0] += 1
            except OSError:
                pass
            while opened and opened[0][0] < time.monotonic() - 10:
                opened.pop(0)[1].close()
                made[1] += 1
            stop.wait(1 / rate)

    attacker = threading.Thread(target=attack, daemon=True)
    attacker.start()
    failed = []
    try:
        for i in range(1, polls):
            time.sleep(every_s)
            try:
                client.sendall(mbap_read(i))
                if recv_exact(client, 13, timeout=2)[:2] != struct.pack(">H", i):
                    failed.append(i)
            except OSError:
                failed.append(i)
                client.close()
                client = connect(r.port)
    finally:
        stop.set()
        attacker.join(5)
        client.close()
        for _, s in opened:
            s.close()
    assert failed == []
    # the churn happened: every connection the attacker made beyond the free slots was
    # evicted, or freed a slot by closing after 10 s itself, but for the last second's,
    # which may still wait in the listen backlog
    assert made[0] >= rate * every_s * (polls - 1) // 2
    assert r.server.evicted >= made[0] - made[1] - 4 - rate


def test_hundreds_of_connect_disconnect_cycles(running):
    r = running(max_clients=4, idle_timeout_ms=2000)
    for i in range(300):
        s = connect(r.port)
        kind = i % 3
        if kind == 0:
            s.sendall(mbap_read(i & 0xFFFF))
            recv_exact(s, 13)
        elif kind == 1:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        s.close()
    assert wait_for(lambda: r.server.client_count == 0, 10)
    assert r.server.accepted == 300
    # Exactly as able to accept as at start: max_clients concurrent clients all served.
    socks = [connect(r.port) for _ in range(4)]
    for i, s in enumerate(socks):
        s.sendall(mbap_read(i))
    for i, s in enumerate(socks):
        assert recv_exact(s, 13)[:2] == struct.pack(">H", i)
    assert r.server.evicted == 0
    for s in socks:
        s.close()


def test_malformed_stream_is_closed_and_counted(running):
    r = running()
    s = connect(r.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert is_closed_by_server(s)
    s.close()
    assert wait_for(lambda: r.server.malformed == 1)
    assert wait_for(lambda: r.server.client_count == 0)


def test_port_change_rebinds_within_a_poll(running):
    r = running()
    new_port = free_port()
    r.run_in_loop(lambda: r.server.configure({"modbus_port": new_port}))
    assert wait_for(lambda: r.server.bound_port == new_port)
    s = connect(new_port)
    s.sendall(mbap_read(1))
    assert recv_exact(s, 13)[-2:] == b"\x09\x56"
    s.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", r.port), timeout=1).close()


def test_port_in_use_is_retried(running):
    r = running()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    busy = blocker.getsockname()[1]
    r.run_in_loop(lambda: r.server.configure({"modbus_port": busy}))
    assert wait_for(lambda: r.server.errors >= 1)
    blocker.close()
    assert wait_for(lambda: r.server.bound_port == busy, 10)
    s = connect(busy)
    s.sendall(mbap_read(1))
    assert recv_exact(s, 13)[:2] == b"\x00\x01"
    s.close()


def test_configure_max_clients_and_unit_id(running):
    r = running(max_clients=3)
    socks = [connect(r.port) for _ in range(3)]
    assert wait_for(lambda: r.server.client_count == 3)
    r.run_in_loop(lambda: r.server.configure({"modbus_max_clients": 1, "modbus_unit_id": 7,
                                              "modbus_idle_timeout_s": 30}))
    assert wait_for(lambda: r.server.client_count == 1)
    assert r.server.idle_timeout_ms == 30000
    for s in socks:
        s.close()
    assert wait_for(lambda: r.server.client_count == 0)
    client = ModbusTcpClient("127.0.0.1", port=r.port, timeout=1, retries=0)
    assert client.connect()
    assert client.read_holding_registers(14, count=2, device_id=7).registers == [0, 2390]
    with pytest.raises(Exception):
        rr = client.read_holding_registers(14, count=2, device_id=8)  # no answer
        assert rr.isError()
    client.close()


def test_stop_closes_everything():
    regs = Registers()
    port = free_port()
    server = ModbusServer(socket, regs, port=port)
    server.start("127.0.0.1")
    s = connect(port)
    for _ in range(50):
        server.poll(now_ms())
        if server.client_count:
            break
        time.sleep(0.01)
    assert server.client_count == 1
    server.stop()
    assert is_closed_by_server(s)
    s.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    server.poll(now_ms())  # polling a stopped server does nothing


def test_bind_port_zero_reports_the_port():
    server = ModbusServer(socket, Registers(), port=0)
    server.start("127.0.0.1")
    assert server.bound_port and server.bound_port > 0
    server.stop()


# ---- fake sockets: the W5500 driver's error shapes --------------------------------------------

class FakeSock:
    """A client socket that raises like adafruit_wiznet5k on CPython (errno None)."""

    def __init__(self, incoming=b"", send_limit=None):
        self.incoming = bytearray(incoming)
        self.sent = bytearray()
        self.send_limit = send_limit  # bytes accepted per send call; 0 = EAGAIN
        self.closed = False
        self.timeout = None

    def settimeout(self, t):
        self.timeout = t

    def recv_into(self, buf, nbytes=0):
        if not self.incoming:
            raise OSError(errno.EAGAIN)  # .errno is None on CPython: only args[0] says it
        n = min(nbytes or len(buf), len(self.incoming))
        buf[:n] = self.incoming[:n]
        del self.incoming[:n]
        return n

    def send(self, data):
        if self.send_limit == 0:
            raise OSError(errno.EAGAIN)
        n = len(data) if self.send_limit is None else min(self.send_limit, len(data))
        self.sent += bytes(data[:n])
        return n

    def close(self):
        self.closed = True


class FakeListener:
    def __init__(self):
        self.queue = []
        self.full = False

    def settimeout(self, t):
        pass

    def setsockopt(self, *a):
        pass

    def bind(self, addr):
        pass

    def listen(self, n):
        pass

    def accept(self):
        if self.full:
            raise RuntimeError("All sockets in use.")
        if not self.queue:
            raise OSError(errno.EAGAIN)
        return self.queue.pop(0), ("10.0.0.2", 1234)

    def close(self):
        pass


class FakePool:
    AF_INET = 2
    SOCK_STREAM = 1
    SOL_SOCKET = 1
    SO_REUSEADDR = 2

    def __init__(self):
        self.listener = FakeListener()

    def socket(self, family, kind):
        return self.listener

    def getaddrinfo(self, host, port):
        return [(2, 1, 0, "", (host, port))]


def fake_server(**kw):
    pool = FakePool()
    server = ModbusServer(pool, Registers(), port=502, **kw)
    server.start("10.0.0.1")
    return pool, server


def test_errno_none_eagain_is_not_an_error():
    e = OSError(errno.EAGAIN)
    assert e.errno is None and e.args[0] == errno.EAGAIN
    pool, server = fake_server()
    sock = FakeSock()
    pool.listener.queue.append(sock)
    for t in range(0, 100, 10):
        server.poll(t)
    assert server.client_count == 1 and server.errors == 0 and not sock.closed
    sock.incoming += mbap_read(7)
    server.poll(110)
    assert bytes(sock.sent)[-4:] == bytes.fromhex("00000000")


def test_partial_sends_are_buffered_then_completed():
    pool, server = fake_server()
    sock = FakeSock(send_limit=3)
    pool.listener.queue.append(sock)
    sock.incoming += mbap_read(1) + mbap_read(2)
    for t in range(0, 200, 10):
        server.poll(t)
    assert len(sock.sent) == 26 and sock.sent[13:15] == b"\x00\x02"


def test_stuck_sender_is_dropped_and_others_continue():
    pool, server = fake_server(max_clients=2)
    stuck = FakeSock(mbap_read(1), send_limit=0)
    good = FakeSock()
    pool.listener.queue += [stuck, good]
    t = 0
    for _ in range(3):
        server.poll(t)
        t += 10
    assert server.client_count == 2
    while t < 12000:
        good.incoming += mbap_read(t & 0xFFFF)
        server.poll(t)
        t += 500
    assert stuck.closed and server.stalled == 1
    assert not good.closed and len(good.sent) == 13 * 24


def test_recv_error_closes_only_that_client():
    pool, server = fake_server()

    class Broken(FakeSock):
        def recv_into(self, buf, nbytes=0):
            raise OSError(errno.EIO)

    class Reset(FakeSock):
        def recv_into(self, buf, nbytes=0):
            raise OSError(errno.ECONNRESET)  # a peer that left: not an error

    bad, reset, good = Broken(), Reset(), FakeSock(mbap_read(3))
    pool.listener.queue += [bad, reset, good]
    for t in range(0, 50, 10):
        server.poll(t)
    assert bad.closed and reset.closed and not good.closed
    assert server.errors == 1 and "client" in server.last_error
    assert server.closed_by_peer == 1
    assert good.sent[:2] == b"\x00\x03"
