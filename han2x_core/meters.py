"""Norwegian AMS HAN lists (Aidon, Kaifa, Kamstrup) -> one normalised reading dict.

decode_frame(frame) validates one HDLC frame, walks its DLMS data-notification and maps
the vendor layout (Aidon: array of OBIS/value/scaler-unit; Kaifa: positional values;
Kamstrup and Swedish Kaifa: OBIS/value pairs) to integer units: W, var, mA, 0.1 V, Wh,
varh. Facts and sources: docs/meters.md and the project's han-protocol notes.
"""

from micropython import const

from han2x_core.cosem import (
    DecodeError, T_ARRAY, T_STRUCTURE, T_OCTET_STRING, T_VISIBLE_STRING, T_UTF8_STRING,
    T_NULL, T_INTEGER, T_ENUM, content_pos, item_end, length_at, read_datetime, read_int,
    read_text, scale,
)
from han2x_core.hdlc import check_frame, error_text

__all__ = ("decode_frame", "DecodeError", "KEYS")

# Field codes: index into KEYS.
_F_VERSION = const(0)
_F_ID = const(1)
_F_TYPE = const(2)
_F_P_IMPORT = const(3)
_F_CURRENT_L1 = const(7)
_F_VOLTAGE_L1 = const(10)
_F_ENERGY = const(13)  # 13..16: A+, A-, R+, R-
_F_CLOCK = const(17)

_AIDON = const(1)
_KAIFA = const(2)
_KAMSTRUP = const(3)

# The value keys of a reading, in field-code order (KEYS[17] is the clock).
KEYS = (
    "list_version", "meter_id", "meter_type",
    "active_power_import_w", "active_power_export_w",
    "reactive_power_import_var", "reactive_power_export_var",
    "current_l1_ma", "current_l2_ma", "current_l3_ma",
    "voltage_l1_dv", "voltage_l2_dv", "voltage_l3_dv",
    "active_energy_import_wh", "active_energy_export_wh",
    "reactive_energy_import_varh", "reactive_energy_export_varh",
    "meter_clock",
)
_METERS = ("unknown", "aidon", "kaifa", "kamstrup")

# OBIS C.D.E -> field code. Groups A and B are ignored: the same quantity arrives as 1-0
# (Aidon, Kaifa) and 1-1 (Kamstrup). Codes not listed here are skipped.
_OBIS = {
    0x000281: _F_VERSION,  # 0.2.129 list version identifier
    0x600100: _F_ID,  # 96.1.0 meter id (Aidon, Kaifa)
    0x000005: _F_ID,  # 0.0.5 meter id (Kamstrup)
    0x600107: _F_TYPE,  # 96.1.7 meter type (Aidon, Kaifa)
    0x600101: _F_TYPE,  # 96.1.1 meter type (Kamstrup)
    0x010700: 3, 0x020700: 4, 0x030700: 5, 0x040700: 6,  # P+, P-, Q+, Q-
    0x1F0700: 7, 0x330700: 8, 0x470700: 9,  # IL1, IL2, IL3 (31, 51, 71.7.0)
    0x200700: 10, 0x340700: 11, 0x480700: 12,  # UL1, UL2, UL3 (32, 52, 72.7.0)
    0x010800: 13, 0x020800: 14, 0x030800: 15, 0x040800: 16,  # A+, A-, R+, R-
    0x010000: _F_CLOCK,  # 1.0.0 clock
}

# DLMS unit each numeric field must carry in an Aidon scaler-unit (codes 3..16):
# 27 W, 29 var, 33 A, 35 V, 30 Wh, 32 varh.
_UNITS = b"\x1b\x1b\x1d\x1d\x21\x21\x21\x23\x23\x23\x1e\x1e\x20\x20"
# Decimal exponent of our target unit per field code 3..16 (W, mA, 0.1 V, Wh) plus 64.
_TARGET = b"\x40\x40\x40\x40\x3d\x3d\x3d\x3f\x3f\x3f\x40\x40\x40\x40"
# Decimal exponent of the raw value, plus 64, for (current, voltage, energy), by vendor;
# power is in W/var everywhere. Kaifa: mA, 0.1 V, Wh. Kamstrup: 0.01 A, 1 V, 10 Wh.
_RAW_EXP = (None, None, b"\x3d\x3f\x40", b"\x3e\x40\x41")

