"""Table-driven reflected CRC-16s: CRC-16/X.25 (HDLC HCS/FCS, IEC 62056-46) and the
Modbus RTU CRC (Modbus over serial line V1.02 §6.2). Tables are built once, 512 bytes each.
"""

from array import array


def _table(poly):
    table = array("H", [0] * 256)
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table[i] = crc
    return table


_X25 = _table(0x8408)  # 0x1021 reflected
_MODBUS = _table(0xA001)  # 0x8005 reflected


def _crc(table, buf, start, end):
    crc = 0xFFFF
    for i in range(start, end):
        crc = (crc >> 8) ^ table[(crc ^ buf[i]) & 0xFF]
    return crc


def crc_x25(buf, start, end):
    """CRC-16/X.25 of buf[start:end] (init 0xFFFF, final XOR 0xFFFF); sent low byte first."""
    return _crc(_X25, buf, start, end) ^ 0xFFFF


def crc_modbus(buf, start, end):
    """Modbus RTU CRC-16 of buf[start:end] (init 0xFFFF, no final XOR); sent low byte first."""
    return _crc(_MODBUS, buf, start, end)


def modbus_frame_end(buf, start, end):
    """Length of the shortest RTU frame at buf[start:end] (at least 4 bytes: unit, function,
    CRC) whose last two bytes are the Modbus CRC of the bytes before them; 0 if none. One
    pass: for frames whose length the function code does not tell."""
    table = _MODBUS
    crc = 0xFFFF
    for i in range(start, end - 2):
        crc = (crc >> 8) ^ table[(crc ^ buf[i]) & 0xFF]
        if i > start and buf[i + 1] == crc & 0xFF and buf[i + 2] == crc >> 8:
            return i + 3 - start
    return 0
