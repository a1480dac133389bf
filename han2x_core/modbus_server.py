"""Modbus TCP server shell: non-blocking, many clients, over any socket pool.

The pool is CPython's or MicroPython's `socket` module, or adafruit_wiznet5k's SocketPool.
This is the listener, accepting and the client budget; each client is a ClientSlot
(modbus_slot.py), framing and function codes are modbus.py and modbus_pdu.py. Budget rules
(W5500: 8 hardware sockets) and the eviction policy are documented in docs/registers.md.
"""

from micropython import const

from han2x_core.modbus import ADU_SIZE
from han2x_core.modbus_pdu import ModbusHandler
from han2x_core.modbus_slot import MORE, PEER_CLOSED, STALLED, TIMED_OUT, ClientSlot
from han2x_core.netio import Listeners
from han2x_core.ticks import ticks_add, ticks_diff

_MAX_ACCEPTS = const(2)  # connections taken per poll
_ACCEPT_EVERY_MS = const(5)  # look for new connections at most this often (netio.due)
_REBIND_MS = const(1000)  # retry a failed bind this often


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
        # backlog: at bind. On the W5500 a connection is taken on the listener's own
        # hardware socket (netio.Listeners.take), never through the driver's accept()
        self._lis = Listeners(pool, None, self._note, _ACCEPT_EVERY_MS)
        self._running = False
        self._bind_retry_ms = None
        self._more = False
        self._scratch = bytearray(ADU_SIZE)
        level = getattr(pool, "IPPROTO_TCP", None)
        option = getattr(pool, "TCP_NODELAY", None)
        self._nodelay = (level, option) if level is not None and option is not None else None
        self._clients = [ClientSlot(self.handler) for _ in range(max_clients)]
        self.client_count = 0
        self.accepted = 0
        self.evicted = 0  # closed to make room for a new client (_victim)
        self.timed_out = 0  # closed after idle_timeout_ms without a request byte
        self.stalled = 0  # closed because their answers could not be sent
        self.closed_by_peer = 0
        self.errors = 0  # socket errors (accept, recv, send, bind)
        self.last_error = ""
        self.report = None  # App.error(where, what), set by the App

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
        """Apply the modbus_* settings and the meter profiles (meterroute.py); a port change
        re-binds within the next poll."""
        timeout_s = settings.get("modbus_idle_timeout_s")
        self.reconfigure(
            port=settings.get("modbus_port"),
            max_clients=settings.get("modbus_max_clients"),
            idle_timeout_ms=None if timeout_s is None else timeout_s * 1000,
            unit_id=settings.get("modbus_unit_id"),
        )
        h = self.handler
        if (h.sunspec is not None or h.routes is not None or settings.get("sunspec_model") or
                settings.get("em24_unit") or settings.get("sdm630_unit")):
            from han2x_core import meterroute  # meter profiles: loaded only when one is on

            meterroute.configure(h, settings)

    def reconfigure(self, port=None, max_clients=None, idle_timeout_ms=None, unit_id=None):
        if port is not None and port != self._want_port:
            self._want_port = port
            self._bind_retry_ms = None
        if max_clients is not None and max_clients >= 1:
            self.max_clients = max_clients
            while len(self._clients) < max_clients:
                self._clients.append(ClientSlot(self.handler))  # allocates (settings change)
        if idle_timeout_ms is not None:
            self.idle_timeout_ms = idle_timeout_ms
        if unit_id is not None:
            self.handler.unit_id = unit_id

    def sockets(self):
        """The listener and client sockets, for a PC loop that waits in select(); allocates."""
        return [c.sock for c in self._clients if c.sock is not None] + self._lis.socks

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
        lis = self._lis
        if not lis.socks or self._want_port != self.port:
            self._maybe_rebind(now_ms)
        if self.client_count > self.max_clients:
            self._shrink()
        if lis.due(now_ms):
            for _ in range(_MAX_ACCEPTS):
                if not self._accept(now_ms):
                    break
            if not lis.socks:  # the last listener took a client: listen again at once
                self._maybe_rebind(now_ms)
            lis.top_up(self.max_clients + 1 - self.client_count, now_ms)
        for c in self._clients:
            if c.sock is None:
                continue
            try:
                r = c.serve(now_ms, self._scratch, self.send_timeout_s, self.idle_timeout_ms)
                if r:
                    self._served(c, r)
            except MemoryError:  # short for now (a page being served): keep the client and
                self._note("client: out of memory")  # its request; the next poll tries again
            except Exception as e:  # noqa: BLE001 - one client's failure never stops the rest
                self._fail(c, e)

    def _served(self, c, r):
        """Act on a ClientSlot.serve() result: note more work; count and close."""
        if r & MORE:
            self._more = True  # stopped at the per-poll limit: more frames may be waiting
        if r & PEER_CLOSED:
            self.closed_by_peer += 1
        elif r & STALLED:
            self.stalled += 1
        elif r & TIMED_OUT:
            self.timed_out += 1
        if r != MORE:  # any other bit, a framing error too (the handler counted it)
            self._close(c)

    # ---- accepting and the listener (each client's socket calls: modbus_slot.py) -----------

    def _accept(self, now_ms):
        """Take one waiting connection; True when one was taken. A failed accept is
        counted by the listeners; poll() binds again if none is left."""
        got = self._lis.accept()
        if got is None:
            return False
        sock = got[0]
        slot = None
        if self.client_count >= self.max_clients:
            slot = self._victim()
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
        slot.attach(sock, now_ms, self._nodelay)
        self.client_count += 1
        self.accepted += 1
        return True

    def _close_sock(self, sock):
        try:
            sock.close()
        except Exception as e:  # noqa: BLE001 - closing must not raise into the loop
            self._note("close: %s" % (e,))

    def _victim(self):
        """The client to close for a new one: a connection that has never sent a whole
        request goes first, the newest of them (a flood of idle connections then evicts its
        own, not a real client waiting between polls); else the longest-idle client."""
        victim = None
        for c in self._clients:
            if c.sock is None:
                continue
            if victim is None:
                victim = c
            elif c.answered != victim.answered:
                if not c.answered:
                    victim = c
            elif c.answered:
                if ticks_diff(c.last_rx_ms, victim.last_rx_ms) < 0:
                    victim = c
            elif ticks_diff(c.since_ms, victim.since_ms) >= 0:
                victim = c
        return victim

    def _shrink(self):
        while self.client_count > self.max_clients:
            victim = self._victim()
            if victim is None:
                break
            self.evicted += 1
            self._close(victim)

    def _close(self, c):
        sock = c.detach()
        if sock is not None:
            self.client_count -= 1
            self._close_sock(sock)

    def _fail(self, c, e):
        self._note("client: %s" % (e,))
        self._close(c)

    def _note(self, text):
        """Count a contained error and hand it to the App (its last_error)."""
        self.errors += 1
        self.last_error = text
        if self.report is not None:
            self.report(self.name, text)

    def _close_listener(self):
        self._lis.close()
        self.bound_port = None

    def _maybe_rebind(self, now_ms):
        if self._bind_retry_ms is not None and ticks_diff(now_ms, self._bind_retry_ms) < 0:
            return
        try:
            self._bind()
            self._bind_retry_ms = None
        except Exception as e:  # noqa: BLE001 - port in use: retry later, keep serving
            self._note("bind %d: %s" % (self._want_port, e))
            self._bind_retry_ms = ticks_add(now_ms, _REBIND_MS)

    def _bind(self):
        self._close_listener()
        port = self._want_port
        host = self.host if self.host is not None else "0.0.0.0"
        lis = self._lis
        lis.backlog = self.backlog if self.backlog is not None else self.max_clients + 2
        lis.open(host, port)
        self.port = port
        self.bound_port = lis.port
