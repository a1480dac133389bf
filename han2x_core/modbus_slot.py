"""One client slot of the Modbus TCP server: receive, answer, send, per-client timeouts.

A slot is preallocated and reused for every connection it serves: framing state
(modbus.ModbusConnection), a 260-byte answer buffer and a cached memoryview, so a request
costs no allocation. Its socket calls are each in one place, for the W5500's quirks (the
errno sets and the bounded send: netio.py); the listener, accepting and the client budget
are modbus_server.py.
"""

from micropython import const

from han2x_core.modbus import ADU_SIZE, CLOSE, ModbusConnection
from han2x_core.netio import peer_gone, send, would_block
from han2x_core.ticks import ticks_diff

_TYPE_CHECKING = const(0)  # mypy: true (pyproject always_true); the compiler drops the block
if _TYPE_CHECKING:
    from cpmodules import Any

_MAX_FRAMES = const(4)  # requests served per client per poll: fairness
# W5500 Sn_IR bits (datasheet 4.2): data came, the peer closed or reset, a timeout. The chip
# sets RECV on every arrival and only the host clears it (the driver never touches it).
_IR_RECV = const(0x04)
_IR_NEWS = const(0x0E)  # RECV | DISCON | TIMEOUT
_SEND_STALL_MS = const(10000)  # a client whose answer cannot be sent for this long is dropped

# serve() result bits: MORE alone keeps the client; any other bit means close it.
MORE = const(1)  # stopped at the per-poll limit: more frames may be waiting
PEER_CLOSED = const(2)
STALLED = const(4)
TIMED_OUT = const(8)
FRAMING = const(16)  # the stream cannot be trusted (the handler counted it as malformed)


class ClientSlot:
    """One preallocated client slot: reused for every connection it serves."""

    def __init__(self, handler):
        self.sock = None  # type: Any
        self.conn = ModbusConnection(handler)
        self.tx = bytearray(ADU_SIZE)
        self.tx_mv = memoryview(self.tx)
        self.view = None  # cached memoryview of tx[0:view_len]: no allocation per answer
        self.view_len = -1
        self.tx_len = 0
        self.tx_pos = 0
        self.last_rx_ms = 0
        self.since_ms = 0  # when this connection came in
        self.answered = False  # it has sent a whole request (eviction: modbus_server.victim)
        self.stall_ms = 0  # when the pending answer stopped moving
        self.recv_into = True
        # adafruit_wiznet5k: the chip and socket number, so that an idle client costs one
        # Sn_IR read per poll instead of the driver's recv_into() (three register reads,
        # a debug f-string and an OSError object); None on other pools (recv() each poll)
        self.eth = None  # type: Any
        self.num = 0
        self.drained = False  # the last receive found nothing, after RECV was cleared

    def attach(self, sock, now_ms, nodelay=None):
        """Serve sock from now on: non-blocking; nodelay = (level, option) for TCP_NODELAY."""
        try:
            sock.settimeout(0)
        except (OSError, AttributeError):
            pass
        if nodelay is not None:
            try:  # answers go out at once instead of waiting for the previous ACK (Nagle)
                sock.setsockopt(nodelay[0], nodelay[1], 1)
            except (OSError, AttributeError, TypeError, ValueError):
                pass
        self.sock = sock
        self.conn.reset()
        self.tx_len = self.tx_pos = 0
        self.last_rx_ms = self.since_ms = now_ms
        self.answered = False
        self.recv_into = hasattr(sock, "recv_into")  # MicroPython's socket has readinto
        eth = getattr(sock, "_interface", None)  # driver-private (as sockjanitor's _socknum)
        self.eth = eth if hasattr(eth, "read_snir") and hasattr(eth, "write_snir") else None
        self.num = getattr(sock, "_socknum", 0)
        self.drained = False  # a request may be in the chip's buffer already

    def detach(self):
        """Forget the connection; returns its socket (None when the slot was free)."""
        sock = self.sock
        self.sock = None
        self.eth = None
        self.conn.reset()
        self.tx_len = self.tx_pos = 0
        return sock

    def serve(self, now_ms, scratch, send_timeout_s, idle_timeout_ms):
        """Send what is pending, receive, answer up to 4 requests. Returns 0 or result bits;
        socket errors other than 'would block' and 'peer gone' are raised."""
        if self.tx_len:
            if not self.flush(now_ms, send_timeout_s):
                return PEER_CLOSED
            if self.tx_len:
                if ticks_diff(now_ms, self.stall_ms) > _SEND_STALL_MS:
                    return STALLED
                return 0
        conn = self.conn
        if conn.room():
            n = self.recv(scratch)
            if n == 0:
                return PEER_CLOSED
            if n > 0:
                self.last_rx_ms = now_ms
        more = 0
        for _ in range(_MAX_FRAMES):
            m = conn.respond(self.tx)
            if m == CLOSE:
                return FRAMING
            if m == 0:
                break
            self.tx_len = m
            self.tx_pos = 0
            self.stall_ms = now_ms
            self.answered = True
            if not self.flush(now_ms, send_timeout_s):
                return PEER_CLOSED
            if self.tx_len:
                return 0
        else:
            more = MORE
        if ticks_diff(now_ms, self.last_rx_ms) > idle_timeout_ms:
            return more | TIMED_OUT
        return more

    def recv(self, scratch):
        """Receive what is waiting: n > 0 bytes, 0 = peer closed, -1 = nothing now."""
        conn = self.conn
        if conn.rx_len == 0:
            buf = conn.rx  # straight into the frame buffer: no copy in the common case
            size = ADU_SIZE
        else:
            buf = scratch
            size = conn.room()
        eth = self.eth
        if eth is not None:  # W5500: nothing new since the last receive drained it: done
            if self.drained and not eth.read_snir(self.num) & _IR_NEWS:
                return -1
            eth.write_snir(self.num, _IR_RECV)  # before reading: a later arrival sets it
        self.drained = False
        try:
            if self.recv_into:
                n = self.sock.recv_into(buf, size)
            else:
                n = self.sock.readinto(buf, size)  # MicroPython: None when nothing is waiting
        except OSError as e:
            if would_block(e):
                self.drained = True
                return -1
            if peer_gone(e):
                return 0  # reset by the peer: a normal way to leave
            raise
        if n is None:
            return -1
        if n and buf is conn.rx:
            conn.rx_len = n
        elif n:
            conn.feed(buf, n)
        return n

    def flush(self, now_ms, send_timeout_s):
        """Send what the socket takes now; keep the rest for the next poll. False when the
        peer has gone (the caller closes the slot)."""
        sock = self.sock
        while self.tx_pos < self.tx_len:
            if self.tx_pos == 0:
                if self.view_len != self.tx_len:
                    self.view = self.tx_mv[0:self.tx_len]  # allocates once per answer size
                    self.view_len = self.tx_len
                data = self.view
            else:
                data = self.tx_mv[self.tx_pos:self.tx_len]  # allocates (partial send: rare)
            sent = send(sock, data, send_timeout_s)  # wiznet: RuntimeError on timeout -> closed
            if sent < 0:
                return False
            if not sent:
                return True
            self.tx_pos += sent
            self.stall_ms = now_ms
        self.tx_len = self.tx_pos = 0
        return True
