"""The raw HAN stream over TCP (setting han_stream_port): every byte from the meter, as it
arrives, to one client, for Home Assistant's amshan integration ("network" connection) and
the like. Shell; imported only when the stream is on (App.configure builds it on app.network).

One client at a time: a new one replaces the old (ser2net's kickolduser). Bytes wait in one
fixed ring buffer; when the client does not take them fast enough the newest are dropped
and counted, never the heap grown. Sends never wait: on the W5500 only what fits the chip's
free transmit space is sent (with a short send timeout besides), elsewhere sends are
non-blocking; a client that takes nothing for stall_ms is closed. docs/integration.md,
socket budget: docs/network.md.
"""

from micropython import const

from han2x_core.netio import listen, peer_gone, send, would_block
from han2x_core.ticks import ticks_add, ticks_diff

_TYPE_CHECKING = const(0)  # mypy: true (pyproject always_true); the compiler drops the block
if _TYPE_CHECKING:
    from cpmodules import Any

BUF_SIZE = const(1024)  # at least one whole telegram (Aidon list 3: ~580 bytes)
_STALL_MS = const(30000)  # a client that takes nothing for this long is closed
_CHECK_MS = const(200)  # how often an idle client is asked whether it is still there
_REBIND_MS = const(1000)


class HanStream:
    """Serve the raw HAN bytes on `port` to one client. feed(buf, n) is called with every
    chunk the HAN reader gives (App.raw_tap); poll(now_ms) accepts and sends, bounded.

    Counters: clients (connections served), replaced (closed for a newer client), stalled
    (closed for taking nothing), bytes_sent, bytes_dropped (did not fit the buffer while a
    client was connected), errors, last_error; connected (bool)."""

    name = "han_stream"

    def __init__(self, pool, port, send_timeout_s=None, stall_ms=_STALL_MS, size=BUF_SIZE):
        self.pool = pool
        self.port = port
        self.send_timeout_s = send_timeout_s  # W5500: 0.1 (its send() may wait for ever)
        self.stall_ms = stall_ms
        self.host = None
        self._listener = None  # type: Any
        self._client = None  # type: Any
        self._running = False
        self._bind_at = None
        self._ring = bytearray(size)
        self._mv = memoryview(self._ring)
        self._head = 0  # next byte to send
        self._len = 0  # bytes waiting
        self._moved_ms = 0  # last time the client took bytes (or connected)
        self._check_ms = 0
        self._scratch = bytearray(16)  # what a client sends is read and ignored
        self.clients = 0
        self.replaced = 0
        self.stalled = 0
        self.bytes_sent = 0
        self.bytes_dropped = 0
        self.errors = 0
        self.last_error = ""

    @property
    def connected(self):
        return self._client is not None

    def status(self):
        """The "han_stream" object of /api/status."""
        return {"port": self.port, "connected": self._client is not None,
                "clients": self.clients, "replaced": self.replaced, "stalled": self.stalled,
                "bytes_sent": self.bytes_sent, "bytes_dropped": self.bytes_dropped,
                "errors": self.errors, "last_error": self.last_error or None}

    # ---- the HAN side ------------------------------------------------------------------------

    def feed(self, buf, n):
        """Queue n bytes of buf for the client (none when no client is connected). Copies
        byte by byte: no allocation; at 2400 baud that is ~240 bytes a second."""
        if self._client is None:
            return
        ring = self._ring
        size = len(ring)
        room = size - self._len
        take = n if n <= room else room
        self.bytes_dropped += n - take
        w = (self._head + self._len) % size
        for i in range(take):
            ring[w] = buf[i]
            w += 1
            if w == size:
                w = 0
        self._len += take

    # ---- life cycle (Network.attach: start(ip) and stop() on every address change) -----------

    def start(self, host=None):
        self.host = host
        self._running = True
        if self.port:
            self._bind()

    def stop(self):
        self._running = False
        self._drop_client()
        self._close_listener()

    def configure(self, settings):
        port = settings.get("han_stream_port", self.port)
        if port != self.port:
            self.port = port
            self._drop_client()
            self._close_listener()
            self._bind_at = None  # poll() binds the new port (none for 0)

    def sockets(self):
        """Listener and client (the W5500 janitor and the PC loop's select); allocates."""
        return [s for s in (self._listener, self._client) if s is not None]

    def busy(self):
        return self._len > 0

    # ---- the loop ----------------------------------------------------------------------------

    def poll(self, now_ms):
        if not self._running or not self.port:
            return
        if self._listener is None:
            if self._bind_at is not None and ticks_diff(now_ms, self._bind_at) < 0:
                return
            try:
                self._bind()
            except Exception as e:  # port in use, link down: try again in a second
                self._error("bind %d" % self.port, e)
                self._bind_at = ticks_add(now_ms, _REBIND_MS)
                return
        self._accept(now_ms)
        if self._client is None:
            return
        try:
            if self._len:
                self._send(now_ms)
            elif ticks_diff(now_ms, self._check_ms) >= 0:
                self._check_ms = ticks_add(now_ms, _CHECK_MS)
                self._check(now_ms)
        except Exception as e:  # one client's failure closes that client only
            self._error("client", e)
            self._drop_client()

    def _accept(self, now_ms):
        try:
            sock, _ = self._listener.accept()
        except OSError as e:
            if not would_block(e):
                self._error("accept", e)
            return
        except RuntimeError as e:
            self._error("accept", e)
            if "in use" in str(e):
                # adafruit_wiznet5k: "All sockets in use." The new client sits on the
                # listener's hardware socket; closing the old one lets the next accept work.
                if self._client is not None:
                    self.replaced += 1
                    self._drop_client()
            else:  # "The socket has been closed." (a client reset before accept): listen again
                self._close_listener()
            return
        if self._client is not None:
            self.replaced += 1
            self._drop_client()
        try:
            sock.settimeout(0)
        except (OSError, AttributeError):
            pass
        self._client = sock
        self.clients += 1
        self._head = self._len = 0
        self._moved_ms = now_ms
        self._check_ms = ticks_add(now_ms, _CHECK_MS)

    def _check(self, now_ms):
        """Read (and ignore) what the client sends; notice when it has gone."""
        try:
            if hasattr(self._client, "recv_into"):
                n = self._client.recv_into(self._scratch)
            else:
                n = self._client.readinto(self._scratch)  # MicroPython: None = nothing
        except OSError as e:
            if would_block(e):
                return
            if peer_gone(e):
                n = 0
            else:
                raise
        if n == 0:
            self._drop_client()

    def _free(self):
        """What the W5500 can take now without waiting (driver-private, as sockjanitor's
        use); None where sends do not wait (CPython, MicroPython: non-blocking)."""
        sock = self._client
        iface = getattr(sock, "_interface", None)
        if iface is None:
            return None
        return iface._get_tx_free_size(sock._socknum)

    def _send(self, now_ms):
        size = len(self._ring)
        n = self._len if self._head + self._len <= size else size - self._head
        free = self._free()
        if free is not None:
            if free <= 0:
                n = 0
            elif free < n:
                n = free
        sent = 0
        if n:
            view = self._mv[self._head:self._head + n]  # allocates (a view)
            try:
                sent = send(self._client, view, self.send_timeout_s)
            except RuntimeError as e:  # adafruit_wiznet5k: the send timed out (or closed)
                self.stalled += 1
                self._error("send", e)
                self._drop_client()
                return
            if sent < 0:
                self._drop_client()
                return
        if sent:
            self.bytes_sent += sent
            self._head = (self._head + sent) % size
            self._len -= sent
            self._moved_ms = now_ms
        elif ticks_diff(now_ms, self._moved_ms) > self.stall_ms:
            self.stalled += 1
            self._drop_client()

    # ---- sockets -----------------------------------------------------------------------------

    def _drop_client(self):
        sock, self._client = self._client, None
        self._head = self._len = 0
        if sock is not None:
            self._close(sock)

    def _close_listener(self):
        sock, self._listener = self._listener, None
        if sock is not None:
            self._close(sock)

    def _close(self, sock):
        try:
            sock.close()
        except Exception as e:  # closing must not raise into the loop
            self._error("close", e)

    def _error(self, where, e):
        self.errors += 1
        self.last_error = "%s: %s" % (where, e)

    def _bind(self):
        self._close_listener()
        host = self.host if self.host is not None else "0.0.0.0"
        self._listener = listen(self.pool, self.pool.getaddrinfo(host, self.port)[0][-1], 1)
