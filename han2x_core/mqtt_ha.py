"""MQTT state payloads from the register image, so that MQTT says what Modbus serves
(resident while MQTT is on: used with every telegram).

Pure core. Each payload is written as JSON into the caller's fixed buffer, digit by digit:
no list, string or number text is made per telegram. Topics and payloads are documented
for users in docs/integration.md. The discovery configs and meter info, sent once per
connection, are in mqtt_disc.py (loaded at connect and dropped again).
"""

from micropython import const

_OFF_PRESENT = const(52)
_OFF_STATUS = const(50)
_OFF_NET = const(59)
_STATUS_TOTALS = const(4)
_STATUS_RESTORED = const(32)
TOTALS = const(61)  # the never-decreasing hourly totals (registers.NEVER_DECREASING)
ESTIMATES = const(69)
_OFF_TARIFF = const(80)  # registers.TARIFF_OFF: 40081-40102, docs/registers.md
SIZE = const(320)  # the longest power payload (every value 10 digits) fits

# The power topic's keys in register order: key i is at offset 2 * i with present bit i
# (docs/registers.md). Decimals: W and var none, mA -> A 3, dV -> V 1 (_decimals).
_POWER = (b"import_w", b"export_w", b"reactive_import_var", b"reactive_export_var",
          b"current_l1_a", b"current_l2_a", b"current_l3_a", b"voltage_l1_v",
          b"voltage_l2_v", b"voltage_l3_v")
ENERGY_KEYS = (b"import_kwh", b"export_kwh", b"reactive_import_kvarh",
               b"reactive_export_kvarh")
# The capacity tariff's Wh/W registers 82, 84 ... 90 under /api/status's names (kWh, kW).
_TARIFF = (b"average_kw", b"step_to_kw", b"hour_used_kwh", b"hour_estimate_kwh",
           b"kwh_left")


def _decimals(i):
    return 0 if i < 4 else (3 if i < 7 else 1)


def _key(out, pos, key):
    """'{"key":' at the start, ',"key":' after it; returns the new position."""
    out[pos] = 0x7B if pos == 0 else 0x2C  # { ,
    out[pos + 1] = 0x22  # "
    pos += 2
    for i in range(len(key)):
        out[pos + i] = key[i]
    pos += len(key)
    out[pos] = 0x22
    out[pos + 1] = 0x3A  # :
    return pos + 2


def _num(out, pos, n, decimals):
    """The integer n shown with that many decimals (1234 -> 1.234 for 3): digits written
    from the right, then turned around."""
    if n < 0:
        out[pos] = 0x2D  # -
        pos += 1
        n = -n
    start = pos
    i = 0
    while i <= decimals or n:
        if i == decimals and decimals:
            out[pos] = 0x2E  # .
            pos += 1
        out[pos] = 0x30 + n % 10
        n //= 10
        pos += 1
        i += 1
    end = pos - 1
    while start < end:
        out[start], out[end] = out[end], out[start]
        start += 1
        end -= 1
    return pos


def _put(out, pos, word):
    for c in word:
        out[pos] = c
        pos += 1
    return pos


def power(regs, out):
    """The power topic's JSON in out (at least SIZE bytes); returns its length. Values as
    Modbus serves them (the scaling factor applied), null for what the meter does not
    send."""
    present = regs.value(_OFF_PRESENT)
    pos = 0
    for i in range(len(_POWER)):
        pos = _key(out, pos, _POWER[i])
        if present >> i & 1:
            pos = _num(out, pos, regs.value32(2 * i), _decimals(i))
        else:
            pos = _put(out, pos, b"null")
    pos = _key(out, pos, b"net_w")
    net = regs.value32(_OFF_NET)
    if net & 0x80000000:
        net -= 0x100000000
    pos = _num(out, pos, net, 0) if present & 3 else _put(out, pos, b"null")
    out[pos] = 0x7D  # }
    return pos + 1


def have_energy(regs):
    """True once the registers hold real totals (a meter's hourly list, or restored)."""
    return bool(regs.value(_OFF_STATUS) & (_STATUS_TOTALS | _STATUS_RESTORED))


def energy(regs, offset, out):
    """The energy (TOTALS) or estimate (ESTIMATES) topic's JSON in kWh/kvarh with 3
    decimals, from the Wh registers, in out; returns its length, or 0 before the registers
    hold totals (a 0 would look like a meter reset to long-term statistics)."""
    if not have_energy(regs):
        return 0
    pos = 0
    for i in range(4 if offset == TOTALS else 2):
        pos = _key(out, pos, ENERGY_KEYS[i])
        pos = _num(out, pos, regs.value32(offset + 2 * i), 3)
    out[pos] = 0x7D
    return pos + 1


def tariff(regs, out):
    """The tariff topic's JSON from the capacity tariff's registers (scaled as Modbus serves
    them), in out; returns its length, or 0 while the tariff is off. Names as /api/status's
    "tariff" (docs/web.md), flattened: step_index, step_to_kw."""
    flags = regs.value(_OFF_TARIFF)
    if not flags & 1:
        return 0
    pos = _key(out, 0, b"step_index")
    pos = _num(out, pos, regs.value(_OFF_TARIFF + 1), 0)
    for i in range(len(_TARIFF)):
        pos = _key(out, pos, _TARIFF[i])
        v = regs.value32(_OFF_TARIFF + 2 + 2 * i)
        pos = _put(out, pos, b"null") if v == 0xFFFFFFFF else _num(out, pos, v, 3)
    pos = _key(out, pos, b"will_cross")
    pos = _put(out, pos, b"true" if flags & 8 else b"false")
    pos = _key(out, pos, b"restored")
    pos = _put(out, pos, b"true" if flags & 2 else b"false")
    out[pos] = 0x7D
    return pos + 1
