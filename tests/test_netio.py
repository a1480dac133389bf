"""netio.py, the one socket helper of the Modbus and web servers: one errno classification
that both servers act on alike, a send bounded in time on real sockets, and an accept that
fails (the real adafruit_wiznet5k driver on the W5500 model, a real closed socket on
CPython) survived and counted by both servers."""

import errno
import http.client
import socket
import struct
import time

import pytest

from han2x_core.netio import peer_gone, send, would_block
from support.util import free_port

WOULD_BLOCK = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ETIMEDOUT, errno.EINPROGRESS)
GONE = (errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN)
OTHER = (errno.EBADF, errno.EINVAL, errno.ECONNREFUSED, errno.EADDRINUSE)


def test_one_classification_of_errors():
    for code in WOULD_BLOCK:
        assert would_block(OSError(code, "x")) and not peer_gone(OSError(code, "x")), code
    for code in GONE:
        assert peer_gone(OSError(code, "x")) and not would_block(OSError(code, "x")), code
    for code in OTHER:
        assert not would_block(OSError(code, "x")) and not peer_gone(OSError(code, "x")), code
    # adafruit_wiznet5k on CPython: OSError(errno.EAGAIN) has .errno None, args[0] the code
    assert OSError(errno.EAGAIN).errno is None and would_block(OSError(errno.EAGAIN))
    for e in (OSError(), OSError("send: broker not taking data")):  # no code: neither
        assert not would_block(e) and not peer_gone(e)


def _pair():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    client = socket.create_connection(ls.getsockname(), timeout=5)
    server, _ = ls.accept()
    ls.close()
    server.settimeout(0)
    return client, server


def _reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_real_socket_errors_are_classified():
    client, server = _pair()
    try:
        with pytest.raises(OSError) as got:
            server.recv_into(bytearray(16))  # nothing sent yet
        assert would_block(got.value) and not peer_gone(got.value)
        _reset(client)
        time.sleep(0.05)
        with pytest.raises(OSError) as got:
            server.recv_into(bytearray(16))
        assert peer_gone(got.value) and not would_block(got.value), got.value
    finally:
        server.close()


def test_send_takes_what_fits_then_0_and_minus_1_once_the_peer_has_gone():
    client, server = _pair()
    try:
        data = bytes(65536)
        total = 0
        for _ in range(1000):  # the client reads nothing: the kernel's buffers fill up
            n = send(server, data, None)
            if n == 0:
                break
            total += n
        assert n == 0 and total > 0  # full: 0, not an exception
        # A timeout bounds the wait (CPython raises its TimeoutError for the caller, as
        # the W5500 driver raises RuntimeError) and the socket is non-blocking after it.
        t = time.monotonic()
        with pytest.raises(OSError):
            send(server, data, 0.2)
        assert 0.15 < time.monotonic() - t < 5.0
        assert server.gettimeout() == 0.0
        _reset(client)
        time.sleep(0.05)
        assert send(server, b"more", None) == -1
        assert send(server, b"more", 0.1) == -1
    finally:
        server.close()


# ---- both servers act on the classification alike ------------------------------------------

class RecvFails:
    """The server's end of a real connection whose next receive raises OSError(code), as
    the pool would; after that it is the real socket again."""

    def __init__(self, sock, code):
        self._sock = sock
        self._code = code

    def recv_into(self, *args):
        code, self._code = self._code, None
        if code is not None:
            raise OSError(code, "injected")
        return self._sock.recv_into(*args)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class Servers:
    """A Modbus and a web server on 127.0.0.1 with one real client each, polled on a
    synthetic clock."""

    def __init__(self):
        from han2x_core.app import App
        from han2x_core.modbus_server import ModbusServer
        from han2x_core.registers import Registers
        from han2x_core.settings import DEFAULTS
        from han2x_core.web import WebServer
        from support.webdevice import FeedHan

        self.ms = 0
        self.modbus = ModbusServer(socket, Registers(), port=free_port())
        self.modbus.start("127.0.0.1")
        app = App(FeedHan(), Registers(), 0, settings=dict(DEFAULTS))
        self.web = WebServer(socket, app, port=free_port())
        self.web.start("127.0.0.1")
        self.clients = []

    def poll(self, n=1):
        for _ in range(n):
            self.ms += 1
            self.modbus.poll(self.ms)
            self.web.poll(self.ms)

    def connect(self):
        for port in (self.modbus.bound_port, self.web.port):
            self.clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        for _ in range(200):
            self.poll(5)
            if self.modbus_slot() is not None and self.web_conn() is not None:
                return
            time.sleep(0.005)
        raise AssertionError("not accepted")

    def modbus_slot(self):
        return next((c for c in self.modbus._clients if c.sock is not None), None)

    def web_conn(self):
        return next((c for c in self.web._conns if c is not None), None)

    def counts(self):
        m, w = self.modbus, self.web
        return (m.client_count, m.closed_by_peer, m.errors), (
            sum(c is not None for c in w._conns), w.resets, w.errors)

    def close(self):
        for c in self.clients:
            c.close()
        self.modbus.stop()
        self.web.stop()


