"""MQTT 3.1.1 packets for a publish-mostly client, the part used while connected: the
PUBLISH header, written into the caller's buffer, and a reader that takes received bytes
and returns whole small packets. CONNECT and SUBSCRIBE, sent once per connection, are
written by mqtt_connect.py (loaded only then) with string() and fixed() from here.

Pure core, sans-I/O (the socket side is mqtt.py). Only what the gateway uses: out, QoS 0
PUBLISH and PINGREQ; in: CONNACK, SUBACK, PINGRESP and QoS 0 PUBLISH. Packet layout: MQTT
3.1.1 (OASIS), sections 2 and 3.
"""

from micropython import const

CONNACK = const(0x20)
PUBLISH = const(0x30)
PINGREQ = b"\xc0\x00"
PINGRESP = const(0xD0)


def string(buf, pos, text):
    """A UTF-8 string with its 2-byte length at buf[pos:]; returns the new position."""
    raw = text.encode() if isinstance(text, str) else text  # allocates: short strings
    n = len(raw)
    buf[pos] = n >> 8
    buf[pos + 1] = n & 0xFF
    buf[pos + 2:pos + 2 + n] = raw
    return pos + 2 + n


def fixed(buf, first, remaining):
    """Fixed header at buf[0:]: packet type byte and the remaining length (1-4 bytes).
    Returns its length."""
    buf[0] = first
    i = 1
    while True:
        byte = remaining & 0x7F
        remaining >>= 7
        buf[i] = byte | (0x80 if remaining else 0)
        i += 1
        if not remaining:
            return i


def text_len(text):
    return len(text.encode()) if isinstance(text, str) else len(text)


def publish_header(buf, topic, payload_len, retain=False):
    """Fixed header and topic of a QoS 0 PUBLISH; the payload follows on the wire as it is
    (no copy of a HAN frame). Returns the header length."""
    body = 2 + text_len(topic) + payload_len
    if 2 + text_len(topic) + 5 > len(buf):
        raise ValueError("MQTT topic too long")
    pos = fixed(buf, PUBLISH | (1 if retain else 0), body)
    return string(buf, pos, topic)


class Reader:
    """Whole packets out of a TCP byte stream, in a fixed buffer. feed(data, n) takes bytes;
    next() returns the first byte of a complete packet (its body is body()), or 0 for "need
    more". A packet longer than the buffer is skipped whole (counted in `skipped`); a
    malformed remaining length raises ValueError (the caller drops the connection)."""

    def __init__(self, size=128):
        self.buf = bytearray(size)
        self._n = 0  # bytes held
        self._skip = 0  # bytes of an oversized packet still to drop
        self._start = 0  # body start of the packet last returned by next()
        self._end = 0  # its end; dropped from the buffer at the next call
        self.skipped = 0

    def feed(self, data, n):
        """Take data[0:n]; returns how many were taken. When fewer than n, take packets
        with next() until it returns 0, then feed the rest."""
        self._drop()
        pos = 0
        if self._skip:
            pos = self._skip if self._skip < n else n
            self._skip -= pos
        room = len(self.buf) - self._n
        take = n - pos if n - pos < room else room
        for i in range(take):  # a byte loop: slices of memoryviews allocate on the board
            self.buf[self._n + i] = data[pos + i]
        self._n += take
        return pos + take

    def next(self):
        self._drop()
        buf = self.buf
        length = 0
        shift = 0
        i = 1
        while True:
            if i >= self._n:
                return 0
            byte = buf[i]
            length |= (byte & 0x7F) << shift
            i += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise ValueError("MQTT: bad remaining length")
        if i + length > len(buf):  # too big to hold: drop it as it streams past
            self.skipped += 1
            self._skip = i + length - self._n
            self._reset()
            return 0
        if i + length > self._n:
            return 0
        self._start = i
        self._end = i + length
        return buf[0]

    def body(self):
        return memoryview(self.buf)[self._start:self._end]  # allocates: a view per packet

    def _reset(self):
        self._n = self._start = self._end = 0

    def _drop(self):
        end = self._end
        if end:
            buf = self.buf
            rest = self._n - end
            for i in range(rest):
                buf[i] = buf[end + i]
            self._n = rest
            self._start = self._end = 0

    def clear(self):
        self._reset()
        self._skip = 0


def publish_topic(body):
    """(topic bytes view, payload view) of a QoS 0 PUBLISH body."""
    n = (body[0] << 8) | body[1]
    return body[2:2 + n], body[2 + n:]
