"""Modbus requests as a client sends them: MBAP (Modbus TCP) and RTU over TCP. The RTU CRC
is computed bit by bit here, independently of the firmware's table-driven one."""

import struct


def crc_bitwise(data):
    """The Modbus RTU CRC (poly 0xA001, init 0xFFFF), low byte first, as on the wire."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


def rtu(unit, pdu):
    """An RTU-over-TCP frame: unit, PDU, CRC."""
    body = bytes([unit]) + pdu
    return body + crc_bitwise(body)


def mbap(tid, unit, pdu, proto=0, length=None):
    """An MBAP frame; `proto` and `length` can be set wrong on purpose."""
    return struct.pack(">HHHB", tid, proto, len(pdu) + 1 if length is None else length,
                       unit) + pdu


def mbap_read(tid, start=14, count=2, unit=1):
    """MBAP function 03; by default the active power import (40015-40016)."""
    return mbap(tid, unit, struct.pack(">BHH", 3, start, count))