def _verdict(before, after):
    """What a server did with the error: kept the client, closed it as gone (not an error),
    or closed it and counted an error."""
    (open0, gone0, err0), (open1, gone1, err1) = before, after
    if open1 == open0 and gone1 == gone0 and err1 == err0:
        return "kept"
    if open1 == open0 - 1 and gone1 == gone0 + 1 and err1 == err0:
        return "gone"
    if open1 == open0 - 1 and gone1 == gone0 and err1 == err0 + 1:
        return "error"
    return "odd %r -> %r" % (before, after)


@pytest.mark.parametrize("code", WOULD_BLOCK + GONE + OTHER[:2])
def test_both_servers_act_alike_on_each_error(code):
    expected = "kept" if code in WOULD_BLOCK else "gone" if code in GONE else "error"
    s = Servers()
    try:
        s.connect()
        slot, conn = s.modbus_slot(), s.web_conn()
        slot.sock = RecvFails(slot.sock, code)
        conn.sock = RecvFails(conn.sock, code)
        before = s.counts()
        s.poll()
        after = s.counts()
        assert (_verdict(before[0], after[0]), _verdict(before[1], after[1])) == (
            expected, expected)
        if expected != "kept":
            return
        # kept: each still answers a real request on that connection
        modbus_client, web_client = s.clients
        modbus_client.sendall(struct.pack(">HHHBBHH", 7, 0, 6, 1, 3, 0, 1))
        web_client.sendall(b"GET /static/style.css HTTP/1.0\r\n\r\n")
        for c in s.clients:
            c.settimeout(0.01)
        got = [b"", b""]
        for _ in range(300):
            s.poll()
            for i, c in enumerate(s.clients):
                try:
                    got[i] += c.recv(65536)
                except socket.timeout:
                    pass
            if len(got[0]) >= 11 and b"\r\n\r\n" in got[1]:
                break
        assert got[0][:2] == b"\x00\x07" and got[0][7] == 3, got[0]  # transaction 7, FC 03
        assert got[1].startswith(b"HTTP/1.1 200 "), got[1][:40]
    finally:
        s.close()


def test_an_accept_that_fails_with_an_os_error_is_counted_by_both_servers():
    """A listener whose accept() raises a real OSError (EBADF: its descriptor closed under
    it) costs each server a counted error per look, never an exception out of poll()."""
    s = Servers()
    try:
        for server in (s.modbus, s.web):
            server._lis.socks[0].close()
        s.poll(20)  # 20 ms: the Modbus server looks every 5 ms, the web server every 10
        for server in (s.modbus, s.web):
            assert server.errors >= 2 and server.last_error.startswith("accept: "), (
                server.name, server.errors, server.last_error)
    finally:
        s.close()


def test_a_client_that_resets_before_it_is_taken_costs_neither_server_a_listener():
    """On the W5500 (the real adafruit_wiznet5k driver on the W5500 model) a client that
    resets before it is taken leaves the listening socket CLOSED; the driver's accept() would
    then raise RuntimeError("The socket has been closed.") on every call. Neither server
    calls it there (netio.Listeners.take): both close that listener like any client that hung
    up, listen again, count no error, and serve the next client."""
    from han2x_core import FIRMWARE_VERSION
    from support.net_helpers import Device, modbus_read

    def rst_now(port):
        _reset(socket.create_connection(("127.0.0.1", port), timeout=2))

    def page(port):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            c.request("GET", "/static/style.css")
            r = c.getresponse()
            r.read()  # the whole answer: a client that hangs up mid-answer is a web error
            return r.status
        finally:
            c.close()

    def retry(fn, seconds=10.0):
        deadline = time.monotonic() + seconds
        while True:
            try:
                return fn()
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    with Device() as dev:
        mb, web = dev.port(502), dev.port(80)
        assert retry(lambda: modbus_read(mb, 42, 1, timeout=1.0)) == [FIRMWARE_VERSION]
        assert retry(lambda: page(web)) == 200
        errors = (dev.modbus.errors, dev.web.errors)
        for port in (mb, web):
            for _ in range(2):  # both listeners of each (netio.Listeners)
                dev.call(lambda: rst_now(port))  # in the device loop: no accept() between
                time.sleep(0.1)
        assert retry(lambda: modbus_read(mb, 42, 1, timeout=1.0)) == [FIRMWARE_VERSION]
        assert retry(lambda: page(web)) == 200
        assert (dev.modbus.errors, dev.web.errors) == errors, (
            dev.modbus.last_error, dev.web.last_error)
        assert dev.net.reclaimed == 0


