"""Modbus protocol core: exact bytes for every function, exception and malformed input.

Responses are checked byte for byte against frames built here from the Modbus
Application Protocol 1.1b3; the RTU CRC is recomputed bit by bit, independently of modbus.py.
"""

import random
import struct

import pytest

from han2x_core.modbus import CLOSE, MODE_MBAP, MODE_RTU, ModbusConnection
from han2x_core.modbus_pdu import ModbusHandler
from han2x_core.registers import COUNT, Registers
from support.modbus_frames import crc_bitwise, mbap, rtu


# Every test here runs twice: HAN2X alone, and with every meter profile on (units the
# tests do not use): the HAN2X map must answer exactly the same (docs/integration.md).
PROFILES = {"sunspec_model": 213, "em24_unit": 2, "sdm630_unit": 3}


@pytest.fixture(autouse=True, params=[False, True], ids=["han2x", "all-profiles"])
def profiles(request, monkeypatch):
    monkeypatch.setitem(_STATE, "profiles", request.param)
    return request.param


_STATE = {"profiles": False}


def make(unit_id=0, scaling=1000):
    regs = Registers(scaling=scaling, firmware_version=10)
    regs.update({"active_power_import_w": 0x12345, "voltage_l1_dv": 2390,
                 "voltage_l2_dv": 2301, "current_l1_ma": 1500}, 0)
    handler = ModbusHandler(regs, unit_id=unit_id)
    if _STATE["profiles"]:
        from han2x_core import meterroute

        meterroute.configure(handler, dict(PROFILES, modbus_unit_id=unit_id))
        assert handler.sunspec is not None and len(handler.routes) == 2
    return regs, handler, ModbusConnection(handler)


def exchange(conn, data, chunk=None):
    """Feed data (in chunks) and collect every response; CLOSE ends the list."""
    out = bytearray(260)
    answers = []
    pos = 0
    chunk = chunk or len(data) or 1
    while pos < len(data) or not answers or answers[-1] is not CLOSE:
        if pos < len(data):
            piece = data[pos:pos + min(chunk, conn.room())]
            pos += conn.feed(piece, len(piece))
        while True:
            m = conn.respond(out)
            if m == CLOSE:
                answers.append(CLOSE)
                return answers
            if m == 0:
                break
            answers.append(bytes(out[:m]))
        if pos >= len(data):
            break
    return answers


def one(conn, data):
    answers = exchange(conn, data)
    assert len(answers) == 1, answers
    return answers[0]


def test_manual_example_rtu():
    _, _, conn = make()
    assert one(conn, bytes.fromhex("01 03 00 0E 00 02 A5 C8")) == \
        bytes.fromhex("01 03 04 00 00 09 56 7C 5D")
    assert conn.mode == MODE_RTU


def test_manual_example_mbap():
    _, _, conn = make()
    req = mbap(7, 1, bytes.fromhex("03 00 0E 00 02"))
    assert one(conn, req) == mbap(7, 1, bytes.fromhex("03 04 00 00 09 56"))
    assert conn.mode == MODE_MBAP


@pytest.mark.parametrize("fc", [3, 4])
def test_read_holding_and_input_same_registers(fc):
    _, _, conn = make()
    ans = one(conn, mbap(1, 1, bytes([fc, 0, 0, 0, 4])))
    assert ans == mbap(1, 1, bytes([fc, 8]) + bytes.fromhex("0001 2345 0000 0000"))


def test_read_whole_map_and_firmware():
    regs, _, conn = make()
    ans = one(conn, mbap(1, 1, struct.pack(">BHH", 3, 0, COUNT)))
    assert len(ans) == 9 + 2 * COUNT
    assert ans[9 + 2 * 42:9 + 2 * 43] == b"\x00\x0a"
    assert ans[9:] == bytes(regs.image)


@pytest.mark.parametrize("unit", [0, 1, 17, 255])
def test_any_unit_id_by_default(unit):
    _, _, conn = make()
    ans = one(conn, mbap(3, unit, bytes.fromhex("03 00 0F 00 01")))
    assert ans == mbap(3, unit, bytes.fromhex("03 02 09 56"))
    _, _, conn = make()
    ans = one(conn, rtu(unit, bytes.fromhex("03 00 0F 00 01")))
    assert ans == rtu(unit, bytes.fromhex("03 02 09 56"))


