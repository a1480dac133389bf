"""Modbus server framing, sans-I/O: MBAP (Modbus TCP) and RTU frames over TCP.

Governed by Modbus Messaging on TCP/IP 1.0b; RTU framing and CRC from Modbus over Serial
Line 1.02. One ModbusConnection per client detects the framing from its first frame and
hands each request PDU to a shared ModbusHandler (modbus_pdu.py: the function codes).
No allocation on the read path.
"""

import struct

from micropython import const

from han2x_core.crc import crc_modbus as crc16
from han2x_core.crc import modbus_frame_end

ADU_SIZE = const(260)  # MBAP: 7 + 253; RTU: 256

MODE_UNKNOWN = const(0)
MODE_MBAP = const(1)
MODE_RTU = const(2)

CLOSE = const(-1)  # respond() result: a framing error, the server closes the connection

_RTU_MAX = const(256)


def _rtu_length(buf, k, n):
    """Length of an RTU request at buf[k:n]: 0 for an unknown function, -1 = not known yet."""
    if n - k < 2:
        return -1
    fc = buf[k + 1]
    if 1 <= fc <= 6:
        return 8
    if fc == 0x0F or fc == 0x10:
        return 9 + buf[k + 6] if n - k >= 7 else -1
    if fc == 0x16:
        return 10
    if fc == 0x17:
        return 13 + buf[k + 10] if n - k >= 11 else -1
    if fc == 0x2B:
        return 7
    if fc == 7 or fc == 0x0B or fc == 0x0C or fc == 0x11:
        return 4
    return 0


def _rtu_ok(buf, k, length):
    crc = crc16(buf, k, k + length - 2)
    end = k + length
    return buf[end - 2] == crc & 0xFF and buf[end - 1] == crc >> 8


def _rtu_frames(buf, k, n, partial):
    """True when buf[k:n] is RTU frames, each with a matching CRC; with partial, the last
    may be the unfinished start of a request whose function code we know."""
    while k < n:
        length = _rtu_length(buf, k, n)
        if partial and (length < 0 or (length > 0 and k + length > n)):
            return length <= _RTU_MAX
        if length == 0:
            length = modbus_frame_end(buf, k, n)
        if length <= 0 or k + length > n or not _rtu_ok(buf, k, length):
            return False
        k += length
    return True


def _mbap_frames(buf, n, exact):
    """True when buf[0:n] reads as MBAP frames: exact, ending with the segment; else the
    last may be unfinished."""
    k = 0
    while k + 6 <= n:
        if buf[k + 2] or buf[k + 3] or buf[k + 4] or not 2 <= buf[k + 5] <= 254:
            return False
        k += 6 + buf[k + 5]
    if exact:
        return k == n
    return k >= n or not (n - k >= 4 and (buf[k + 2] or buf[k + 3]))


def _mbap_fits(buf):
    """The first MBAP frame's length field is what its function code needs (or the code is
    one we do not know): a frame that is an RTU request's first bytes mostly is not."""
    need = _rtu_length(buf, 6, 6 + buf[5])  # read as RTU: unit, PDU, 2 CRC bytes
    return need == 0 or need == buf[5] + 2


