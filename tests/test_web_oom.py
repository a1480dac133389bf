"""A web request that runs out of memory fails alone (issue 21): on the real
adafruit_wiznet5k driver over the W5500 model, wired as code.py wires the device (one web
slot), a MemoryError is injected at each point of a request. Each time the failed request
gives back its socket (in the driver's table and on the chip), its page modules and its
generator; it is answered 503 when its answer had not started and closed otherwise; it is
counted and named in last_error; the next request is served and Modbus answers throughout.

On CPython nothing runs out of memory, so the MemoryError is raised where the board's
allocator would raise it: the same exception, from the same call, once.
"""

import importlib.abc
import importlib.util
import socket
import sys
import time

import pytest

from support.net_helpers import Device, modbus_read
from han2x_core import web as web_module
from han2x_core import webroutes
from han2x_core.webconn import Conn

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

ROUNDS = 20


def oom():
    return MemoryError("memory allocation failed, allocating 1024 bytes")


class _FailingImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Importing han2x_core.webstatus loads its own imports (webpages, i18n) and then runs
    out of memory, as compiling a module does on the board."""

    def find_spec(self, name, path, target=None):
        if name != "han2x_core.webstatus":
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        import han2x_core.webpages  # noqa: F401 - loaded before the failure, like the board

        raise oom()


class Injector:
    """Makes one call at `point` raise MemoryError, once; undo() restores everything."""

    def __init__(self, dev):
        self.dev = dev
        self.undo_list = []

    def _patch(self, owner, name, make):
        original = getattr(owner, name)
        fired = []

        def fire():
            if fired:
                return False
            fired.append(1)
            return True

        setattr(owner, name, make(original, fire))
        self.undo_list.append((owner, name, original))

    def arm(self, point):
        from adafruit_wiznet5k.adafruit_wiznet5k_socketpool import Socket

        if point == "accept":  # the connection's state object cannot be made
            def make(original, fire):
                def conn(*a):
                    if fire():
                        raise oom()
                    return original(*a)
                return conn
            self._patch(web_module, "Conn", make)
        elif point == "head":  # reading the request head
            def make(original, fire):
                def complete(conn):
                    if fire():
                        raise oom()
                    return original(conn)
                return complete
            self._patch(Conn, "complete", make)
        elif point == "parse":  # the Request object
            def make(original, fire):
                def request(*a):
                    if fire():
                        raise oom()
                    return original(*a)
                return request
            self._patch(web_module, "Request", make)
        elif point == "route":  # dispatch, before any answer
            def make(original, fire):
                def handle(routes, *a):
                    if fire():
                        raise oom()
                    return original(routes, *a)
                return handle
            self._patch(webroutes.Routes, "handle", make)
        elif point == "import":  # the page module half-loaded
            finder = _FailingImport()
            sys.meta_path.insert(0, finder)
            self.undo_list.append((None, finder, None))
        elif point == "render":  # the page generator, after the headers and some body
            def make(original, fire):
                def page(routes, conn, gen, *a):
                    def failing():
                        for k, piece in enumerate(gen):
                            if k == 12 and fire():
                                raise oom()
                            yield piece
                    return original(routes, conn, failing(), *a)
                return page
            self._patch(webroutes.Routes, "page", make)
        elif point in ("send-first", "send-later"):  # inside the driver's send()
            calls = []
            target = 1 if point == "send-first" else 2

            def make(original, fire):
                def send(sock, data):
                    calls.append(1)
                    if len(calls) == target and fire():
                        raise oom()
                    return original(sock, data)
                return send
            self._patch(Socket, "send", make)
        else:
            raise ValueError(point)

    def undo(self):
        for owner, name, original in reversed(self.undo_list):
            if owner is None:
                sys.meta_path.remove(name)
            else:
                setattr(owner, name, original)
        self.undo_list = []


# point -> (path requested, what the client gets)
POINTS = {
    "accept": ("/api/status", "503"),
    "head": ("/", "503"),
    "parse": ("/", "503"),
    "route": ("/api/status", "503"),
    "import": ("/", "503"),
    "render": ("/", "cut"),
    "send-first": ("/diagnostics", "503"),
    "send-later": ("/registers", "cut"),
}


def http_get(port, path, timeout=10.0):
    """The raw answer to one GET, read until the server closes or, like a browser, until
    its Content-Length body is in."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: 192.168.1.232\r\n\r\n" % path).encode())
        data = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            if _ and b"Content-Length: " in head and len(body) >= int(
                    head.split(b"Content-Length: ")[1].split(b"\r\n")[0]):
                break
    return data