def test_restricted_unit_id_drops_others():
    _, handler, conn = make(unit_id=5)
    req = mbap(1, 6, bytes.fromhex("03 00 0F 00 01")) + mbap(2, 5, bytes.fromhex("03 00 0F 00 01"))
    assert exchange(conn, req) == [mbap(2, 5, bytes.fromhex("03 02 09 56"))]
    assert handler.ignored == 1
    _, handler, conn = make(unit_id=5)
    req = rtu(1, bytes.fromhex("03 00 0F 00 01")) + rtu(5, bytes.fromhex("03 00 0F 00 01"))
    assert exchange(conn, req) == [rtu(5, bytes.fromhex("03 02 09 56"))]
    assert handler.ignored == 1


# ---- exceptions ---------------------------------------------------------------------------------

EXCEPTION_CASES = [
    # (request PDU, exception code)
    (bytes.fromhex("01 0000 0001"), 1),  # read coils: not served
    (bytes.fromhex("02 0000 0001"), 1),
    (bytes.fromhex("05 0000 FF00"), 1),
    (bytes.fromhex("0F 0000 0001 01 01"), 1),
    (bytes.fromhex("41"), 1),
    (bytes.fromhex("2B 0D 00 00"), 1),  # MEI type other than 0x0E
    (bytes.fromhex("03 0000 0000"), 3),  # quantity 0
    (bytes.fromhex("03 0000 007E"), 3),  # quantity 126
    (bytes.fromhex("04 0000 FFFF"), 3),
    (bytes.fromhex("03 0000 00"), 3),  # PDU too short
    (bytes.fromhex("03 0000 0001 00"), 3),  # PDU too long
    (bytes.fromhex("03 0066 0001"), 2),  # offset 102: past the map
    (bytes.fromhex("03 0060 0010"), 2),  # runs past the end
    (bytes.fromhex("03 FFFF 0002"), 2),
    (bytes.fromhex("04 FFFF 007D"), 2),
    (bytes.fromhex("06 0000 0001"), 2),  # read-only
    (bytes.fromhex("06 002E 0000"), 2),  # 40047
    (bytes.fromhex("06 0100 0001"), 2),  # past the map
    (bytes.fromhex("06 0031 0005"), 3),  # scaling factor 5
    (bytes.fromhex("06 0030 0010"), 3),  # high word 16: > 1 000 000 whatever the low word
    (bytes.fromhex("06 0031"), 3),
    (bytes.fromhex("10 0030 0002 04 0000 0005"), 3),  # value out of range
    (bytes.fromhex("10 0030 0002 04 0010 0000"), 3),
    (bytes.fromhex("10 0030 0000 00"), 3),  # quantity 0
    (bytes.fromhex("10 0030 007C F8") + bytes(240), 3),  # quantity 124
    (bytes.fromhex("10 0030 0002 03 0000 03"), 3),  # byte count != 2 x quantity
    (bytes.fromhex("10 0030 0002 04 0000"), 3),  # fewer bytes than the count says
    (bytes.fromhex("10 0030"), 3),
    (bytes.fromhex("10 0000 0002 04 0000 03E8"), 2),  # read-only registers
    (bytes.fromhex("10 002E 0004 08 0000 0000 0000 03E8"), 2),  # covers 40047
    (bytes.fromhex("10 FFFF 0002 04 0000 03E8"), 2),
    (bytes.fromhex("16 0000 FFFF 0000"), 2),  # mask write of a read-only register
    (bytes.fromhex("16 0031 0000 0003"), 3),  # mask write making the factor 3
    (bytes.fromhex("16 0031 FFFF"), 3),
    (bytes.fromhex("2B 0E 05 00"), 3),  # read device id code 5
    (bytes.fromhex("2B 0E 00 00"), 3),
    (bytes.fromhex("2B 0E 04 07"), 2),  # individual access to an unknown object
    (bytes.fromhex("2B 0E 01"), 3),
    (bytes.fromhex("2B"), 3),
]


