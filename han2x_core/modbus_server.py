"""Modbus TCP server shell: non-blocking, many clients, over any socket pool.

The pool is CPython's or MicroPython's `socket` module, or adafruit_wiznet5k's SocketPool.
It moves bytes only; framing and functions live in modbus.py. Budget rules (W5500: 8
hardware sockets) and the eviction policy are documented in docs/registers.md.
"""

from micropython import const

from han2x_core.modbus import ADU_SIZE, CLOSE, ModbusConnection
from han2x_core.modbus_pdu import ModbusHandler
from han2x_core.ticks import ticks_add, ticks_diff

_EAGAIN = (11, 35, 115, 119)  # EAGAIN/EWOULDBLOCK (Linux, BSD), EINPROGRESS/EALREADY
_GONE = (32, 54, 104, 103, 107, 128)  # EPIPE, ECONNRESET (BSD, Linux), ECONNABORTED, ENOTCONN
_MAX_FRAMES = const(4)  # requests served per client per poll: fairness
_MAX_ACCEPTS = const(2)  # connections taken per poll
_ACCEPT_EVERY_MS = const(5)  # accept() with nothing waiting raises (allocates) and costs SPI
# transfers on the W5500: try it at most this often while nothing is coming in
_REBIND_MS = const(1000)  # retry a failed bind this often
_SEND_STALL_MS = const(10000)  # a client whose answer cannot be sent for this long is dropped


def _again(e):
    """True for 'would block' errors, portable: CPython's wiznet OSError has errno None."""
    return bool(e.args) and e.args[0] in _EAGAIN


class _Client:
    """One preallocated client slot: reused for every connection it serves."""

    def __init__(self, handler):
        self.sock = None
        self.conn = ModbusConnection(handler)
        self.tx = bytearray(ADU_SIZE)
        self.tx_mv = memoryview(self.tx)
        self.view = None  # cached memoryview of tx[0:view_len]: no allocation per answer
        self.view_len = -1
        self.tx_len = 0
        self.tx_pos = 0
        self.last_rx_ms = 0
        self.stall_ms = 0  # when the pending answer stopped moving
        self.recv_into = True

    def attach(self, sock, now_ms):
        self.sock = sock
        self.conn.reset()
        self.tx_len = self.tx_pos = 0
        self.last_rx_ms = now_ms
        self.recv_into = hasattr(sock, "recv_into")  # MicroPython's socket has readinto