def settled(dev, baseline):
    """Wait (under the janitor's 1 s) until the server closed the connection; return the
    W5500 sockets in use then."""
    deadline = time.monotonic() + 0.9
    while True:
        in_use = dev.sockets_in_use()
        idle = not dev.call(lambda: [c for c in dev.web._conns if c])
        if (idle and in_use == baseline) or time.monotonic() > deadline:
            return idle, in_use
        time.sleep(0.01)


def complete(answer):
    """True for a whole 200 answer (Content-Length body or chunked up to its last chunk)."""
    if not answer.startswith(b"HTTP/1.1 200 "):
        return False
    head, _, body = answer.partition(b"\r\n\r\n")
    if b"Transfer-Encoding: chunked" in head:
        return body.endswith(b"0\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    return len(body) == length


def test_out_of_memory_at_every_point_of_a_request_fails_that_request_alone():
    with Device() as dev:
        web_port, mb_port = dev.port(80), dev.port(502)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the services start once the network is up
            try:
                if complete(http_get(web_port, "/api/status")):
                    break
            except OSError:
                pass
            time.sleep(0.05)
        held = socket.create_connection(("127.0.0.1", mb_port), timeout=5)  # a PLC, all along
        assert modbus_read(mb_port, sock=held) is not None
        for path in ("/", "/diagnostics", "/registers", "/api/status"):  # all load once
            assert complete(http_get(web_port, path)), path
        deadline = time.monotonic() + 5  # idle: the web listens on two sockets again
        while dev.call(lambda: len(dev.web._lis.socks)) != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        baseline = dev.sockets_in_use()
        assert baseline[0] == 5, baseline  # Modbus: the held client, 2 listeners; web: 2
        injector = Injector(dev)
        errors = dev.web.errors
        try:
            for rnd in range(ROUNDS):
                for point, (path, outcome) in POINTS.items():
                    dev.call(lambda: injector.arm(point))
                    answer = http_get(web_port, path)
                    dev.call(injector.undo)
                    where = "round %d, %s: %r" % (rnd, point, answer[:80])
                    if outcome == "503":
                        assert answer.startswith(b"HTTP/1.1 503 "), where
                        assert answer.endswith(b"\r\n\r\nout of memory: try again soon.\n"), where
                    elif outcome == "cut":  # headers out, then a clean close mid-body
                        assert answer.startswith(b"HTTP/1.1 200 ") and not complete(answer), where
                    errors += 1
                    assert dev.call(lambda: dev.web.errors) == errors, where
                    last = dev.call(lambda: dev.app.last_error)
                    assert last.startswith("web: ") and "out of memory" in last, (where, last)
                    if point not in ("accept", "head", "parse"):  # the path is known
                        assert path in last, (where, last)
                    # everything given back: page modules, the connection, its socket
                    assert not [m for m in sys.modules if webroutes.transient(m)], where
                    assert settled(dev, baseline) == (True, baseline), where
                    # the next request is served, and Modbus answers
                    assert complete(http_get(web_port, path)), where
                    assert modbus_read(mb_port, sock=held) is not None, where
                    assert modbus_read(mb_port) is not None, where
        finally:
            dev.call(injector.undo)
            held.close()
        assert dev.net.janitor.reclaimed == 0  # nothing was left for the janitor to find
        assert dev.app.service_errors == 0, dev.app.last_error  # contained in the web server