# Kaifa lists carry no OBIS codes: field codes by position, chosen by the item count.
_KAIFA_LAYOUTS = {
    1: b"\x03",
    9: b"\x00\x01\x02\x03\x04\x05\x06\x07\x0a",
    13: b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c",
    14: b"\x00\x01\x02\x03\x04\x05\x06\x07\x0a\x11\x0d\x0e\x0f\x10",
    18: b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x11\x0d\x0e\x0f\x10",
}
_KAIFA_LIST = {1: 1, 9: 2, 13: 2, 14: 3, 18: 3}


def _is_string(tag):
    return tag == T_OCTET_STRING or tag == T_VISIBLE_STRING or tag == T_UTF8_STRING


def _is_obis(buf, p):
    return buf[p] == T_OCTET_STRING and buf[p + 1] == 6


def _obis_text(buf, p):
    return "%d-%d:%d.%d.%d.%d" % (buf[p + 2], buf[p + 3], buf[p + 4], buf[p + 5], buf[p + 6],
                                  buf[p + 7])


def _put(r, code, buf, p, shift, unit):
    """Store the item at p as field `code`.

    shift: decimal exponent of the raw value (Aidon's scaler), or None = raw for now (the
    vendor's units are applied later). unit: DLMS unit sent with the value (Aidon) or -1.
    Returns 1 when a value was stored, 0 for null-data.
    """
    tag = buf[p]
    if tag == T_NULL:
        return 0
    if code < _F_P_IMPORT:
        if not _is_string(tag):
            raise DecodeError("unknown layout: %s is not a string" % KEYS[code])
        r[KEYS[code]] = read_text(buf, content_pos(buf, p), length_at(buf, p + 1, len(buf)))
        return 1
    if code == _F_CLOCK:
        if tag == T_OCTET_STRING and buf[p + 1] == 12:
            r["meter_clock"] = read_datetime(buf, p + 2)
        elif tag == 0x19:  # date-time type
            r["meter_clock"] = read_datetime(buf, p + 1)
        else:
            raise DecodeError("unknown layout: clock is not a 12-byte date-time")
        return 1
    v = read_int(buf, p)
    if v is None:
        raise DecodeError("unknown layout: %s is not an integer (type 0x%02X)" % (KEYS[code], tag))
    if unit >= 0 and unit != _UNITS[code - 3]:
        raise DecodeError("unexpected unit %d for %s" % (unit, KEYS[code]))
    if shift is not None:
        v = scale(v, shift - _TARGET[code - 3] + 64)
    r[KEYS[code]] = v
    return 1


def _aidon(r, buf, p, count, end):
    """Array of structures (OBIS, value[, scaler-unit]). Returns number of unknown codes."""
    unknown = 0
    for _ in range(count):
        nxt = item_end(buf, p, end)
        if buf[p] != T_STRUCTURE or buf[p + 1] < 2:
            raise DecodeError("unknown layout: array element at %d is not (OBIS, value)" % p)
        q = content_pos(buf, p)
        if not _is_obis(buf, q):
            raise DecodeError("unknown layout: array element at %d has no OBIS code" % p)
        code = _OBIS.get(buf[q + 4] << 16 | buf[q + 5] << 8 | buf[q + 6], -1)
        v = q + 8
        if code < 0:
            unknown += 1
        elif code < _F_P_IMPORT or code == _F_CLOCK:
            _put(r, code, buf, v, None, -1)
        else:
            su = item_end(buf, v, end)
            # scaler-unit: 02 02 0F <scaler> 16 <unit>
            if (buf[p + 1] != 3 or buf[su] != T_STRUCTURE or buf[su + 1] != 2
                    or buf[su + 2] != T_INTEGER or buf[su + 4] != T_ENUM):
                raise DecodeError("unknown layout: %s has no scaler-unit" % _obis_text(buf, q))
            scaler = read_int(buf, su + 2)
            _put(r, code, buf, v, scaler, buf[su + 5])
        p = nxt
    return unknown