class ModbusConnection:
    """One client's byte stream: framing detection, partial and pipelined frames.

    The server receives into rx (rx_len bytes valid) directly when it is empty, else through
    feed(); respond(out) writes one response ADU into out and returns its length, 0 when it
    needs more bytes, or CLOSE when the stream cannot be trusted any more.
    """

    def __init__(self, handler):
        self.handler = handler
        self.rx = bytearray(ADU_SIZE)
        self.rx_len = 0
        self.mode = MODE_UNKNOWN
        self._waiting = False

    def reset(self):
        """Forget the previous client (slots are reused; nothing is allocated)."""
        self.rx_len = 0
        self.mode = MODE_UNKNOWN
        self._waiting = False

    def room(self):
        return ADU_SIZE - self.rx_len

    def feed(self, buf, n):
        """Append buf[0:n]; returns how many bytes fitted."""
        take = ADU_SIZE - self.rx_len
        if n < take:
            take = n
        rx = self.rx
        p = self.rx_len
        for i in range(take):
            rx[p + i] = buf[i]
        self.rx_len = p + take
        return take

    def _consume(self, length):
        rest = self.rx_len - length
        if rest > 0:
            rx = self.rx
            for i in range(rest):
                rx[i] = rx[length + i]
        self.rx_len = rest if rest > 0 else 0

    def respond(self, out):
        """Handle the next complete frame in rx. Returns response length, 0 or CLOSE."""
        while self.rx_len:
            if self.mode == MODE_UNKNOWN:
                mode = self._detect()
                if mode <= 0:
                    return mode
                self.mode = mode
            if self.mode == MODE_MBAP:
                m = self._mbap(out)
            else:
                m = self._rtu(out)
            if m != 0:
                return m
            # m == 0 after consuming a frame that gets no answer: try the next one.
            if self._waiting:
                return 0
        return 0

    def _detect(self):
        """MODE_MBAP or MODE_RTU once the first frame is recognisable; 0 = wait; CLOSE."""
        rx = self.rx
        n = self.rx_len
        mbap = n < 6 or (rx[2] == 0 and rx[3] == 0 and rx[4] == 0 and 2 <= rx[5] <= 254)
        if n >= 4 and (rx[2] or rx[3]):
            mbap = False
        mbap_done = mbap and n >= 6 and n >= 6 + rx[5]
        rtu = _rtu_length(rx, 0, n)
        rtu_done = False
        if rtu > 0 and rtu <= n and rtu <= _RTU_MAX:
            rtu_done = _rtu_ok(rx, 0, rtu)
        elif rtu == 0 and n >= 4 and (mbap_done or not mbap or (
                n >= 6 and _rtu_frames(rx, 0, n, False))):
            # An unknown function code ends where the CRC first matches. While the bytes
            # can still be the start of an unfinished MBAP request, that needs CRC-valid
            # RTU frames up to the end of at least 6 bytes: the first 4 bytes of a split
            # MBAP request can carry a matching "CRC" (transaction id 0xFFFF: ff ff 00 00).
            end = modbus_frame_end(rx, 0, n if n < _RTU_MAX else _RTU_MAX)
            rtu_done = end > 0
            rtu = end if end else n
        if rtu_done and mbap_done:
            # Both readings fit the first frame. A CRC at the length a known function code
            # gives, or at the end of the segment, is strong evidence: RTU, unless MBAP
            # frames fill the segment exactly and RTU frames do not. A CRC found earlier
            # by trying every length (an unknown function code) is weak: RTU only if more
            # RTU frames fill the rest; else MBAP, if its first frame has the length its
            # function code needs or the bytes read as MBAP frames.
            if rtu == n or _rtu_length(rx, 0, n) > 0:
                if _mbap_frames(rx, n, True) and not _rtu_frames(rx, rtu, n, True):
                    return MODE_MBAP
                return MODE_RTU
            # A CRC that matches exactly where the MBAP frame ends is strong evidence too:
            # then a request's first bytes may follow it.
            if _rtu_frames(rx, rtu, n, rtu == 6 + rx[5]):
                return MODE_RTU
            return MODE_MBAP if _mbap_fits(rx) or _mbap_frames(rx, n, False) else MODE_RTU
        if rtu_done:
            return MODE_RTU
        if mbap_done:
            if rtu > n and rtu <= _RTU_MAX and not _mbap_fits(rx):
                return 0  # more likely the first part of an RTU request: wait for it
            return MODE_MBAP
        if mbap or (rtu < 0) or (rtu > n and rtu <= _RTU_MAX) or (rtu == n and n < 8):
            if n < ADU_SIZE:
                return 0
        self.handler.malformed += 1
        return CLOSE

    def _mbap(self, out):
        self._waiting = False
        rx = self.rx
        n = self.rx_len
        if n < 7:
            self._waiting = True
            return 0
        length = (rx[4] << 8) | rx[5]
        if rx[2] or rx[3] or length < 2 or length > 254:
            self.handler.malformed += 1  # protocol id or length field wrong: cannot resync
            return CLOSE
        total = 6 + length
        if n < total:
            self._waiting = True
            return 0
        h = self.handler
        if not h.accepts(rx[6]):
            h.ignored += 1
            self._consume(total)
            return 0
        m = h.execute(rx, 7, length - 1, out, 7)
        for i in range(4):  # transaction id and protocol id
            out[i] = rx[i]
        struct.pack_into(">HB", out, 4, m + 1, rx[6])
        self._consume(total)
        return 7 + m

    def _rtu(self, out):
        self._waiting = False
        rx = self.rx
        n = self.rx_len
        h = self.handler
        length = _rtu_length(rx, 0, n)
        if length < 0:
            self._waiting = True
            return 0
        if length == 0:
            # Unknown function: the frame ends where the CRC first matches (exception 01).
            end = modbus_frame_end(rx, 0, n if n < _RTU_MAX else _RTU_MAX)
            if end:
                length = end
            elif n >= 8:
                h.malformed += 1
                self._resync()
                return 0
            else:
                self._waiting = True
                return 0
        if length > _RTU_MAX:
            h.malformed += 1
            self._resync()
            return 0
        if n < length:
            self._waiting = True
            return 0
        if not _rtu_ok(rx, 0, length):
            # A serial slave drops a bad frame silently; find where the next one starts.
            h.crc_errors += 1
            self._resync()
            return 0
        if not h.accepts(rx[0]):
            h.ignored += 1
            self._consume(length)
            return 0
        m = h.execute(rx, 1, length - 3, out, 1)
        out[0] = rx[0]
        crc = crc16(out, 0, 1 + m)
        out[1 + m] = crc & 0xFF
        out[2 + m] = crc >> 8
        self._consume(length)
        return 3 + m

    def _resync(self):
        """Drop bytes up to the next place where a known request could start (RTU mode)."""
        rx = self.rx
        n = self.rx_len
        for k in range(1, n):
            length = _rtu_length(rx, k, n)
            if length < 0 or (0 < length <= _RTU_MAX and k + length > n):
                self._consume(k)  # a frame may start here: wait for the rest
                return
            if 0 < length <= _RTU_MAX and _rtu_ok(rx, k, length):
                self._consume(k)
                return
        self.rx_len = 0