class ModbusServer:
    """Serve a Registers image over Modbus TCP (MBAP and RTU-over-TCP) on one port.

    poll(now_ms) never blocks and does bounded work: up to 2 accepts, and per client one
    receive and up to 4 answers. Any error from one client closes that client only.
    """

    name = "modbus"

    def __init__(self, pool, regs, port=502, max_clients=4, idle_timeout_ms=60000, unit_id=0,
                 backlog=None, send_timeout_s=None):
        self.pool = pool
        # None: non-blocking sends (CPython, MicroPython). On the W5500 pass a small value
        # (0.1): adafruit_wiznet5k's send() with timeout 0 or None waits for ever when the
        # client stops reading (full TCP window), hanging the whole loop.
        self.send_timeout_s = send_timeout_s
        self.regs = regs
        self.handler = ModbusHandler(regs, unit_id)
        self.max_clients = max_clients
        self.idle_timeout_ms = idle_timeout_ms
        self.backlog = backlog  # None: max_clients + 2 (the W5500 ignores it)
        self.host = None
        self.port = port  # the port asked for (the bound one when 0 was asked, see bound_port)
        self.bound_port = None
        self._want_port = port
        self._listener = None
        self._running = False
        self._bind_retry_ms = None
        self._more = False
        self._accept_ms = -1  # last accept() attempt; -1 = try at the next poll
        self._scratch = bytearray(ADU_SIZE)
        level = getattr(pool, "IPPROTO_TCP", None)
        option = getattr(pool, "TCP_NODELAY", None)
        self._nodelay = (level, option) if level is not None and option is not None else None
        self._clients = [_Client(self.handler) for _ in range(max_clients)]
        self.client_count = 0
        self.accepted = 0
        self.accept_tries = 0  # polls that called accept() (rate-limited, see _ACCEPT_EVERY_MS)
        self.evicted = 0  # closed to make room for a new client (longest idle first)
        self.timed_out = 0  # closed after idle_timeout_ms without a request byte
        self.stalled = 0  # closed because their answers could not be sent
        self.closed_by_peer = 0
        self.errors = 0  # socket errors (accept, recv, send, bind)
        self.last_error = ""

    # ---- counters shared with the protocol core ----------------------------------------------

    @property
    def requests(self):
        return self.handler.requests

    @property
    def exceptions(self):
        return self.handler.exceptions

    @property
    def malformed(self):
        return self.handler.malformed + self.handler.crc_errors

    # ---- life cycle ------------------------------------------------------------------------

    def start(self, host=None):
        """Bind and listen (raises OSError when the port cannot be bound)."""
        self.host = host
        self._running = True
        self._bind()

    def stop(self):
        """Close every client and the listener."""
        self._running = False
        for c in self._clients:
            if c.sock is not None:
                self._close(c)
        self._close_listener()

    def configure(self, settings):
        """Apply the modbus_* settings; a port change re-binds within the next poll."""
        timeout_s = settings.get("modbus_idle_timeout_s")
        self.reconfigure(
            port=settings.get("modbus_port"),
            max_clients=settings.get("modbus_max_clients"),
            idle_timeout_ms=None if timeout_s is None else timeout_s * 1000,
            unit_id=settings.get("modbus_unit_id"),
        )

    def reconfigure(self, port=None, max_clients=None, idle_timeout_ms=None, unit_id=None):
        if port is not None and port != self._want_port:
            self._want_port = port
            self._bind_retry_ms = None
        if max_clients is not None and max_clients >= 1:
            self.max_clients = max_clients
            while len(self._clients) < max_clients:
                self._clients.append(_Client(self.handler))  # allocates (settings change)
        if idle_timeout_ms is not None:
            self.idle_timeout_ms = idle_timeout_ms
        if unit_id is not None:
            self.handler.unit_id = unit_id

    def sockets(self):
        """The listener and client sockets, for a PC loop that waits in select(); allocates."""
        socks = [c.sock for c in self._clients if c.sock is not None]
        if self._listener is not None:
            socks.append(self._listener)
        return socks

    def busy(self):
        """True when a client has buffered bytes to parse or send (the PC loop must not wait)."""
        if self._more:
            return True
        for c in self._clients:
            if c.sock is not None and c.tx_len:
                return True
        return False

    # ---- the loop --------------------------------------------------------------------------

    def poll(self, now_ms):
        """One bounded, non-blocking round: (re)bind, accept, serve each client."""
        if not self._running:
            return
        self._more = False
        if self._listener is None or self._want_port != self.port:
            self._maybe_rebind(now_ms)
        if self.client_count > self.max_clients:
            self._shrink()
        if self._listener is not None and (
                ticks_diff(now_ms, self._accept_ms) >= _ACCEPT_EVERY_MS or self._accept_ms < 0):
            self._accept_ms = now_ms
            self.accept_tries += 1
            for _ in range(_MAX_ACCEPTS):
                if not self._accept(now_ms):
                    break
                self._accept_ms = -1  # one came in: look again at the next poll
        for c in self._clients:
            if c.sock is None:
                continue
            try:
                self._serve(c, now_ms)
            except MemoryError:
                self._fail(c, "out of memory")
            except Exception as e:  # noqa: BLE001 - one client's failure never stops the rest
                self._fail(c, e)

    def _serve(self, c, now_ms):
        if c.tx_len:
            self._flush(c, now_ms)
            if c.sock is None:
                return
            if c.tx_len:
                if ticks_diff(now_ms, c.stall_ms) > _SEND_STALL_MS:
                    self.stalled += 1
                    self._close(c)
                return
        conn = c.conn
        if conn.room():
            n = self._recv(c)
            if n == 0:
                self.closed_by_peer += 1
                self._close(c)
                return
            if n > 0:
                c.last_rx_ms = now_ms
        for _ in range(_MAX_FRAMES):
            m = conn.respond(c.tx)
            if m == CLOSE:
                self._close(c)
                return
            if m == 0:
                break
            c.tx_len = m
            c.tx_pos = 0
            c.stall_ms = now_ms
            self._flush(c, now_ms)
            if c.sock is None or c.tx_len:
                return
        else:
            self._more = True  # stopped at the per-poll limit: more frames may be waiting
        if ticks_diff(now_ms, c.last_rx_ms) > self.idle_timeout_ms:
            self.timed_out += 1
            self._close(c)

    # ---- socket calls (each in one place, for the W5500's quirks) ----------------------------

    def _recv(self, c):
        """Receive what is waiting: n > 0 bytes, 0 = peer closed, -1 = nothing now."""
        conn = c.conn
        if conn.rx_len == 0:
            buf = conn.rx  # straight into the frame buffer: no copy in the common case
            size = ADU_SIZE
        else:
            buf = self._scratch
            size = conn.room()
        try:
            if c.recv_into:
                n = c.sock.recv_into(buf, size)
            else:
                n = c.sock.readinto(buf, size)  # MicroPython: None when nothing is waiting
        except OSError as e:
            if _again(e):
                return -1
            if e.args and e.args[0] in _GONE:
                return 0  # reset by the peer: a normal way to leave
            raise
        if n is None:
            return -1
        if n and buf is conn.rx:
            conn.rx_len = n
        elif n:
            conn.feed(buf, n)
        return n

    def _flush(self, c, now_ms):
        """Send what the socket takes now; keep the rest for the next poll."""
        while c.tx_pos < c.tx_len:
            if c.tx_pos == 0:
                if c.view_len != c.tx_len:
                    c.view = c.tx_mv[0:c.tx_len]  # allocates once per answer size
                    c.view_len = c.tx_len
                data = c.view
            else:
                data = c.tx_mv[c.tx_pos:c.tx_len]  # allocates (partial send: rare)
            if self.send_timeout_s:
                c.sock.settimeout(self.send_timeout_s)  # W5500: bounded wait (see __init__)
            try:
                sent = c.sock.send(data)  # wiznet: RuntimeError on timeout -> client closed
            except OSError as e:
                if _again(e):
                    return
                if e.args and e.args[0] in _GONE:
                    self.closed_by_peer += 1
                    self._close(c)
                    return
                raise
            finally:
                if self.send_timeout_s and c.sock is not None:
                    c.sock.settimeout(0)
            if not sent:
                return
            c.tx_pos += sent
            c.stall_ms = now_ms
        c.tx_len = c.tx_pos = 0

    def _accept(self, now_ms):
        """Take one waiting connection; True when one was taken."""
        try:
            sock, _ = self._listener.accept()
        except OSError as e:
            if not _again(e):
                self.errors += 1
                self.last_error = "accept: %s" % (e,)
            return False
        except RuntimeError as e:
            self.errors += 1
            self.last_error = "accept: %s" % (e,)
            if "in use" not in str(e):
                # adafruit_wiznet5k: a client that resets before accept() leaves the
                # listening hardware socket CLOSED; accept() then closes our listener object
                # and raises "The socket has been closed." for ever. Drop it: poll() binds
                # a new one (tests/test_w5500_services.py).
                self._close_listener()
                return False
            # adafruit_wiznet5k: "All sockets in use." The client holds the listener's
            # hardware socket; free one by closing our longest-idle client.
            victim = self._longest_idle()
            if victim is not None:
                self.evicted += 1
                self._close(victim)
            return False
        try:
            sock.settimeout(0)
        except (OSError, AttributeError):
            pass
        if self._nodelay is not None:
            try:  # answers go out at once instead of waiting for the previous ACK (Nagle)
                sock.setsockopt(self._nodelay[0], self._nodelay[1], 1)
            except (OSError, AttributeError, TypeError, ValueError):
                pass
        slot = None
        if self.client_count >= self.max_clients:
            slot = self._longest_idle()
            if slot is not None:
                self.evicted += 1
                self._close(slot)
        else:
            for c in self._clients:
                if c.sock is None:
                    slot = c
                    break
        if slot is None:  # cannot happen while max_clients >= 1; never leak the socket
            self._close_sock(sock)
            return False
        slot.attach(sock, now_ms)
        self.client_count += 1
        self.accepted += 1
        return True

    def _close_sock(self, sock):
        try:
            sock.close()
        except Exception as e:  # noqa: BLE001 - closing must not raise into the loop
            self.errors += 1
            self.last_error = "close: %s" % (e,)

    # ---- helpers ---------------------------------------------------------------------------

    def _longest_idle(self):
        victim = None
        for c in self._clients:
            if c.sock is not None and (victim is None or
                                       ticks_diff(c.last_rx_ms, victim.last_rx_ms) < 0):
                victim = c
        return victim

    def _shrink(self):
        while self.client_count > self.max_clients:
            victim = self._longest_idle()
            if victim is None:
                break
            self.evicted += 1
            self._close(victim)

    def _close(self, c):
        sock = c.sock
        c.sock = None
        c.conn.reset()
        c.tx_len = c.tx_pos = 0
        if sock is not None:
            self.client_count -= 1
            self._close_sock(sock)

    def _fail(self, c, e):
        self.errors += 1
        self.last_error = "client: %s" % (e,)
        self._close(c)

    def _close_listener(self):
        if self._listener is not None:
            self._close_sock(self._listener)
            self._listener = None
            self.bound_port = None

    def _maybe_rebind(self, now_ms):
        if self._bind_retry_ms is not None and ticks_diff(now_ms, self._bind_retry_ms) < 0:
            return
        try:
            self._bind()
            self._bind_retry_ms = None
        except Exception as e:  # noqa: BLE001 - port in use: retry later, keep serving
            self.errors += 1
            self.last_error = "bind %d: %s" % (self._want_port, e)
            self._bind_retry_ms = ticks_add(now_ms, _REBIND_MS)

    def _bind(self):
        self._close_listener()
        pool = self.pool
        port = self._want_port
        sock = pool.socket(pool.AF_INET, pool.SOCK_STREAM)
        try:
            try:
                sock.setsockopt(pool.SOL_SOCKET, pool.SO_REUSEADDR, 1)
            except (OSError, AttributeError):
                pass
            host = self.host if self.host is not None else "0.0.0.0"
            sock.bind(pool.getaddrinfo(host, port)[0][-1])
            sock.listen(self.backlog if self.backlog is not None else self.max_clients + 2)
            sock.settimeout(0)
        except Exception:
            self._close_sock(sock)
            raise
        self._listener = sock
        self.port = port
        self.bound_port = port
        if port == 0:
            try:
                self.bound_port = sock.getsockname()[1]
            except (OSError, AttributeError):
                pass