def _pairs(r, buf, p, count, end):
    """Structure of OBIS octet-strings each followed by its value (Kamstrup, Swedish Kaifa).

    A bare string before the first OBIS code is the list version (Kamstrup); null-data
    placeholders (single-phase Kamstrup) are skipped. Returns the number of unknown codes.
    """
    unknown = 0
    i = 0
    while i < count:
        if _is_obis(buf, p):
            i += 1
            if i >= count:
                raise DecodeError("unknown layout: OBIS code %s without a value"
                                  % _obis_text(buf, p))
            code = _OBIS.get(buf[p + 4] << 16 | buf[p + 5] << 8 | buf[p + 6], -1)
            v = p + 8
            if code < 0:
                unknown += 1
            else:
                _put(r, code, buf, v, None, -1)
            p = item_end(buf, v, end)
        elif buf[p] == T_NULL:
            p += 1
        elif i == 0 and _is_string(buf[p]):
            _put(r, _F_VERSION, buf, p, None, -1)
            p = item_end(buf, p, end)
        else:
            raise DecodeError("unknown layout: item %d at %d is neither OBIS code nor null"
                              % (i, p))
        i += 1
    return unknown


def _kaifa(r, buf, p, count, end):
    """Kaifa's positional lists: the meaning of each value is given by its position."""
    layout = _KAIFA_LAYOUTS.get(count)
    if layout is None:
        raise DecodeError("unknown layout: structure of %d values without OBIS codes" % count)
    for i in range(count):
        code = layout[i]
        tag = buf[p]
        if code < _F_P_IMPORT:
            ok = _is_string(tag)
        elif code == _F_CLOCK:
            ok = tag == T_OCTET_STRING and buf[p + 1] == 12
        else:
            ok = read_int(buf, p) is not None
        if not ok:
            raise DecodeError("unknown layout: Kaifa %d-item list, item %d has type 0x%02X"
                              % (count, i, tag))
        _put(r, code, buf, p, None, -1)
        p = item_end(buf, p, end)


def _vendor_of(version):
    if version is None:
        return 0
    if version.startswith("AIDON"):
        return _AIDON
    if version.startswith("KFM"):
        return _KAIFA
    if version.startswith("Kamstrup"):
        return _KAMSTRUP
    return 0


def _apply_vendor_units(r, vendor):
    exps = _RAW_EXP[vendor]
    for code in range(_F_CURRENT_L1, _F_ENERGY + 4):
        key = KEYS[code]
        v = r[key]
        if v is not None:
            kind = 0 if code < _F_VOLTAGE_L1 else (1 if code < _F_ENERGY else 2)
            r[key] = scale(v, exps[kind] - _TARGET[code - 3])  # type: ignore[index]  # not None
    if vendor == _KAMSTRUP and r["meter_type"] is not None and r["meter_type"].startswith("685"):
        # CT meter: current scaling not confirmed (han-protocol notes 7.3): report nothing
        # rather than a guess.
        r["current_l1_ma"] = r["current_l2_ma"] = r["current_l3_ma"] = None


def _has_energy(r):
    return (r["active_energy_import_wh"] is not None or r["active_energy_export_wh"] is not None
            or r["meter_clock"] is not None)