def _rtu_frameable(pdu):
    """An RTU frame's length follows from its function code; cases that lie about it
    (a short or overlong PDU) can only be sent with MBAP, whose header carries a length."""
    rtu_pdu_length = {3: 5, 4: 5, 6: 5, 0x16: 7, 0x2B: 4}.get(pdu[0])
    if pdu[0] == 0x10:
        rtu_pdu_length = 6 + pdu[5] if len(pdu) >= 6 else -1
    return rtu_pdu_length in (None, len(pdu))


EXCEPTION_RUNS = [(p, c, "mbap") for p, c in EXCEPTION_CASES] + [
    (p, c, "rtu") for p, c in EXCEPTION_CASES if _rtu_frameable(p)]


@pytest.mark.parametrize("pdu,code,framing", EXCEPTION_RUNS,
                         ids=["%s-%s" % (f, p.hex()) for p, _, f in EXCEPTION_RUNS])
def test_exceptions(pdu, code, framing):
    regs, handler, conn = make()
    if framing == "mbap":
        ans = one(conn, mbap(0x1234, 1, pdu))
        assert ans == mbap(0x1234, 1, bytes([pdu[0] | 0x80, code]))
    else:
        ans = one(conn, rtu(1, pdu))
        assert ans == rtu(1, bytes([pdu[0] | 0x80, code]))
    assert handler.exceptions == 1 and handler.requests == 1
    assert regs.scaling == 1000


def test_exception_for_high_function_codes():
    _, _, conn = make()
    assert one(conn, mbap(1, 1, b"\x83\x00")) == mbap(1, 1, b"\x83\x01")


# ---- writes ----------------------------------------------------------------------------------

def test_fc06_echo_and_halves():
    changes = []
    regs, _, conn = make()
    regs.on_scaling_change = changes.append
    req = bytes.fromhex("06 0031 07D0")
    assert one(conn, mbap(9, 1, req)) == mbap(9, 1, req)
    assert regs.scaling == 2000 and changes == [2000]
    assert one(conn, mbap(10, 1, bytes.fromhex("03 0000 0002"))) == \
        mbap(10, 1, bytes.fromhex("03 04 0002 468A"))  # 0x12345 x 2
    # Two FC06 writes through an invalid intermediate value (see docs/registers.md).
    regs.configure({"scaling_factor": 100000})
    req = bytes.fromhex("06 0030 000F")
    assert one(conn, mbap(11, 1, req))[7:] == req
    assert regs.scaling == 100000
    req = bytes.fromhex("06 0031 4240")
    assert one(conn, mbap(12, 1, req))[7:] == req
    assert regs.scaling == 1000000


def test_fc16_write_and_response():
    regs, _, conn = make()
    req = bytes.fromhex("10 002C 0002 04 0000 0BB8")  # the mirror at 40045
    assert one(conn, mbap(5, 1, req)) == mbap(5, 1, bytes.fromhex("10 002C 0002"))
    assert regs.scaling == 3000


def test_fc16_rtu():
    regs, _, conn = make()
    req = bytes.fromhex("10 0030 0002 04 0000 0BB8")
    assert one(conn, rtu(1, req)) == rtu(1, bytes.fromhex("10 0030 0002"))
    assert regs.scaling == 3000
    assert one(conn, rtu(1, bytes.fromhex("03 0030 0002"))) == \
        rtu(1, bytes.fromhex("03 04 0000 0BB8"))


def test_mask_write():
    regs, _, conn = make()
    # (1000 AND 0x00FF) OR (0x0700 AND NOT 0x00FF) = 0xE8 | 0x700 = 2024
    req = bytes.fromhex("16 0031 00FF 0700")
    assert one(conn, mbap(1, 1, req)) == mbap(1, 1, req)
    assert regs.scaling == 2024


def test_read_device_identification():
    _, _, conn = make()
    ans = one(conn, mbap(1, 1, bytes.fromhex("2B 0E 01 00")))
    pdu = ans[7:]
    assert pdu[:7] == bytes([0x2B, 0x0E, 1, 0x82, 0, 0, 3])
    objects = parse_objects(pdu)
    from han2x_core import __version__
    assert objects[0] and objects[1] == b"HAN2X" and objects[2] == __version__.encode()
    assert sorted(objects) == [0, 1, 2]
    regular = parse_objects(one(conn, mbap(2, 1, bytes.fromhex("2B 0E 02 00")))[7:])
    assert sorted(regular) == [0, 1, 2, 3, 4, 5, 6]
    single = parse_objects(one(conn, mbap(3, 1, bytes.fromhex("2B 0E 04 01")))[7:])
    assert single == {1: b"HAN2X"}
    # Stream access with an unknown start object restarts at object 0.
    restart = parse_objects(one(conn, mbap(4, 1, bytes.fromhex("2B 0E 01 09")))[7:])
    assert sorted(restart) == [0, 1, 2]
    _, _, conn = make()
    ans = one(conn, rtu(1, bytes.fromhex("2B 0E 01 00")))
    assert ans[-2:] == crc_bitwise(ans[:-2]) and ans[1:3] == b"\x2b\x0e"


