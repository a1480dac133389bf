"""Web server shell: dashboard, settings, diagnostics, register map and JSON API.

Each connection is a small state machine advanced a bounded amount per poll(now_ms): fixed
buffers, deadlines, size limits (webconn.py). Routes are in webroutes.py. Why not
adafruit_httpserver: its Server.poll() blocks (1 s socket timeouts, a busy loop on EAGAIN
while sending), grows requests without bound, and importing it costs ~60 KB of heap.
"""

from micropython import const

from han2x_core.netio import (W5500_SOCKETS, Listeners, peer_gone, send, sockets_needed,
                               would_block)
from han2x_core.ticks import ticks_add, ticks_diff
from han2x_core.webconn import (DRAINING, READING, REQUEST_MAX, SENDING, STATUS, Conn,
                                 Request, victim)

_READ_MS = const(5000)  # the whole request must arrive within this
_SEND_MS = const(15000)
_DRAIN_MS = const(1000)
_BACKLOG = const(4)  # CPython; on the W5500 two listening sockets (netio.py)
_ACCEPTS = const(2)  # connections taken per poll
_ACCEPT_EVERY_MS = const(10)  # look for new connections at most this often (netio.due)
_STEPS = const(4)  # sends per connection per poll
# The answer to a request that ran out of memory before its answer started: preallocated,
# so that sending it needs no heap.
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Connection: close\r\nRetry-After: 2\r\nContent-Length: 31\r\n\r\n"
         b"out of memory: try again soon.\n")


