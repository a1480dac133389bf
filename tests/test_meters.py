"""decode_frame against every captured frame, plus edited frames for the layout rules."""

import pytest

from han2x_core import DecodeError, decode_frame
from han2x_core.meters import KEYS
from han2x_core.hdlc import crc16
from support.hanframes import by_id, corpus, header_len, info_of, reframe

CORPUS = corpus()
NUMERIC = [k for k in KEYS if k.endswith(("_w", "_var", "_ma", "_dv", "_wh", "_varh"))]


@pytest.mark.parametrize("entry,frame", CORPUS, ids=[e["id"] for e, _ in CORPUS])
def test_corpus_frame_decodes_to_expected(entry, frame):
    r = decode_frame(frame)
    for key, value in entry["expected"].items():
        assert r[key] == value, key
    assert r["meter"] == entry["id"].split("-")[0]
    if entry["list"] != "SE":
        assert r["list"] == int(entry["list"])
    for key in NUMERIC:
        assert r[key] is None or type(r[key]) is int


def test_swedish_layouts_are_flagged_outside_the_norwegian_lists():
    lists = {e["id"]: decode_frame(f)["list"] for e, f in CORPUS if e["list"] == "SE"}
    assert len(lists) == 4
    for name, list_no in lists.items():
        if name.startswith("kaifa-ma304h4d"):
            assert list_no == 3  # same 18-item positional layout as Norwegian list 3
        else:
            assert list_no is None  # OBIS-coded Kaifa list, Aidon with per-phase powers


def test_reading_has_exactly_the_documented_keys():
    r = decode_frame(CORPUS[0][1])
    expected_keys = set(CORPUS[0][0]["expected"]) | {"meter", "list"}
    assert set(r) == expected_keys


def test_accepts_bytearray_and_memoryview():
    entry, f = by_id("aidon-6534-l3")
    assert decode_frame(bytearray(f)) == decode_frame(memoryview(f)) == decode_frame(f)


def test_aidon_list3_carries_meter_clock_for_repeat_detection():
    for e, f in CORPUS:
        if e["id"].startswith("aidon") and e["list"] == "3":
            r = decode_frame(f)
            assert r["meter_clock_source"] == "clock_object"
            assert r["meter_clock"]["minute"] == 0 and r["meter_clock"]["second"] == 0


def test_negative_aidon_current():
    _, f = by_id("aidon-6515-l2")
    info = bytearray(info_of(f))
    i = info.find(bytes.fromhex("0601001f0700ff10"))
    info[i + 8:i + 10] = b"\xff\xa3"  # -93 -> -9.3 A
    r = decode_frame(reframe(f, info))
    assert r["current_l1_ma"] == -9300


@pytest.mark.parametrize("edit,message", [
    (lambda f: f[:-5] + f[-4:], "length"),
    (lambda f: f[:-3] + bytes([f[-3] ^ 1]) + f[-2:], "FCS"),
    (lambda f: f[:5] + bytes([f[5] ^ 0x10]) + f[6:], "HCS"),
    (lambda f: f[1:], "flag"),
    (lambda f: b"\x7e\xa1" + f[2:], "length"),
    (lambda f: b"\x7e\xb0" + f[2:], "type 3"),
    (lambda f: b"", "length"),
    (lambda f: b"\x7e\x7e", "length"),
])
def test_bad_frames_raise_decode_error(edit, message):
    _, f = by_id("kaifa-ma304h3e-l2")
    with pytest.raises(DecodeError) as exc:
        decode_frame(edit(f))
    assert message in str(exc.value)
    assert isinstance(exc.value, ValueError)


def _edited(prefix, old_hex, new_hex):
    _, f = by_id(prefix)
    info = bytes(info_of(f))
    old, new = bytes.fromhex(old_hex), bytes.fromhex(new_hex)
    assert old in info
    return reframe(f, info.replace(old, new, 1))


def test_encrypted_frame_is_reported():
    _, f = by_id("kaifa-ma304h3e-l1")
    info = bytes(info_of(f))
    with pytest.raises(DecodeError, match="encrypted"):
        decode_frame(reframe(f, info[:3] + b"\xdb" + info[4:]))


def test_missing_llc_and_unknown_apdu():
    _, f = by_id("kaifa-ma304h3e-l1")
    info = bytes(info_of(f))
    with pytest.raises(DecodeError, match="LLC"):
        decode_frame(reframe(f, b"\xe6\xe6\x00" + info[3:]))
    with pytest.raises(DecodeError, match="data-notification"):
        decode_frame(reframe(f, info[:3] + b"\x0e" + info[4:]))


def test_trailing_bytes_and_truncated_body():
    _, f = by_id("kaifa-ma304h3e-l2")
    info = bytes(info_of(f))
    with pytest.raises(DecodeError, match="unexpected bytes"):
        decode_frame(reframe(f, info + b"\x00"))
    with pytest.raises(DecodeError, match="truncated"):
        decode_frame(reframe(f, info[:-3]))


def test_unknown_kaifa_item_count_is_unknown_layout():
    _, f = by_id("kaifa-ma304h3e-l2")
    info = bytearray(info_of(f))
    i = info.find(b"\x02\x0d\x09\x07")
    info[i + 1] = 0x0C
    cut = info.rfind(b"\x06\x00\x00\x09\x5c")  # drop the last value: 12 items
    with pytest.raises(DecodeError, match="unknown layout"):
        decode_frame(reframe(f, info[:cut]))


def test_kaifa_positional_wrong_types_is_unknown_layout():
    # list version sent as a number instead of a string
    f = _edited("kaifa-ma304h3e-l2", "09074b464d5f303031", "0600000001" + "06000000000000")
    with pytest.raises(DecodeError):
        decode_frame(f)


