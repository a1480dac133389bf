"""DHCP client state machine (RFC 2131), sans-I/O and never blocking.

build() writes the next DISCOVER/REQUEST into a caller's buffer, receive() parses a reply,
tick() runs the lease timers on the injected millisecond clock. The shell (network.py)
moves the bytes over the W5500's socket 0. Used instead of adafruit_wiznet5k's own client,
which waits up to 5 s per call for an answer and blocks for ~60 s when no server answers.
"""

from micropython import const

from han2x_core.ticks import ticks_add, ticks_diff

IDLE = const(0)  # static address, client stopped
SELECTING = const(1)
REQUESTING = const(2)
BOUND = const(3)
RENEWING = const(4)
REBINDING = const(5)

EV_NONE = const(0)
EV_BOUND = const(1)  # a new lease: apply ip/netmask/gateway/dns
EV_RENEWED = const(2)  # the same lease extended
EV_LOST = const(3)  # lease expired or refused: stop using the address

_DISCOVER = const(1)
_OFFER = const(2)
_REQUEST = const(3)
_ACK = const(5)
_NAK = const(6)
_MAGIC = b"c\x82Sc"
_MAX_RETRY_MS = const(64000)
_REQUEST_TRIES = const(4)
BUF_SIZE = const(340)  # a REQUEST with a 63-character hostname takes 338 bytes


def _put(buf, pos, code, data):
    buf[pos] = code
    buf[pos + 1] = len(data)
    buf[pos + 2:pos + 2 + len(data)] = data
    return pos + 2 + len(data)