class WebServer:
    """HTTP service polled by the App. pool: CPython `socket` or a wiznet SocketPool.

    send_timeout_s: None = non-blocking sends (CPython); on the W5500, whose send() with
    timeout 0 waits forever, pass a small value (0.1) so a stuck client costs at most that.
    """

    name = "web"

    def __init__(self, pool, app, port=80, max_clients=2, www_path=None, send_timeout_s=None):
        from han2x_core.webroutes import Routes

        self.pool = pool
        self.app = app
        self.host = "0.0.0.0"
        self.port = port
        self.send_timeout_s = send_timeout_s
        self.read_ms = _READ_MS  # a client must send its whole request within this
        self._lis = Listeners(pool, _BACKLOG, self._note, _ACCEPT_EVERY_MS)
        # W5500 sockets this server may hold, listeners and connections: max_clients + 1,
        # or what netio.sockets_needed leaves free (configure(); docs/network.md)
        self.budget = max_clients + 1
        self._want_port = None
        self._retry_ms = None
        self._bufs = [bytearray(REQUEST_MAX) for _ in range(max_clients)]
        self._conns = [None] * max_clients  # type: list
        self.routes = Routes(self, app, www_path)
        self.requests = 0
        self.errors = 0
        self.evicted = 0
        self.resets = 0  # connections the client reset or closed mid-answer
        self.starved = 0  # polls that found no W5500 socket free to listen again on
        self.last_error = ""
        self.report = None  # App.error(where, what), set by the App
        self.uptime_s = 0
        self._up_ms = 0
        self._last_ms = None

    def start(self, host="0.0.0.0", port=None):
        """Listen on host:port (port None = the configured one). Raises OSError on failure."""
        self.host = host
        if port is not None:
            self.port = port
        self._lis.open(host, self.port)

    def configure(self, settings):
        """Apply web_port (re-listen once open connections finish), password, language."""
        self.routes.configure(settings)
        if "modbus_max_clients" in settings:  # the sockets the rule leaves the web
            self.budget = max(1, min(len(self._conns) + 1,
                                     1 + W5500_SOCKETS - sockets_needed(settings)))
        port = settings.get("web_port")
        if port and port != self.port:
            self._want_port = port

    def stop(self):
        for i in range(len(self._conns)):
            self._close(i)
        self._lis.close()

    def sockets(self):
        """The listeners and open connections (the PC loop selects on them; the janitor
        checks them against the W5500's sockets)."""
        return [c.sock for c in self._conns if c is not None] + self._lis.socks

    def busy(self):
        """True while an answer is being sent: the PC loop should not sleep then."""
        for c in self._conns:
            if c is not None and c.state == SENDING:
                return True
        return False

    def poll(self, now_ms):
        """Bounded, non-blocking: up to two accepts, one read or four sends per connection."""
        self._tick(now_ms)
        lis = self._lis
        if self._want_port is not None and not any(self._conns):
            if self._retry_ms is None or ticks_diff(now_ms, self._retry_ms) >= 0:
                self._relisten(now_ms)
        self._listen_again(now_ms)
        if lis.due(now_ms):
            try:
                for _ in range(_ACCEPTS):
                    if not self._accept(now_ms):
                        break
            except MemoryError:  # in the driver's accept(): the janitor finds its socket
                import gc

                gc.collect()
                self._note("accept: out of memory")
        for i in range(len(self._conns)):
            conn = self._conns[i]
            if conn is None:
                continue
            try:
                self._service(conn, now_ms)
            except Exception as e:  # MemoryError included: this request fails alone
                if isinstance(e, OSError) and peer_gone(e):  # the client hung up: normal
                    self._gone(i)
                else:
                    self._fail(i, e)
        # At once, not at the next look: while fewer listen, a browser's SYNs meet RST
        self._listen_again(now_ms)  # the listener went to a client (or died)
        lis.top_up(self._left(), now_ms)  # a connection closed: its socket listens again

    def _left(self):
        """Hardware sockets the budget leaves beside the open connections."""
        left = self.budget
        for c in self._conns:
            if c is not None:
                left -= 1
        return left

    def _listen_again(self, now_ms):
        """Listen again when every listener was taken by a client or died; after a
        failure (no hardware socket free, link down) on a later poll: a second later, or
        at once when one of our connections closes (_close)."""
        lis = self._lis
        if lis.addr is None or lis.socks or (
                self._retry_ms is not None and ticks_diff(now_ms, self._retry_ms) < 0):
            return
        try:
            self.start(self.host)
            self._retry_ms = None
        except Exception as e:  # noqa: BLE001
            if "in use" in str(e):  # every W5500 socket is taken (connections hold ours):
                self.starved += 1  # not an error; tried again when one of ours closes
            else:  # e.g. the link is down
                self._note("re-listen: %s" % (e,))
            self._retry_ms = ticks_add(now_ms, 1000)

    def _relisten(self, now_ms):
        port, self._want_port = self._want_port, None
        if self._lis.addr is None:  # not listening (stopped by the network): start() uses it
            self.port = port
            return
        self._lis.close()
        old, self.port = self.port, port
        try:
            self.start(self.host)
        except Exception as e:  # port taken: serve on the old one, try again in 10 s
            self._note("web port %d: %s" % (port, e))  # type: ignore[str-format]
            self._want_port = port
            self._retry_ms = ticks_add(now_ms, 10000)
            self.port = old
            self.start(self.host)

    def _tick(self, now_ms):
        if self._last_ms is not None:
            self._up_ms += ticks_diff(now_ms, self._last_ms)
            if self._up_ms >= 1000:
                self.uptime_s += self._up_ms // 1000
                self._up_ms %= 1000
        self._last_ms = now_ms

    def _fail(self, i, e):
        """A request failed (e: an exception or a text): give back what it held (its
        generator and chunk, its page modules, its socket unless it is still to answer),
        then answer 503 if it ran out of memory before its answer started, else close.
        Counted, and reported as the App's last_error."""
        conn = self._conns[i]
        oom = isinstance(e, MemoryError)
        retry = oom and not conn.sent and conn.out is not _BUSY and conn.state != DRAINING
        conn.gen = None  # the page's generator and everything its frames hold
        conn.out = b""
        conn.transient = not retry  # it may have loaded page modules before it failed
        if retry:
            self._unload()
            conn.unread = conn.state == READING and (conn.head_end < 0 or conn.n < conn.need)
            conn.out = _BUSY
            conn.pos = 0
            conn.state = SENDING
        else:
            self._close(i)
        import gc

        gc.collect()
        if oom:
            what = "out of memory"
        elif isinstance(e, str):
            what = e
        else:
            what = "%s: %s" % (type(e).__name__, e)
        self._note("%s: %s, %s" % (conn.path or "request", what,
                                   "answered 503" if retry else "closed"))

    def _note(self, text):
        """Count a contained error and hand it to the App (its last_error)."""
        self.errors += 1
        try:
            self.last_error = text[:100]
            if self.report is not None:
                self.report(self.name, text)
        except MemoryError:
            self.last_error = "out of memory"

    def _accept(self, now_ms):
        conns = self._conns
        slot = -1
        for i in range(len(conns)):
            if conns[i] is None:
                slot = i
                break
        if slot < 0 and victim(conns, now_ms) < 0:
            return False  # every slot is answering: a new client waits (in the backlog, or
            # on the W5500 established on a listener's socket) until one is done
        got = self._lis.accept()  # a failure is counted there; poll() listens again
        if got is None:
            return False
        sock, addr = got
        sock.settimeout(0)
        if slot < 0:  # full: make room (see victim())
            slot = victim(conns, now_ms)
            self._close(slot)
            self.evicted += 1
        try:
            conns[slot] = Conn(sock, addr, self._bufs[slot], now_ms)
        except MemoryError:  # never leave the accepted socket open without an owner
            self._refuse(sock, _BUSY)
            self._note("accept: out of memory, answered 503")
        return True

    def _refuse(self, sock, answer):
        try:
            send(sock, answer, self.send_timeout_s)
        except Exception:
            pass
        self._close_sock(sock)

    def _gone(self, i):
        """The client reset or closed the connection: normal, counted apart from errors."""
        self.resets += 1
        self._close(i)

    def _close(self, i):
        conn = self._conns[i]
        self._conns[i] = None
        if conn is not None:
            conn.gen = None
            self._close_sock(conn.sock)
            self._retry_ms = None  # its socket is free: listen again at once if need be
            after, conn.after = conn.after, None
            if after is not None:  # the answer is sent (or the client gone): e.g. restart
                after()
            if conn.transient:  # it used the page modules: drop them when nobody else does
                self._unload()

    def _unload(self):
        """Drop the page modules unless an open connection still uses them."""
        for c in self._conns:
            if c is not None and c.transient:
                return
        from han2x_core.webroutes import release

        release()

    def _close_sock(self, sock):
        """Close a socket whatever happens: adafruit_wiznet5k's close() formats a debug
        text, so with the heap full it can fail after marking the hardware socket free but
        before closing it; once more after a collection it closes (else the janitor will)."""
        for _ in range(2):
            try:
                sock.close()
                return
            except Exception:
                import gc

                gc.collect()

    def _recv(self, conn, start):
        try:
            return conn.sock.recv_into(memoryview(conn.buf)[start:], len(conn.buf) - start)
        except OSError as e:
            if would_block(e):
                return -1
            raise

    def _service(self, conn, now_ms):
        i = self._conns.index(conn)
        if conn.state == READING:
            if ticks_diff(now_ms, conn.t0) > self.read_ms:
                if conn.n:
                    self.respond(conn, 408, "text/plain", "request timeout\n", unread=True)
                else:
                    self._close(i)
                return
            k = self._recv(conn, conn.n)
            if k < 0:
                return
            if k == 0:
                self._close(i)
                return
            conn.n += k
            self._parse(conn, now_ms)
        elif conn.state == SENDING:
            if ticks_diff(now_ms, conn.t0) > _SEND_MS:
                self._fail(i, "send timeout")
                return
            for step in range(_STEPS + 1):  # the last step only ends a finished answer:
                # its socket goes back to listening at once (docs/network.md, budget)
                if conn.pos >= len(conn.out) and not conn.refill():
                    if conn.unread:
                        conn.drain(now_ms)
                    else:
                        self._close(i)
                    return
                if step == _STEPS:
                    return
                k = conn.send(self.send_timeout_s)
                if k <= 0:
                    if k < 0:
                        self._gone(i)
                    return
        else:  # _DRAINING: read what the client still sends so that close() is not a RST
            k = self._recv(conn, 0)
            if k == 0 or ticks_diff(now_ms, conn.t0) > _DRAIN_MS:
                self._close(i)
            elif k > 0:
                conn.t0 = now_ms

    def _parse(self, conn, now_ms):
        status = conn.complete()
        if status == 0:  # need more bytes
            return
        if status != 1:  # a request we will not read: answer, then drain
            self.respond(conn, status, "text/plain", STATUS[status] + "\n", unread=True)
            return
        self.requests += 1
        try:
            request = Request(memoryview(conn.buf)[:conn.need], conn.head_end)
        except MemoryError:
            raise  # poll() answers 503
        except Exception:
            self.respond(conn, 400, "text/plain", "malformed request\n")
            return
        conn.path = request.path
        try:
            self.routes.handle(conn, request, now_ms)
        except MemoryError:
            raise  # poll() answers 503 (or closes, if the answer started)
        except Exception as e:
            self._note("%s: %s: %s" % (request.path, type(e).__name__, e))
            if conn.state == READING:
                self.respond(conn, 500, "text/plain", "internal error\n")

    def respond(self, conn, status, ctype, body, headers="", unread=False):
        """Start sending a response on conn (see Conn.respond)."""
        conn.respond(status, ctype, body, headers, unread)