def test_aidon_unexpected_unit_raises():
    # active power import with unit 0x1E (Wh) instead of 0x1B (W)
    f = _edited("aidon-6525-l1", "02020f00161b", "02020f00161e")
    with pytest.raises(DecodeError, match="unit"):
        decode_frame(f)


def test_aidon_scaler_is_applied():
    # scaler 0 -> 1 on list 1 power: 1696 * 10 W
    f = _edited("aidon-6525-l1", "02020f00161b", "02020f01161b")
    assert decode_frame(f)["active_power_import_w"] == 16960
    # scaler -1 -> -2 on voltage: 0.01 V sent, 0.1 V reported (rounded)
    f = _edited("aidon-6534-l2", "1209150202", "1209150202")
    base = decode_frame(f)["voltage_l1_dv"]
    f = _edited("aidon-6534-l2", "12091502020fff1623", "12091502020ffe1623")
    assert decode_frame(f)["voltage_l1_dv"] == (base + 5) // 10


def test_unknown_obis_code_is_skipped_and_list_unknown():
    # Kamstrup 10-s list with C.D.E 1.7.0 P+ changed to 0.0.1 (a code we do not know)
    f = _edited("kamstrup-6841121bn243101040-l2", "09060101010700ff", "09060101000001ff")
    r = decode_frame(f)
    assert r["active_power_import_w"] is None
    assert r["meter_id"] == "5706567274389702"
    assert r["list"] is None


def test_kamstrup_single_phase_null_placeholders():
    entry, f = by_id("kamstrup-6841121bn243101040-l2")
    info = bytes(info_of(f))
    for obis in ("0101330700ff", "0101470700ff", "0101340700ff", "0101480700ff"):
        i = info.find(bytes.fromhex("0906" + obis))
        j = i + 8
        vlen = 5 if info[j] == 0x06 else 3
        info = info[:i] + b"\x00\x00" + info[j + vlen:]
    r = decode_frame(reframe(f, info))
    e = entry["expected"]
    assert r["current_l2_ma"] is None and r["voltage_l3_dv"] is None
    assert r["current_l1_ma"] == e["current_l1_ma"]
    assert r["voltage_l1_dv"] == e["voltage_l1_dv"]
    assert r["list"] == 2 and r["list_items"] == 25


def test_kamstrup_omitted_objects_single_phase():
    entry, f = by_id("kamstrup-6841121bn243101040-l2")
    info = bytes(info_of(f))
    for obis in ("0101330700ff", "0101470700ff", "0101340700ff", "0101480700ff"):
        i = info.find(bytes.fromhex("0906" + obis))
        j = i + 8
        vlen = 5 if info[j] == 0x06 else 3
        info = info[:i] + info[j + vlen:]
    i = info.find(b"\x02\x19\x0a")
    info = info[:i] + b"\x02\x11" + info[i + 2:]
    r = decode_frame(reframe(f, info))
    assert r["current_l3_ma"] is None and r["voltage_l2_dv"] is None
    assert r["active_power_import_w"] == entry["expected"]["active_power_import_w"]
    assert r["list_items"] == 17


def test_kamstrup_ct_meter_currents_not_guessed():
    f = _edited("kamstrup-6841121bn243101040-l2", "0a123638343131", "0a123638353131")
    r = decode_frame(f)
    assert r["meter_type"].startswith("685")
    assert r["current_l1_ma"] is None and r["active_power_import_w"] == 1551


def test_obis_list_of_unknown_vendor_raises():
    f = _edited("kaifa-ma304h4-lse", "09074b464d5f303031", "09075858585f303031")
    with pytest.raises(DecodeError, match="unknown layout"):
        decode_frame(f)


def test_unspecified_clock_is_none():
    _, f = by_id("kaifa-ma304h3e-l1")
    info = bytearray(info_of(f))
    info[10:12] = b"\xff\xff"  # year not specified
    r = decode_frame(reframe(f, info))
    assert r["apdu_datetime"] is None and r["meter_clock"] is None
    assert r["meter_clock_source"] is None


def test_segmented_frame_is_reported():
    _, f = by_id("kaifa-ma304h3e-l2")
    seg = bytearray(f)
    seg[1] |= 0x08
    h = 1 + header_len(f)  # HCS position
    hcs = crc16(seg, 1, h)
    seg[h], seg[h + 1] = hcs & 0xFF, hcs >> 8
    fcs = crc16(seg, 1, len(seg) - 3)
    seg[-3], seg[-2] = fcs & 0xFF, fcs >> 8
    with pytest.raises(DecodeError, match="segmented"):
        decode_frame(bytes(seg))


def test_self_describing_list_with_unknown_version_is_meter_unknown():
    entry, f = by_id("aidon-6534-l2")
    f = _edited("aidon-6534-l2", "0a0b4149444f4e5f5630303031", "0a0b5859585f4d5452303030 31".replace(" ", ""))
    r = decode_frame(f)
    assert r["meter"] == "unknown" and r["list"] is None
    assert r["list_version"] == "XYX_MTR0001"
    for key in ("active_power_import_w", "current_l2_ma", "voltage_l3_dv"):
        assert r[key] == entry["expected"][key]


def test_aidon_extreme_scaler_is_an_error_not_a_raw_number():
    f = _edited("aidon-6525-l1", "02020f00161b", "02020f80161b")  # scaler -128
    with pytest.raises(DecodeError, match="scaler"):
        decode_frame(f)


def test_positional_list_with_unknown_version_is_not_guessed():
    f = _edited("kaifa-ma304h3e-l2", "09074b464d5f303031", "0907585858303031" + "31")
    with pytest.raises(DecodeError, match="positional list with list version 'XXX0011'"):
        decode_frame(f)