class DhcpClient:
    """One interface's DHCP lease. Addresses are 4-byte bytes; None until bound.

    retry_ms: first retransmit interval (RFC 2131: 4 s), doubled up to 64 s while no
    server answers; the client never gives up.
    """

    def __init__(self, mac, hostname, retry_ms=4000):
        self.mac = bytes(mac)
        self.hostname = hostname.encode() if isinstance(hostname, str) else bytes(hostname)
        self.retry_ms = retry_ms
        self.state = IDLE
        self.ip = self.netmask = self.gateway = self.dns = self.server_id = None
        self.lease_s = 0
        self.offers = self.acks = self.naks = self.sent = 0
        self._offer_ip = None
        self._xid = (self.mac[2] << 22 | self.mac[3] << 14 | self.mac[4] << 6 | self.mac[5]) \
            & 0x3FFFFFFF
        self._send_at = 0
        self._interval = retry_ms
        self._tries = 0
        # Lease timers count whole seconds, because leases (days) outlast the tick range.
        self._last_ms = 0
        self._acc_ms = 0
        self._secs = 0
        self._req_secs = 0
        self._t1 = self._t2 = self._end = 0

    def start(self, now_ms):
        """Begin (or restart) discovery now; any lease is forgotten."""
        self._last_ms = now_ms
        self.ip = self.netmask = self.gateway = self.dns = self.server_id = None
        self._enter(SELECTING, now_ms)

    def stop(self):
        self.state = IDLE

    def _enter(self, state, now_ms):
        self.state = state
        self._xid = (self._xid * 1103515245 + 12345 + now_ms) & 0x3FFFFFFF
        self._send_at = now_ms
        self._interval = self.retry_ms
        self._tries = 0

    def due(self, now_ms):
        """True when a message must be sent now (call build() and send it)."""
        return self.state not in (IDLE, BOUND) and ticks_diff(now_ms, self._send_at) >= 0

    @property
    def unicast(self):
        """While renewing, the request goes to the server that gave the lease."""
        return self.state == RENEWING and self.server_id is not None

    def build(self, buf, now_ms):
        """Write the message that is due into buf (BUF_SIZE bytes); return its length."""
        renew = self.state in (RENEWING, REBINDING)
        for i in range(240):
            buf[i] = 0
        buf[0:4] = b"\x01\x01\x06\x00"
        x = self._xid
        buf[4:8] = bytes((x >> 24 & 0xFF, x >> 16 & 0xFF, x >> 8 & 0xFF, x & 0xFF))
        if not self.unicast:
            buf[10] = 0x80  # broadcast replies: the chip still has the fallback address
        if renew and self.ip:
            buf[12:16] = self.ip
        buf[28:34] = self.mac
        buf[236:240] = _MAGIC
        kind = _DISCOVER if self.state == SELECTING else _REQUEST
        pos = _put(buf, 240, 53, bytes((kind,)))
        pos = _put(buf, pos, 61, b"\x01" + self.mac)
        pos = _put(buf, pos, 12, self.hostname[:63])  # settings.validate refuses longer
        pos = _put(buf, pos, 55, b"\x01\x03\x06\x33\x3a\x3b")
        if self.state == REQUESTING:
            pos = _put(buf, pos, 50, self._offer_ip)
            pos = _put(buf, pos, 54, self.server_id)
        buf[pos] = 255
        self.sent += 1
        self._tries += 1
        if self.state == REQUESTING and self._tries > _REQUEST_TRIES:
            self._enter(SELECTING, now_ms)  # the server went quiet: start over
            return self.build(buf, now_ms)
        if self.state == REQUESTING or self.state == SELECTING and self._tries == 1:
            self._req_secs = self._secs
        if renew:  # retry at half the time left, at least every minute (RFC 2131 4.4.5)
            left = (self._t2 if self.state == RENEWING else self._end) - self._secs
            self._interval = min(60000, max(1000, left * 500))
        self._send_at = ticks_add(now_ms, self._interval)
        if not renew:
            self._interval = min(self._interval * 2, _MAX_RETRY_MS)
        return pos + 1

    def receive(self, buf, n, now_ms):
        """Handle one datagram from port 67; returns an EV_* event. Never raises."""
        if n < 244 or buf[0] != 2 or buf[236:240] != _MAGIC or buf[28:34] != self.mac:
            return EV_NONE
        x = self._xid
        if buf[4:8] != bytes((x >> 24 & 0xFF, x >> 16 & 0xFF, x >> 8 & 0xFF, x & 0xFF)):
            return EV_NONE
        kind = mask = router = dns = server = None
        lease = t1 = t2 = None
        pos = 240
        while pos + 1 < n and buf[pos] != 255:
            code = buf[pos]
            if code == 0:
                pos += 1
                continue
            size = buf[pos + 1]
            data = bytes(buf[pos + 2:min(pos + 2 + size, n)])
            pos += 2 + size
            if code == 53 and size == 1:
                kind = data[0]
            elif code == 1 and size == 4:
                mask = data
            elif code == 3 and size >= 4:
                router = data[:4]
            elif code == 6 and size >= 4:
                dns = data[:4]
            elif code == 54 and size == 4:
                server = data
            elif code in (51, 58, 59) and size == 4:
                value = data[0] << 24 | data[1] << 16 | data[2] << 8 | data[3]
                if code == 51:
                    lease = value
                elif code == 58:
                    t1 = value
                else:
                    t2 = value
        yiaddr = bytes(buf[16:20])
        if kind == _OFFER and self.state == SELECTING and yiaddr != bytes(4):
            self.offers += 1
            self._offer_ip = yiaddr
            self.server_id = server or bytes(buf[20:24])
            self._enter(REQUESTING, now_ms)
            self._xid = x  # the REQUEST answers this OFFER: same transaction
            return EV_NONE
        if self.state not in (REQUESTING, RENEWING, REBINDING):
            return EV_NONE
        if kind == _NAK:
            self.naks += 1
            had = self.state != REQUESTING
            self.start(now_ms)
            return EV_LOST if had else EV_NONE
        if kind != _ACK or yiaddr == bytes(4):
            return EV_NONE
        self.acks += 1
        changed = (self.state == REQUESTING or yiaddr != self.ip or mask != self.netmask
                   or router != self.gateway)
        self.ip, self.netmask = yiaddr, mask or b"\xff\xff\xff\x00"
        self.gateway, self.dns = router or bytes(4), dns or router or bytes(4)
        if server:
            self.server_id = server
        lease = lease if lease else 3600
        self.lease_s = lease
        self._t1 = self._req_secs + (t1 if t1 else lease // 2)
        self._t2 = self._req_secs + (t2 if t2 else lease - lease // 8)
        self._end = self._req_secs + lease
        self.state = BOUND
        return EV_BOUND if changed else EV_RENEWED

    def tick(self, now_ms):
        """Advance the lease timers; returns EV_LOST when the lease has run out."""
        d = ticks_diff(now_ms, self._last_ms)
        self._last_ms = now_ms
        if d > 0:
            self._acc_ms += d
            if self._acc_ms >= 1000:
                self._secs += self._acc_ms // 1000
                self._acc_ms %= 1000
        if self.state in (BOUND, RENEWING, REBINDING):
            if self._secs >= self._end:
                self.start(now_ms)
                return EV_LOST
            if self.state != REBINDING and self._secs >= self._t2:
                self._enter(REBINDING, now_ms)
                self._req_secs = self._secs
            elif self.state == BOUND and self._secs >= self._t1:
                self._enter(RENEWING, now_ms)
                self._req_secs = self._secs
        return EV_NONE
