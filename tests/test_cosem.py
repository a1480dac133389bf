"""A-XDR walker: data types, lengths, date-time, and its failure modes."""

import pytest

from han2x_core.cosem import (
    DecodeError, content_pos, item_end, length_at, read_datetime, read_int, read_text,
    scale,
)
from han2x_core.meters import DecodeError as MetersDecodeError
from support.hanframes import by_id, info_of


def test_decode_error_is_one_type_and_a_value_error():
    assert DecodeError is MetersDecodeError
    assert issubclass(DecodeError, ValueError)


@pytest.mark.parametrize("hex_item,value", [
    ("06000011ac", 4524),  # double-long-unsigned
    ("06ffffffff", 0xFFFFFFFF),
    ("05ffffffff", -1),  # double-long
    ("0580000000", -0x80000000),
    ("10ffa3", -93),  # long (Aidon current)
    ("1000 5d".replace(" ", ""), 93),
    ("1209c4", 2500),  # long-unsigned
    ("0fff", -1),  # integer (scaler)
    ("0f01", 1),
    ("11ff", 255),  # unsigned
    ("161b", 27),  # enum
    ("14ffffffffffffffff", -1),  # long64
    ("150000000100000000", 1 << 32),  # long64-unsigned
])
def test_read_int(hex_item, value):
    b = bytes.fromhex(hex_item)
    assert item_end(b, 0, len(b)) == len(b)
    assert read_int(b, 0) == value


def test_read_int_rejects_non_integers():
    for hex_item in ("0903414243", "0a0141", "00", "0301", "1742c80000"):
        b = bytes.fromhex(hex_item)
        assert item_end(b, 0, len(b)) == len(b)
        assert read_int(b, 0) is None


def test_lengths_short_and_long_form():
    assert length_at(b"\x05", 0, 1) == 5
    assert length_at(b"\x81\xc8", 0, 2) == 200
    assert length_at(b"\x82\x01\x2c", 0, 3) == 300
    long_string = b"\x09\x81\x90" + b"x" * 0x90
    assert item_end(long_string, 0, len(long_string)) == len(long_string)
    assert content_pos(long_string, 0) == 3
    for bad in (b"\x80", b"\x83\x00\x00\x01", b"\x82\x01"):
        with pytest.raises(DecodeError):
            length_at(bad, 0, len(bad))


def test_structures_arrays_and_nesting_limit():
    b = bytes.fromhex("0202" "0f01" "161e")  # scaler-unit
    assert item_end(b, 0, len(b)) == len(b)
    deep = b"\x02\x01" * 10 + b"\x00"
    with pytest.raises(DecodeError, match="nested"):
        item_end(deep, 0, len(deep))


@pytest.mark.parametrize("hex_item", ["06000011", "0905414243", "0203060000000106", "", "07",
                                      "1300", "0a"])
def test_truncated_or_unknown_items_raise(hex_item):
    b = bytes.fromhex(hex_item)
    with pytest.raises(DecodeError):
        item_end(b, 0, len(b))


def test_bit_string_length_is_in_bits():
    b = bytes.fromhex("040aff03")  # 10 bits -> 2 bytes
    assert item_end(b, 0, len(b)) == 4


def test_read_datetime():
    b = bytes.fromhex("07e1090d02000006ff80000000")
    assert read_datetime(b, 0) == {"year": 2017, "month": 9, "day": 13, "hour": 0,
                                   "minute": 0, "second": 6}
    for bad in ("ffff090d02000006ff800000", "07e10d0d02000006ff800000",
                "07e1090002000006ff800000", "07e1090d02180006ff800000",
                "07e1090d02003c06ff800000", "07e1090d0200003cff800000"):
        assert read_datetime(bytes.fromhex(bad), 0) is None


def test_read_text_masks_non_printable():
    assert read_text(b"xKFM_001", 1, 7) == "KFM_001"
    assert read_text(b"A\x00\xffB", 0, 4) == "A??B"


def test_whole_aidon_body_walks_to_the_end():
    _, f = by_id("aidon-6534-l3")
    info = info_of(f)
    body = 3 + 5 + 1  # LLC, tag + 4-byte invoke id, 00 = no date-time
    assert item_end(info, body, len(info)) == len(info)


def test_scale_integer_powers_of_ten():
    assert scale(93, 2) == 9300
    assert scale(-93, 2) == -9300
    assert scale(2376, 0) == 2376
    assert scale(23765, -1) == 2377  # half away from zero
    assert scale(-23765, -1) == -2377
    assert scale(23764, -1) == 2376
    with pytest.raises(DecodeError):
        scale(1, 10)
