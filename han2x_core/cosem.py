"""A-XDR decoding of the DLMS/COSEM data-notification pushed by AMS meters (sans-I/O).

Data types and encodings per IEC 62056-6-2 / the DLMS Blue Book (tag byte, A-XDR length,
big-endian integers). The walkers work on positions in the caller's buffer and return
positions or ints, so stepping through a list allocates nothing.
"""

from micropython import const

from han2x_core import DecodeError

T_NULL = const(0x00)
T_ARRAY = const(0x01)
T_STRUCTURE = const(0x02)
T_OCTET_STRING = const(0x09)
T_VISIBLE_STRING = const(0x0A)
T_UTF8_STRING = const(0x0C)
T_INTEGER = const(0x0F)
T_ENUM = const(0x16)

_MAX_DEPTH = const(6)  # Aidon needs 3 (array > structure > scaler-unit structure)

# Content size of fixed-size types, by tag; 0xFF = has a length byte, 0xFE = unsupported.
# 00 null, 03 boolean, 05/06 32-bit, 0D bcd, 0F/11 8-bit, 10/12 16-bit, 14/15 64-bit,
# 16 enum, 17/18 floats, 19 date-time, 1A date, 1B time.
_SIZES = (
    b"\x00\xff\xff\x01\xff\x04\x04\xfe\xfe\xff\xff\xfe\xff\x01\xfe\x01"
    b"\x02\x01\x02\xfe\x08\x08\x01\x04\x08\x0c\x05\x04"
)


_POW10 = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000)


def scale(value, shift):
    """value * 10**shift in integers (scaler-unit), rounded half away from zero if shift < 0."""
    if shift == 0:
        return value
    if shift > 9 or shift < -9:
        raise DecodeError("scaler 10^%d out of range" % shift)
    if shift > 0:
        return value * _POW10[shift]
    d = _POW10[-shift]
    if value < 0:
        return -((d // 2 - value) // d)
    return (value + d // 2) // d


def length_at(buf, pos, end):
    """A-XDR length at pos: the length value. See length_size for how many bytes it took."""
    if pos >= end:
        raise DecodeError("truncated: length byte missing at %d" % pos)
    n = buf[pos]
    if n < 0x80:
        return n
    k = n & 0x7F
    if k == 0 or k > 2 or pos + k >= end:
        raise DecodeError("bad length encoding 0x%02X at %d" % (n, pos))
    n = 0
    for i in range(pos + 1, pos + 1 + k):
        n = n << 8 | buf[i]
    return n


def length_size(buf, pos):
    """Bytes taken by the A-XDR length at pos (1, 2 or 3)."""
    n = buf[pos]
    return 1 if n < 0x80 else 1 + (n & 0x7F)


def item_end(buf, pos, end, depth=0):
    """Position just after the data item whose tag is at pos; DecodeError if it overruns end."""
    if pos >= end:
        raise DecodeError("truncated: data item missing at %d" % pos)
    tag = buf[pos]
    size = _SIZES[tag] if tag < len(_SIZES) else 0xFE
    if size < 0xFE:
        p = pos + 1 + size
    elif size == 0xFE:
        raise DecodeError("unsupported data type 0x%02X at %d" % (tag, pos))
    else:
        n = length_at(buf, pos + 1, end)
        p = pos + 1 + length_size(buf, pos + 1)
        if tag == T_ARRAY or tag == T_STRUCTURE:
            if depth >= _MAX_DEPTH:
                raise DecodeError("data nested too deep at %d" % pos)
            for _ in range(n):
                p = item_end(buf, p, end, depth + 1)
            return p
        if tag == 0x04:  # bit-string: length in bits
            n = (n + 7) >> 3
        p += n
    if p > end:
        raise DecodeError("truncated: data item at %d runs past the end" % pos)
    return p


def content_pos(buf, pos):
    """Position of the first content byte of the string/array/structure whose tag is at pos."""
    return pos + 1 + length_size(buf, pos + 1)


def read_int(buf, pos):
    """Value of the integer-typed item (any signed/unsigned width, or enum) at pos, else None.

    The caller has already checked with item_end that the item lies inside the buffer.
    """
    tag = buf[pos]
    if tag == 0x06 or tag == 0x12 or tag == 0x11 or tag == T_ENUM or tag == 0x15:
        signed = False
    elif tag == 0x05 or tag == 0x10 or tag == T_INTEGER or tag == 0x14:
        signed = True
    else:
        return None
    size = _SIZES[tag]
    v = 0
    for i in range(pos + 1, pos + 1 + size):
        v = v << 8 | buf[i]
    if signed and buf[pos + 1] & 0x80:
        v -= 1 << (8 * size)
    return v


def read_datetime(buf, p):
    """Dict {year, month, day, hour, minute, second} from the 12 date-time bytes at p.

    None when a field is 'not specified' (0xFF / 0xFFFF) or out of range. Weekday,
    hundredths, deviation and status are not returned: the meters fill them unreliably.
    """
    year = buf[p] << 8 | buf[p + 1]
    month = buf[p + 2]
    day = buf[p + 3]
    hour = buf[p + 5]
    minute = buf[p + 6]
    second = buf[p + 7]
    if (year == 0xFFFF or not 1 <= month <= 12 or not 1 <= day <= 31 or hour > 23
            or minute > 59 or second > 59):
        return None
    return {"year": year, "month": month, "day": day, "hour": hour, "minute": minute,
            "second": second}


def read_text(buf, p, n):
    """The n bytes at p as a str; bytes outside printable ASCII become '?'."""
    b = bytearray(n)  # allocates: the result string needs its own copy anyway
    for i in range(n):
        c = buf[p + i]
        b[i] = c if 0x20 <= c < 0x7F else 0x3F
    return b.decode()

