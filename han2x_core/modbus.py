"""Modbus server framing, sans-I/O: MBAP (Modbus TCP) and RTU frames over TCP.

Governed by Modbus Messaging on TCP/IP 1.0b; RTU framing and CRC from Modbus over Serial
Line 1.02. One ModbusConnection per client detects the framing from its first frame and
hands each request PDU to a shared ModbusHandler (modbus_pdu.py: the function codes).
No allocation on the read path.
"""

import struct

from micropython import const

from han2x_core.crc import crc_modbus as crc16

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
        rtu = _rtu_length(rx, 0, n)
        rtu_done = False
        if rtu > 0 and rtu <= n and rtu <= _RTU_MAX:
            rtu_done = _rtu_ok(rx, 0, rtu)
        elif rtu == 0 and n >= 4:
            rtu_done = _rtu_ok(rx, 0, n)
            rtu = n
        mbap = n < 6 or (rx[2] == 0 and rx[3] == 0 and rx[4] == 0 and 2 <= rx[5] <= 254)
        if n >= 4 and (rx[2] or rx[3]):
            mbap = False
        mbap_done = mbap and n >= 6 and n >= 6 + rx[5]
        if rtu_done and mbap_done:
            # Both readings fit: prefer the one that explains the whole segment.
            return MODE_MBAP if n == 6 + rx[5] and rtu != n else MODE_RTU
        if rtu_done:
            return MODE_RTU
        if mbap_done:
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
            # Unknown function: the frame ends where the CRC matches (then exception 01).
            if n >= 4 and _rtu_ok(rx, 0, n):
                length = n
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
