"""Modbus core under MicroPython: exact bytes, exceptions, and no allocation on the read path."""

import gc
import struct

from han2x_core.modbus import CLOSE, ModbusConnection, crc16
from han2x_core.modbus_pdu import ModbusHandler
from han2x_core.registers import Registers


def _make():
    regs = Registers(firmware_version=10)
    regs.update({"voltage_l1_dv": 2390, "active_power_import_w": 1234,
                 "current_l1_ma": -5000}, 0)
    handler = ModbusHandler(regs)
    return regs, handler, ModbusConnection(handler)


def _put(conn, data):
    conn.rx_len = 0
    assert conn.feed(data, len(data)) == len(data)


def _rtu(unit, pdu):
    body = bytes([unit]) + pdu
    crc = crc16(body, 0, len(body))
    return body + bytes([crc & 0xFF, crc >> 8])


def test_manual_example():
    _, _, conn = _make()
    out = bytearray(260)
    _put(conn, bytes([0x01, 0x03, 0x00, 0x0E, 0x00, 0x02, 0xA5, 0xC8]))
    m = conn.respond(out)
    assert bytes(out[:m]) == bytes([0x01, 0x03, 0x04, 0x00, 0x00, 0x09, 0x56, 0x7C, 0x5D])


def test_mbap_read_write_and_exceptions():
    regs, handler, conn = _make()
    out = bytearray(260)
    _put(conn, struct.pack(">HHHBBHH", 7, 0, 6, 1, 3, 0, 2))
    m = conn.respond(out)
    assert bytes(out[:m]) == struct.pack(">HHHBBBHH", 7, 0, 7, 1, 3, 4, 0, 1234)
    _put(conn, struct.pack(">HHHBBHHBHH", 8, 0, 11, 1, 0x10, 48, 2, 4, 0, 2000))
    m = conn.respond(out)
    assert bytes(out[:m]) == struct.pack(">HHHBBHH", 8, 0, 6, 1, 0x10, 48, 2)
    assert regs.scaling == 2000
    cases = ((struct.pack(">BHH", 3, 0, 0), 3), (struct.pack(">BHH", 3, 102, 1), 2),
             (struct.pack(">BHH", 6, 49, 5), 3), (struct.pack(">BHH", 6, 0, 5), 2),
             (bytes([0x41]), 1))
    for pdu, code in cases:
        _put(conn, struct.pack(">HHHB", 9, 0, len(pdu) + 1, 1) + pdu)
        m = conn.respond(out)
        assert bytes(out[:m]) == struct.pack(">HHHBBB", 9, 0, 3, 1, pdu[0] | 0x80, code)
    _put(conn, struct.pack(">HHHB", 9, 5, 6, 1) + bytes(5))
    assert conn.respond(out) == CLOSE


def test_rtu_device_identification():
    _, _, conn = _make()
    out = bytearray(260)
    _put(conn, _rtu(1, bytes([0x2B, 0x0E, 0x01, 0x00])))
    m = conn.respond(out)
    assert out[1] == 0x2B and out[7] == 3
    crc = crc16(out, 0, m - 2)
    assert out[m - 2] == crc & 0xFF and out[m - 1] == crc >> 8


def _alloc_per_request(conn, request, out, rounds=200):
    rx = conn.rx
    n = len(request)
    for i in range(n):
        rx[i] = request[i]
    conn.rx_len = n
    conn.respond(out)  # warm up
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(rounds):
        conn.rx_len = n  # the server receives straight into rx: nothing to copy
        conn.respond(out)
    return (gc.mem_alloc() - before) / rounds


def test_read_path_allocates_nothing():
    regs, _, conn = _make()
    out = bytearray(260)
    mbap = struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 0, 50)
    assert _alloc_per_request(conn, mbap, out) == 0
    _, _, conn = _make()
    assert _alloc_per_request(conn, _rtu(1, struct.pack(">BHH", 4, 0, 77)), out) == 0
    regs.tick(1000)
    gc.collect()
    before = gc.mem_alloc()
    for t in range(2000, 60000, 7):
        regs.tick(t)
    # tick() runs every loop: integer work only (small ints), nothing kept
    assert gc.mem_alloc() - before < 256, gc.mem_alloc() - before


def test_zz_release_modules():
    """Runs last in this file: drop the Modbus and register modules from the shared heap (the
    runner keeps one process for every file; the files tested later do not need them)."""
    import sys

    import han2x_core

    for name in ("modbus", "modbus_pdu", "registers", "energy", "scaling"):
        sys.modules.pop("han2x_core." + name, None)
        try:
            delattr(han2x_core, name)
        except AttributeError:
            pass