def test_on_the_w5500_a_quiet_server_looks_every_100_ms_and_often_after_a_connection():
    """On the W5500 a look for new connections reads each listener's Sn_SR over SPI
    (milliseconds of the board's CPU). The Modbus server on the real driver and the W5500
    model, polled every ms of a synthetic clock: while nobody connects it looks (and touches
    the SPI bus at all) every 100 ms only; a client that connects is still taken at the next
    look and answered, and for 2 s after that the server looks every 5 ms (a browser's or a
    crowd's next connections), then every 100 ms again."""
    from han2x_core import FIRMWARE_VERSION
    from han2x_core.modbus_server import ModbusServer
    from han2x_core.registers import Registers
    from support.modbus_frames import mbap_read
    from support.net_helpers import make_network

    model, net = make_network()
    try:
        modbus = ModbusServer(net.pool, Registers(firmware_version=FIRMWARE_VERSION),
                              send_timeout_s=0.1)
        net.attach(modbus)
        lis = modbus._lis
        ms = [0]

        def run(n):
            """n polls 1 ms apart: (looks, polls that touched the SPI bus)."""
            tries, spi = lis.tries, 0
            for _ in range(n):
                ms[0] += 1
                frames = model.frames
                modbus.poll(ms[0])
                spi += model.frames != frames
            return lis.tries - tries, spi

        assert run(1000) == (10, 10)  # quiet from the start: 10 looks a second, no more SPI
        assert len(lis.socks) == 2  # both listeners (the spare one came at the first look)
        client = socket.create_connection(("127.0.0.1", model.host_port(502)), timeout=5)
        client.sendall(mbap_read(7, 42, 1, 1))
        client.settimeout(0)
        got, waited = b"", 0
        while len(got) < 11 and waited < 300:
            run(1)
            waited += 1
            try:
                got += client.recv(64)
            except BlockingIOError:
                time.sleep(0.001)  # the model's host sockets move in real time
        assert got[:2] == b"\x00\x07" and struct.unpack(">H", got[9:11])[0] == FIRMWARE_VERSION
        assert waited <= 110, waited  # taken at the next look (at most 100 ms away)
        assert modbus.client_count == 1 and modbus.errors == 0
        looks, _spi = run(1000)  # after a connection came: every 5 ms
        assert 180 <= looks <= 201, looks
        run(1100)  # 2 s since it came: quiet again
        looks, _spi = run(1000)
        assert looks == 10, looks
        client.close()
    finally:
        model.close()


def test_on_the_w5500_an_idle_modbus_client_costs_one_register_read_per_poll():
    """modbus_slot.py on the real driver and the W5500 model: a connected client that sends
    nothing costs one Sn_IR read per poll (the driver's recv_into() reads three registers
    and raises an OSError object), and a request that comes later, a request split over
    two segments, and a client that closes are each still seen at the next poll."""
    from han2x_core import FIRMWARE_VERSION
    from han2x_core.modbus_server import ModbusServer
    from han2x_core.registers import Registers
    from support.modbus_frames import mbap_read
    from support.net_helpers import make_network

    model, net = make_network()
    clients = []
    try:
        modbus = ModbusServer(net.pool, Registers(firmware_version=FIRMWARE_VERSION),
                              send_timeout_s=0.1)
        net.attach(modbus)
        ms = [0]

        def poll(n=1):
            for _ in range(n):
                ms[0] += 1
                modbus.poll(ms[0])
                time.sleep(0.0005)  # the model's host sockets move in real time

        def read(c, tid):
            c.sendall(mbap_read(tid, 42, 1, 1))
            return answer(c)

        def answer(c):
            got = b""
            for _ in range(400):
                poll()
                try:
                    got += c.recv(64)
                except BlockingIOError:
                    pass
                if len(got) >= 11:
                    break
            return got[:2], struct.unpack(">H", got[9:11])[0] if len(got) >= 11 else got

        for k in range(4):
            c = socket.create_connection(("127.0.0.1", model.host_port(502)), timeout=5)
            c.setblocking(False)
            clients.append(c)
            assert read(c, k + 1) == (struct.pack(">H", k + 1), FIRMWARE_VERSION)
        assert modbus.client_count == 4
        poll(20)
        reads = []
        for _ in range(50):  # polls that do not look for connections: the clients only
            tries, frames = modbus._lis.tries, model.frames
            poll()
            if modbus._lis.tries == tries:
                reads.append(model.frames - frames)
        assert reads and set(reads) == {4}, reads  # one SPI frame (Sn_IR) per idle client
        assert read(clients[2], 9) == (struct.pack(">H", 9), FIRMWARE_VERSION)
        request = mbap_read(10, 42, 1, 1)
        clients[1].sendall(request[:5])  # half a request: kept, the rest comes later
        poll(30)
        clients[1].sendall(request[5:])
        assert answer(clients[1]) == (struct.pack(">H", 10), FIRMWARE_VERSION)
        clients[3].close()
        poll(50)
        assert modbus.client_count == 3 and modbus.closed_by_peer == 1
        assert modbus.errors == 0, modbus.last_error
    finally:
        for c in clients:
            c.close()
        model.close()
