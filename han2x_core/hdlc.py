"""HDLC frame reader for the AMS HAN port: bytes in, validated frames out (sans-I/O).

IEC 62056-46 / DLMS Green Book ch. 8, frame format type 3: 7E, A<len:11 bits>, addresses,
control, HCS, information, FCS, 7E. CRCs are CRC-16/X.25. The meters do NOT byte-stuff:
0x7E and 0x7D occur raw inside frames, so frames are cut by the length field, never at flags.
"""

from micropython import const

from han2x_core.crc import crc_x25 as crc16

_FLAG = const(0x7E)
_MAX_FRAME = const(2049)  # 11-bit length field (2047) + the two flags
_CAP = const(2560)  # receive buffer: one largest frame plus room to keep feeding
# Shortest frame we accept: format 2 + dest 1 + src 1 + control 1 + HCS 2 + info 1 + FCS 2.
_MIN_LENGTH = const(10)
_SMALL = const(32)  # feeds up to this size are copied bytewise (no memoryview object)

# check_frame() results below zero; decode_frame turns them into messages.
ERR_FLAGS = const(-1)
ERR_FORMAT = const(-2)
ERR_LENGTH = const(-3)
ERR_ADDRESS = const(-4)
ERR_HCS = const(-5)
ERR_FCS = const(-6)


_ERROR_TEXT = (
    "",
    "not one complete frame: it must start and end with the flag 0x7E",
    "frame format is not HDLC type 3 (first byte after the flag must be 0xA_)",
    "the frame's length field does not match the frame's size",
    "bad HDLC address field",
    "header checksum (HCS) mismatch",
    "frame checksum (FCS) mismatch",
)


def error_text(code):
    """English message for a negative check_frame result."""
    return _ERROR_TEXT[-code]


def hcs_pos(buf, s, avail, total):
    """Index of the HCS of the frame whose opening flag is at s.

    0 = need more bytes (avail is the end of the data present), -1 = not a valid header.
    Address fields are 1..4 bytes; every byte but the last has LSB 0 (Green Book 8.4.2).
    """
    i = s + 3
    for _ in range(2):  # destination, then source address
        k = 0
        while True:
            if i >= avail:
                return 0
            k += 1
            if buf[i] & 1:
                break
            if k == 4:
                return -1
            i += 1
        i += 1
    h = i + 1  # skip the control byte
    if h + 2 >= s + total - 3:  # no room for an information field before the FCS
        return -1
    if h + 2 > avail:
        return 0
    return h


def check_frame(frame, n):
    """Validate one whole frame frame[0:n] (flag to flag).

    Returns the index of the first information-field byte (after the HCS), or one of the
    negative ERR_* codes. Never raises for any bytes-like input.
    """
    if n < _MIN_LENGTH + 2:
        return ERR_LENGTH
    if frame[0] != _FLAG or frame[n - 1] != _FLAG:
        return ERR_FLAGS
    f = frame[1]
    if f & 0xF0 != 0xA0:
        return ERR_FORMAT
    if ((f & 7) << 8 | frame[2]) + 2 != n:
        return ERR_LENGTH
    h = hcs_pos(frame, 0, n, n)
    if h <= 0:
        return ERR_ADDRESS
    if crc16(frame, 1, h) != frame[h] | frame[h + 1] << 8:
        return ERR_HCS
    if crc16(frame, 1, n - 3) != frame[n - 3] | frame[n - 2] << 8:
        return ERR_FCS
    return h + 2


class HdlcReader:
    """Cuts a HAN byte stream into validated HDLC frames. Memory is fixed at construction.

    feed(buf, n) copies up to n bytes and returns how many it took (fewer when its buffer
    is full: drain next_frame() and feed the rest). next_frame() returns the length of the
    next valid frame, now in self.frame[0:length] (flag to flag), or 0 = need more data.
    self.frame is the receive buffer itself, the frame moved to its front: valid until the
    next feed() or next_frame() (one buffer of 2.5 KB, no second one for the frame).
    Garbage, truncated frames and CRC failures are skipped and counted, never raised.
    discarded_bytes counts dropped bytes other than 0x7E (flags are idle fill).
    """

    def __init__(self):
        self._buf = bytearray(_CAP)
        self._mv = memoryview(self._buf)
        self._start = 0  # first byte not yet consumed
        self._end = 0  # one past the last byte fed
        self.frame = self._buf  # next_frame() moves each valid frame to its front
        self.frames_ok = 0
        self.hcs_errors = 0
        self.fcs_errors = 0
        self.discarded_bytes = 0

    def reset(self):
        """Forget buffered bytes (e.g. after a line-setting change). Counters are kept."""
        self._start = 0
        self._end = 0

    def buffered(self):
        """Number of bytes fed but not yet consumed."""
        return self._end - self._start

    def feed(self, buf, n):
        """Copy up to n bytes of buf (bytes, bytearray or memoryview); return how many."""
        if n <= 0:
            return 0
        if self._start == self._end:
            self._start = 0
            self._end = 0
        elif self._start and _CAP - self._end < n:
            # Compact: move the unconsumed tail to the front (memmove, no data copy).
            k = self._end - self._start
            self._mv[0:k] = self._mv[self._start:self._end]  # allocates two small views
            self._start = 0
            self._end = k
        free = _CAP - self._end
        if free <= 0:
            return 0
        k = n if n < free else free
        e = self._end
        if k == len(buf):
            self._mv[e:e + k] = buf
        elif k <= _SMALL:  # the usual UART trickle: copy bytewise, allocate nothing
            dst = self._buf
            for i in range(k):
                dst[e + i] = buf[i]
        else:
            self._mv[e:e + k] = memoryview(buf)[0:k]  # allocates a small view
        self._end = e + k
        return k

    def next_frame(self):
        """Length of the next validated frame (now in self.frame[0:length], until the next
        feed() or next_frame()), or 0 = need more data."""
        buf = self._buf
        s = self._start
        e = self._end
        while True:
            # Hunt for a flag.
            g = s
            while s < e and buf[s] != _FLAG:
                s += 1
            if s != g:
                self.discarded_bytes += s - g
            if e - s < 3:
                self._start = s
                return 0
            f = buf[s + 1]
            if f & 0xF0 != 0xA0:  # idle flag, second flag of a pair, or noise
                s += 1
                continue
            total = ((f & 7) << 8 | buf[s + 2]) + 2
            if total < _MIN_LENGTH + 2:
                s += 1
                continue
            h = hcs_pos(buf, s, e, total)
            if h == 0:
                self._start = s
                return 0
            if h < 0:
                s += 1
                continue
            if crc16(buf, s + 1, h) != buf[h] | buf[h + 1] << 8:
                self.hcs_errors += 1
                s += 1
                continue
            if e - s < total:
                self._start = s
                return 0
            last = s + total - 1
            if buf[last] != _FLAG:  # truncated frame: resume hunting after its flag
                s += 1
                continue
            if crc16(buf, s + 1, last - 2) != buf[last - 2] | buf[last - 1] << 8:
                self.fcs_errors += 1
                s += 1
                continue
            if s:  # the frame to the front, with what follows it (memmove)
                self._mv[0:e - s] = self._mv[s:e]  # allocates two small views
                last -= s
                self._end = e - s
            self.frames_ok += 1
            self._start = last  # the closing flag may open the next frame
            return total