def parse_objects(pdu):
    count = pdu[6]
    p = 7
    objects = {}
    for _ in range(count):
        objects[pdu[p]] = bytes(pdu[p + 2:p + 2 + pdu[p + 1]])
        p += 2 + pdu[p + 1]
    assert p == len(pdu)
    return objects


# ---- framing: partial, pipelined, malformed ----------------------------------------------------

READ = bytes.fromhex("03 000E 0002")
ANSWER = bytes.fromhex("03 04 0000 0956")


@pytest.mark.parametrize("framing", ["mbap", "rtu"])
def test_split_at_every_offset_and_byte_by_byte(framing):
    frames = [mbap(i, 1, READ) if framing == "mbap" else rtu(1, READ) for i in range(3)]
    data = b"".join(frames)
    want = [mbap(i, 1, ANSWER) if framing == "mbap" else rtu(1, ANSWER) for i in range(3)]
    for cut in range(1, len(data)):
        _, _, conn = make()
        got = exchange(conn, data[:cut]) + exchange(conn, data[cut:])
        assert got == want, cut
    _, _, conn = make()
    assert exchange(conn, data, chunk=1) == want


@pytest.mark.parametrize("framing", ["mbap", "rtu"])
def test_pipelined_frames_in_one_segment(framing):
    build = (lambda i: mbap(i, 1, READ)) if framing == "mbap" else (lambda i: rtu(1, READ))
    data = b"".join(build(i) for i in range(20))  # more than one rx buffer's worth
    _, handler, conn = make()
    got = exchange(conn, data)
    assert len(got) == 20 and handler.requests == 20


def test_rtu_frame_starting_with_zero_address_is_not_mistaken_for_mbap():
    # 01 03 00 00 00 02 + CRC: bytes 2-3 are 00 00 like an MBAP protocol id.
    _, _, conn = make()
    ans = one(conn, rtu(1, bytes.fromhex("03 0000 0002")))
    assert ans == rtu(1, bytes.fromhex("03 04 0001 2345"))
    assert conn.mode == MODE_RTU


def test_mbap_whose_transaction_id_looks_like_rtu():
    for tid in (0x0103, 0x0003, 0x0110, 0xFF2B, 0x0106):
        _, _, conn = make()
        assert one(conn, mbap(tid, 1, READ)) == mbap(tid, 1, ANSWER), hex(tid)


@pytest.mark.parametrize("data", [
    mbap(1, 1, READ, proto=1),  # protocol id not 0
    mbap(1, 1, READ, length=0),  # length field too small
    mbap(1, 1, READ, length=1),
    mbap(1, 1, READ, length=255),  # too large for a Modbus PDU
    mbap(1, 1, READ, length=0xFFFF),
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # garbage / wrong protocol
    bytes(range(200, 240)),
])
def test_malformed_first_frame_closes(data):
    _, handler, conn = make()
    assert exchange(conn, data) == [CLOSE]
    assert handler.malformed == 1


def test_malformed_later_frame_closes_after_answering_the_good_ones():
    _, handler, conn = make()
    data = mbap(1, 1, READ) + mbap(2, 1, READ, proto=7)
    assert exchange(conn, data) == [mbap(1, 1, ANSWER), CLOSE]
    assert handler.malformed == 1 and handler.requests == 1


def test_mbap_length_field_shorter_than_pdu():
    _, handler, conn = make()
    # Length says 4 (unit + 3 PDU bytes) but 5 PDU bytes follow: exception 03, then the two
    # leftover bytes start a frame that is not a valid header: the connection is closed.
    data = mbap(1, 1, READ, length=4) + mbap(2, 1, READ)
    got = exchange(conn, data)
    assert got[0] == mbap(1, 1, b"\x83\x03", length=3)
    assert got[-1] is CLOSE


