"""Our Modbus and web servers on the real adafruit_wiznet5k driver (W5500 model), wired
as code.py wires them: real clients (pymodbus, mbpoll, curl), live port and address
changes, and the driver's traps (a client that resets before accept(), a client that
stops reading its answers)."""

import contextlib
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

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def answer(port, seconds=10.0, start=42, count=1):
    """Poll until the device answers on port (or raise after `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return modbus_read(port, start, count, timeout=1.0)
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def curl(port, path="/"):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                          "5", "http://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, text=True, timeout=10)
    return out.stdout


def test_pymodbus_mbpoll_and_curl_reach_the_device():
    from pymodbus.client import ModbusTcpClient

    with Device() as dev:
        port = dev.port(502)
        assert answer(port) == [FIRMWARE_VERSION]
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=1)
        assert client.connect()
        rr = client.read_holding_registers(48, count=2, device_id=1)
        assert not rr.isError() and rr.registers == [0, 1000]  # scaling factor 40049-50
        client.close()
        out = subprocess.run(["mbpoll", "-m", "tcp", "-a", "1", "-r", "43", "-c", "1", "-t",
                              "4", "-1", "-q", "-p", str(port), "127.0.0.1"],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 0 and "[43]:" in out.stdout, out.stdout + out.stderr
        assert curl(dev.port(80)) == "200"
        assert curl(dev.port(80), "/missing") == "404"


def test_modbus_port_and_address_change_apply_within_10_s():
    with Device() as dev:
        assert answer(dev.port(502)) == [FIRMWARE_VERSION]
        start = time.monotonic()
        errors = dev.call(lambda: dev.app.save_settings(
            {"modbus_port": 1502, "ip": "192.168.1.77"}))
        assert errors == {}
        assert answer(dev.port(1502), 10.0) == [FIRMWARE_VERSION]
        deadline = time.monotonic() + 10.0
        while dev.net.ip != "192.168.1.77" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dev.net.ip == "192.168.1.77" and time.monotonic() - start < 10.0
        assert answer(dev.port(1502), 5.0) == [FIRMWARE_VERSION]  # after the re-listen
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", dev.port(502)), timeout=1).close()
        assert curl(dev.port(80)) == "200"


@contextlib.contextmanager
def syn_on_listen(model, port, racer, most=6):
    """While inside: the instant the W5500 model puts a socket of `port` (the device's port)
    into LISTEN, a client connects (racer(k) opens it and returns what the test keeps;
    syn_delay_s 0), up to `most` times: the race the driver's accept() loses. Yields the
    list of what racer returned."""
    made = []
    real_listen, delay = model._listen, model.syn_delay_s

    def listen_then_syn(s):
        real_listen(s)
        if s.port == port and len(made) < most:
            made.append(racer(len(made)))

    model.syn_delay_s = 0
    model._listen = listen_then_syn
    try:
        yield made
    finally:
        model._listen, model.syn_delay_s = real_listen, delay


def connect_now(port):
    """A non-blocking connect to 127.0.0.1:port (the kernel completes it at once)."""
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", port))
    return c


def in_threads(target, args, join_s):
    """target(a) for every a in args, each in its own thread, all at once; waits for them
    (join_s each)."""
    threads = [threading.Thread(target=target, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(join_s)


def rst_now(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_modbus_client_that_resets_before_accept_does_not_kill_the_listener():
    """On the W5500 a SYN then RST leaves the listening hardware socket CLOSED (the driver's
    accept() would then close its own Socket object and raise on every later call). The
    server takes connections itself (netio.Listeners.take): it closes that listener, listens
    again, counts no error, and serves the next client."""
    with Device() as dev:
        port = dev.port(502)
        assert answer(port) == [FIRMWARE_VERSION]
        for _ in range(3):
            dev.call(lambda: rst_now(port))  # in the device loop: no accept() in between
            time.sleep(0.1)
        assert answer(port, 5.0) == [FIRMWARE_VERSION]
        assert dev.modbus.errors == 0, dev.modbus.last_error
        assert dev.net.reclaimed == 0


def test_web_client_that_resets_before_accept_does_not_kill_the_listener():
    with Device() as dev:
        web = dev.port(80)
        assert curl(web) == "200"
        dev.call(lambda: rst_now(web))
        time.sleep(0.1)
        assert curl(web) == "200"


class DriverAcceptEcho:
    """An echo server that takes connections with the driver's accept(), as hanstream.py
    does (net_helpers.EchoService), and counts what accept() raised."""

    def __init__(self, pool, port):
        from support.net_helpers import EchoService

        self.echo = EchoService(pool, port)
        self.raised = []
        real_accept = None

        def poll(now_ms, echo=self.echo):
            nonlocal real_accept
            lis = echo.listener
            if lis is not None and getattr(lis.accept, "__name__", "") != "counted":
                real_accept = lis.accept

                def counted():
                    try:
                        return real_accept()
                    except RuntimeError as e:
                        self.raised.append(str(e))
                        raise
                lis.accept = counted
            EchoService.poll(echo, now_ms)

        self.echo.poll = poll


def test_sockets_lost_in_the_drivers_accept_race_are_reclaimed():
    """A SYN that arrives the instant a socket listens (syn_delay_s=0, and a client that
    connects as each LISTEN command completes) makes the driver's accept() raise "Failed to
    open new listening socket" after its socket swap, and lose the accepted Socket object
    with its hardware socket reserved and open. A server that still uses accept() (the HAN
    stream does; an echo server here) loses sockets that way: the network's janitor must
    give them back, so that the listeners come back and nothing is lost for good."""
    with Device(web=False) as dev:
        mb, port = dev.port(502), dev.port(1502)
        assert answer(mb) == [FIRMWARE_VERSION]
        server = DriverAcceptEcho(dev.net.pool, 1502)
        dev.call(lambda: (dev.net.attach(server.echo), dev.app.add(server.echo)))
        model = dev.model

        def echo_client(k):
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                        c.sendall(b"hello %d" % k)
                        c.recv(64)
                except OSError:
                    time.sleep(0.02)

        with syn_on_listen(model, 1502, lambda k: connect_now(port)) as racers:
            in_threads(echo_client, range(8), 10)
        for c in racers:
            c.close()
        assert any("Failed to open new listening socket" in e for e in server.raised), (
            server.raised)
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline and (
                dev.net.reclaimed == 0 or dev.sockets_in_use()[0] != 3):
            time.sleep(0.1)
        assert dev.net.reclaimed > 0
        assert dev.sockets_in_use()[0] == 3, dev.sockets_in_use()  # 2 Modbus + the echo's
        assert answer(mb, 5.0) == [FIRMWARE_VERSION]


def test_more_modbus_clients_at_once_than_sockets_none_lost():
    """More Modbus clients connecting at once than the W5500 has sockets, and racers whose
    SYN lands the instant a Modbus socket listens (on the slow board a SYN meets the new
    listener that way: "modbus: accept: Failed to open new listening socket" in the board
    runs, where the driver's accept() lost the client it had accepted and the racer). Every
    client is served or refused cleanly (a reset, or closed to make room), and retrying it
    is served: no accepted client left unanswered for the janitor, no error counted, never
    more than max_clients clients nor max_clients + 1 hardware sockets, and afterwards both
    listeners are back and two clients at once are both answered."""
    LISTEN = 0x14
    with Device() as dev:
        port = dev.port(502)
        assert answer(port) == [FIRMWARE_VERSION]
        modbus = dev.modbus
        peak = {"clients": 0, "sockets": 0}
        real_poll = modbus.poll

        def poll(now_ms):  # the server's own figures after every poll, in the device loop
            real_poll(now_ms)
            peak["clients"] = max(peak["clients"], modbus.client_count)
            peak["sockets"] = max(peak["sockets"], len(modbus.sockets()))

        dev.call(lambda: setattr(modbus, "poll", poll))
        model, lock = dev.model, threading.Lock()
        outcomes = {"served": 0, "refused": 0, "closed": 0, "timeout": 0}

        def note(what):
            with lock:
                outcomes[what] += 1

        def session(sock, k):
            """Three reads on one connection: True when all three were answered."""
            for i in range(3):
                try:
                    assert modbus_read(port, 42, 1, tid=k * 8 + i, sock=sock) == [
                        FIRMWARE_VERSION]
                except (socket.timeout, TimeoutError):
                    note("timeout")  # accepted and never answered: lost
                    return False
                except (ConnectionError, ValueError, OSError):
                    note("closed")  # reset, or closed to make room for a newer client
                    return False
                time.sleep(0.01)
            note("served")
            return True

        def client(k):
            for _ in range(60):
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=3)
                except OSError:
                    note("refused")
                    time.sleep(0.05)
                    continue
                with sock:
                    if session(sock, k):
                        return
                time.sleep(0.05)

        def race(sock, k):
            sock.setblocking(True)
            sock.settimeout(3)
            with sock:
                if session(sock, k):
                    return
            client(k)  # reset or evicted: it tries again as any client would

        def racer(k):
            t = threading.Thread(target=race, args=(connect_now(port), 21 + k))
            t.start()
            return t

        with syn_on_listen(model, 502, racer) as racers:
            in_threads(client, range(12), 120)
        for t in racers:
            t.join(120)
        assert len(racers) == 6
        assert outcomes["served"] == 12 + 6, outcomes  # every client in the end
        assert outcomes["timeout"] == 0, outcomes  # none accepted and left unanswered
        assert modbus.errors == 0, modbus.last_error
        assert dev.net.reclaimed == 0  # no hardware socket lost and freed by the janitor
        assert modbus.accepted >= 18 and modbus.evicted > 0, (modbus.accepted, modbus.evicted)
        assert peak["clients"] == modbus.max_clients == 4, peak
        assert peak["sockets"] <= modbus.max_clients + 1, peak
        for _ in range(3):  # two listen again: two clients at once both land and are served
            deadline = time.monotonic() + 10
            while dev.sockets_in_use()[1].count(LISTEN) != 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert dev.sockets_in_use() == (4, [0] * 4 + [LISTEN] * 4)  # 2 Modbus + 2 web
            pair = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
            for k, sock in enumerate(pair):
                with sock:
                    assert modbus_read(port, 42, 1, tid=k + 1, sock=sock) == [FIRMWARE_VERSION]
        assert modbus.errors == 0, modbus.last_error


def test_socket_budget_full_house_and_a_page_with_two_connections():
    """The budget of docs/network.md on the real driver: each server holds at most
    max_clients + 1 hardware sockets, two of them listening while its clients leave room.
    With Modbus full a fifth client evicts the longest-idle one, and a browser's two
    connections at once (one web slot, as code.py) are both answered: the second waits on
    the chip, established on the second web listener, instead of meeting a reset."""
    import http.client

    LISTEN, ESTABLISHED = 0x14, 0x17
    with Device() as dev:
        port = dev.port(502)
        assert answer(port) == [FIRMWARE_VERSION]
        deadline = time.monotonic() + 5
        while dev.sockets_in_use()[0] != 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        reserved, states = dev.sockets_in_use()
        assert reserved == 4 and states.count(LISTEN) == 4, states  # 2 Modbus + 2 web
        clients = []
        for tid in range(4):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            assert modbus_read(port, 42, 1, tid=tid + 1, sock=s) == [FIRMWARE_VERSION]
            clients.append(s)
            time.sleep(0.05)  # the first one is the longest idle
        reserved, states = dev.sockets_in_use()
        assert reserved == 7 and states.count(ESTABLISHED) == 4, states
        assert states.count(LISTEN) == 3, states  # Modbus keeps one, the web its two
        fifth = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert modbus_read(port, 42, 1, sock=fifth) == [FIRMWARE_VERSION]
        clients[0].settimeout(3)
        assert clients[0].recv(16) == b""  # the longest idle was closed for it
        for s in clients[1:]:
            assert modbus_read(port, 42, 1, sock=s) == [FIRMWARE_VERSION]
        assert dev.modbus.evicted == 1 and dev.modbus.client_count == 4
        results = []

        def get(path):
            c = http.client.HTTPConnection("127.0.0.1", dev.port(80), timeout=10)
            try:
                c.request("GET", path)
                r = c.getresponse()
                results.append((path, r.status, len(r.read())))
            except OSError as e:
                results.append((path, repr(e)))
            finally:
                c.close()

        for _ in range(3):
            # an answered connection gives its socket back to listening: two listen again
            deadline = time.monotonic() + 5
            while dev.sockets_in_use()[1].count(LISTEN) != 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert dev.sockets_in_use()[1].count(LISTEN) == 3
            del results[:]
            in_threads(get, ("/", "/api/status"), 15)
            assert sorted(str(r[1]) for r in results) == ["200", "200"], results
        assert dev.web.errors == 0, dev.web.last_error
        assert dev.modbus.errors == 0, dev.modbus.last_error
        for s in clients[1:] + [fifth]:
            assert modbus_read(port, 42, 1, sock=s) == [FIRMWARE_VERSION]
            s.close()
        # Four sockets, all listening: "four in use" alone is also one Modbus listener and one
        # client not yet closed, a moment before the listener count dips to three.
        deadline = time.monotonic() + 30  # the closes and re-listens on a loaded machine
        seen = dev.sockets_in_use()
        while (seen[0], seen[1].count(LISTEN)) != (4, 4) and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = dev.sockets_in_use()
        assert (seen[0], seen[1].count(LISTEN)) == (4, 4), (  # two listeners each again
            seen, [(len(srv._lis.socks), srv.last_error) for srv in (dev.modbus, dev.web)])
        assert dev.net.reclaimed == 0


def test_client_that_never_reads_cannot_stall_the_device():
    """send() with timeout 0/None waits for ever on the W5500 when the peer's window is
    full; the loop must go on and other clients must be served."""
    with Device() as dev:
        port = dev.port(502)
        assert answer(port) == [FIRMWARE_VERSION]
        hog = socket.socket()
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        hog.connect(("127.0.0.1", port))
        hog.settimeout(2)
        request = struct.pack(">HHHBBHH", 7, 0, 6, 1, 3, 0, 120)  # 249-byte answers
        try:
            for _ in range(4000):  # ~1 MB of answers nobody reads
                hog.sendall(request)
        except OSError:
            pass
        time.sleep(0.5)
        assert dev.call(lambda: dev.loops, timeout=3.0) > 0  # the loop is alive
        assert answer(port, 5.0) == [FIRMWARE_VERSION]
        assert dev.max_step_s < 1.0
        hog.close()


def test_simulate_w5500_serves_mbpoll_and_curl():
    """`tools/simulate.py --w5500`: the whole device on the real driver and the model."""
    port, http = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "simulate.py"),
                             "--w5500", "--modbus-port", str(port), "--http-port", str(http),
                             "--quiet", "--max-seconds", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(port, 15)
        assert answer(port) == [FIRMWARE_VERSION]
        out = subprocess.run(["mbpoll", "-m", "tcp", "-a", "1", "-r", "1", "-c", "2", "-t",
                              "4", "-1", "-q", "-p", str(port), "127.0.0.1"],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stdout + out.stderr
        assert curl(http) == "200"
    finally:
        proc.terminate()
        text = proc.communicate(timeout=10)[0]
    assert "han2x network: 192.168.1.232" in text


def test_more_connections_at_once_than_web_slots_are_all_answered():
    """A browser opens several connections at once (its requests, its speculative ones). On
    the board the web page has one slot and two listeners; the W5500 has no backlog, so a
    SYN that finds no socket listening is reset, and the client tries again. Every request
    must be answered whole in the end: none accepted and then closed unanswered, no web
    error, no hardware socket lost; afterwards both listeners are back and two requests at
    once (more than the one slot) are both answered. Racers: a request whose SYN lands the
    instant a web socket listens (on the slow emulated board Chromium's connections do),
    which made the driver's accept() raise "Failed to open new listening socket" after its
    socket swap, losing the client it had accepted and the racer with it."""
    LISTEN = 0x14
    with Device() as dev:
        web = dev.port(80)
        assert curl(web) == "200"
        model, results, resets = dev.model, [], []

        def read(s, path):
            try:
                with s:
                    out = b""
                    while True:
                        piece = s.recv(4096)
                        if not piece:
                            break
                        out += piece
            except (ConnectionRefusedError, ConnectionResetError):
                return False
            results.append((path, out[:12], out.endswith(b"0\r\n\r\n") or
                            out.endswith(b"}")))
            return True

        def request(path):
            s = socket.create_connection(("127.0.0.1", web), timeout=10)
            s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (path.encode(), web))
            return s

        def get(path):
            for _ in range(50):
                try:
                    if read(request(path), path):
                        return
                except (ConnectionRefusedError, ConnectionResetError):
                    pass
                resets.append(path)  # the chip's RST: nobody listened (no backlog)
                time.sleep(0.05)

        def racer(_k):
            sock = request("/api/status")  # the kernel completes it at once
            t = threading.Thread(target=lambda: read(sock, "racer") or get(
                "/api/status"))  # reset (more SYNs than listeners): it tries again
            t.start()
            return t

        with syn_on_listen(model, 80, racer) as racers:
            for _ in range(3):
                paths = ["/", "/api/status", "/static/app.js", "/settings", "/api/status",
                         "/registers"]
                in_threads(get, paths, 60)
        for t in racers:
            t.join(30)
        assert len(racers) == 6
        assert len(results) == 18 + 6, (results, resets)
        assert all(head == b"HTTP/1.1 200" and whole for _p, head, whole in results), results
        assert dev.web.errors == 0, dev.web.last_error
        assert dev.net.reclaimed == 0  # no hardware socket lost and freed by the janitor
        for _ in range(3):  # two listen: two SYNs at once both land, neither is reset
            deadline = time.monotonic() + 5
            while dev.sockets_in_use()[1].count(LISTEN) != 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert dev.sockets_in_use() == (4, [0] * 4 + [LISTEN] * 4)  # 2 Modbus + 2 web
            del results[:], resets[:]
            in_threads(get, ("/", "/api/status"), 30)
            assert sorted(r[1] for r in results) == [b"HTTP/1.1 200"] * 2, results
            assert resets == []
        assert dev.web.errors == 0, dev.web.last_error