def decode_frame(frame):
    """Decode one complete HDLC frame (bytes/bytearray/memoryview, flag to flag).

    Returns a dict: meter ("aidon" | "kaifa" | "kamstrup" | "unknown"), list (1, 2, 3 or
    None outside the Norwegian lists), the KEYS values (None = not in the frame),
    meter_clock_source, apdu_datetime, list_items. Raises DecodeError (a ValueError) for
    anything it cannot decode: bad flags/length/HCS/FCS, truncation, unknown layout.
    """
    n = len(frame)
    info = check_frame(frame, n)
    if info < 0:
        raise DecodeError(error_text(info))
    if frame[1] & 0x08:  # segmentation bit: the APDU continues in later frames
        raise DecodeError("segmented HDLC frames are not supported")
    end = n - 3  # the FCS follows the information field
    p = info
    if end - p < 9 or frame[p] != 0xE6 or frame[p + 1] != 0xE7 or frame[p + 2] != 0:
        raise DecodeError("no LLC header E6 E7 00")
    p += 3
    tag = frame[p]
    if tag != 0x0F:
        if tag == 0xDB:
            raise DecodeError("encrypted frame (general-glo-ciphering): not supported")
        raise DecodeError("APDU tag 0x%02X is not a data-notification (0x0F)" % tag)
    p += 5  # tag and long-invoke-id-and-priority
    dt = frame[p]
    if dt == 0:
        dt = -1
        p += 1
    elif dt == 0x0C:
        dt = p + 1
        p += 13
    elif dt == T_OCTET_STRING and frame[p + 1] == 0x0C:
        dt = p + 2
        p += 14
    else:
        raise DecodeError("unknown date-time encoding 0x%02X in the notification header" % dt)
    if p >= end:
        raise DecodeError("truncated: no notification body")
    body_end = item_end(frame, p, end)
    if body_end != end:
        raise DecodeError("%d unexpected bytes after the notification body" % (end - body_end))

    r = {
        "meter": "unknown", "list": None,
        "list_version": None, "meter_id": None, "meter_type": None,
        "active_power_import_w": None, "active_power_export_w": None,
        "reactive_power_import_var": None, "reactive_power_export_var": None,
        "current_l1_ma": None, "current_l2_ma": None, "current_l3_ma": None,
        "voltage_l1_dv": None, "voltage_l2_dv": None, "voltage_l3_dv": None,
        "active_energy_import_wh": None, "active_energy_export_wh": None,
        "reactive_energy_import_varh": None, "reactive_energy_export_varh": None,
        "meter_clock": None, "meter_clock_source": None,
        "apdu_datetime": read_datetime(frame, dt) if dt >= 0 else None,
        "list_items": 0,
    }
    tag = frame[p]
    count = length_at(frame, p + 1, end)
    r["list_items"] = count
    q = content_pos(frame, p)
    list_no = None
    if tag == T_ARRAY:
        unknown = _aidon(r, frame, q, count, end)
        # Self-describing values (scaler-unit): right whoever sent them. Without a list
        # version (Aidon list 1, Swedish Aidon) the layout is Aidon's; an unknown version
        # gives meter "unknown".
        vendor = _AIDON if r["list_version"] is None else _vendor_of(r["list_version"])
        if not unknown and vendor == _AIDON:
            if count == 1 and r["active_power_import_w"] is not None:
                list_no = 1
            elif r["list_version"] is not None:
                list_no = 3 if _has_energy(r) else 2
    elif tag == T_STRUCTURE and count and (_is_obis(frame, q) or (
            frame[q] == T_VISIBLE_STRING and count > 1
            and _is_obis(frame, item_end(frame, q, end)))):
        # OBIS/value pairs, optionally after a bare visible-string list version (Kamstrup).
        # Kaifa's positional lists start with an octet-string version: not matched here.
        leading_version = not _is_obis(frame, q)
        unknown = _pairs(r, frame, q, count, end)
        vendor = _vendor_of(r["list_version"])
        if vendor == 0 or vendor == _AIDON:
            raise DecodeError("unknown layout: OBIS list with list version %r (unknown units)"
                              % r["list_version"])
        _apply_vendor_units(r, vendor)
        if not unknown and vendor == _KAMSTRUP and leading_version:
            list_no = 3 if _has_energy(r) else 2
    elif tag == T_STRUCTURE:
        _kaifa(r, frame, q, count, end)
        vendor = _KAIFA
        if count > 1 and _vendor_of(r["list_version"]) != _KAIFA:
            # Positions mean something only in a list whose version we know.
            raise DecodeError("unknown layout: positional list with list version %r"
                              % r["list_version"])
        _apply_vendor_units(r, vendor)
        list_no = _KAIFA_LIST[count]
    else:
        raise DecodeError("unknown layout: notification body of type 0x%02X" % tag)
    r["meter"] = _METERS[vendor]
    r["list"] = list_no
    if r["meter_clock"] is not None:
        r["meter_clock_source"] = "clock_object"
    elif r["apdu_datetime"] is not None:
        r["meter_clock"] = r["apdu_datetime"]
        r["meter_clock_source"] = "apdu_header"
    return r