def test_mbap_length_field_longer_waits_then_answers_03():
    _, _, conn = make()
    assert exchange(conn, mbap(1, 1, READ, length=8)) == []  # waits for 2 more bytes
    assert exchange(conn, b"\x00\x00") == [mbap(1, 1, b"\x83\x03", length=3)]


def test_oversize_input_is_bounded():
    _, _, conn = make()
    big = mbap(1, 1, bytes([0x10, 0, 0x30, 0, 0x7B, 0xF6]) + bytes(246))  # length 253
    assert len(big) == 259
    assert conn.feed(big + b"xx", len(big) + 2) == 260  # the buffer takes 260, no more
    assert conn.room() == 0
    out = bytearray(260)
    assert out[:conn.respond(out)] == mbap(1, 1, b"\x90\x02", length=3)
    assert conn.rx_len == 1


def test_rtu_bad_crc_is_dropped_and_counted_then_recovers():
    _, handler, conn = make()
    good = rtu(1, READ)
    assert one(conn, good) == rtu(1, ANSWER)
    bad = good[:-1] + bytes([good[-1] ^ 0xFF])
    assert exchange(conn, bad) == []
    assert handler.crc_errors == 1
    assert exchange(conn, good) == [rtu(1, ANSWER)]


def test_rtu_unknown_function_gets_exception_01():
    _, _, conn = make()
    assert one(conn, rtu(1, bytes.fromhex("41 01 02"))) == rtu(1, b"\xc1\x01")
    assert one(conn, rtu(1, bytes.fromhex("08 0000 1234"))) == rtu(1, b"\x88\x01")


def test_rtu_unknown_function_garbage_is_discarded_when_buffer_fills():
    _, handler, conn = make()
    assert one(conn, rtu(1, READ)) == rtu(1, ANSWER)
    junk = bytes([1, 0x41]) + bytes(300)
    assert exchange(conn, junk) == []
    assert handler.malformed >= 1
    assert exchange(conn, rtu(1, READ)) == [rtu(1, ANSWER)]


def test_rtu_fc16_byte_count_too_large_is_discarded():
    _, handler, conn = make()
    assert one(conn, rtu(1, READ)) == rtu(1, ANSWER)
    data = bytes.fromhex("01 10 0030 0002 FF") + bytes(20)
    assert exchange(conn, data) == []
    assert handler.malformed == 1
    assert conn.rx_len <= 1
    assert exchange(conn, rtu(1, READ)) == [rtu(1, ANSWER)]


def test_garbage_half_frame_waits_without_answer():
    _, _, conn = make()
    assert exchange(conn, b"\x00\x01\x00") == []
    assert conn.rx_len == 3


def test_reset_reuses_the_connection_object():
    _, _, conn = make()
    one(conn, rtu(1, READ))
    conn.feed(b"\x01\x03", 2)
    conn.reset()
    assert conn.rx_len == 0 and conn.mode == 0
    assert one(conn, mbap(1, 1, READ)) == mbap(1, 1, ANSWER)


def test_random_input_never_raises():
    rnd = random.Random(1234)
    valid = [mbap(1, 1, READ), rtu(1, READ), mbap(2, 0, bytes.fromhex("06 0031 03E8")),
             rtu(1, bytes.fromhex("10 0030 0002 04 0000 03E8")), mbap(3, 1, b"\x2b\x0e\x01\x00")]
    out = bytearray(260)
    for _ in range(2000):
        regs, handler, conn = make()
        for _ in range(rnd.randint(1, 6)):
            if rnd.random() < 0.5:
                data = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 40)))
            else:
                data = rnd.choice(valid)
            pos = 0
            closed = False
            while pos < len(data) and not closed:
                pos += conn.feed(data[pos:], len(data) - pos)
                for _ in range(300):
                    m = conn.respond(out)
                    if m == CLOSE:
                        closed = True
                        break
                    if m == 0:
                        break
                    assert 0 < m <= 260
                assert closed or conn.room() > 0  # a full buffer is always resolved
            if closed:
                break
        assert 10 <= regs.scaling <= 1000000
