"""Shared by the meter profiles (meter_sunspec.py, meter_em24.py, meter_sdm630.py): the
values of the HAN2X image they serve, and IEEE 754 float32 words made with integers only.
Loaded only while a profile is on (docs/integration.md "Meter profiles").
"""

import struct

# HAN2X image offsets (registers.py, docs/registers.md): P+, P-, Q+, Q- (W, var), currents
# L1-L3 (mA), voltages L1-L3 (V x 10), all uint32; the never-decreasing hourly totals (Wh).
_OFF_CURRENT = 8
_OFF_VOLTAGE = 14
_OFF_TOTALS = 61
_OFF_STATUS = 50
_OFF_PRESENT = 52

NAN_HI = 0x7FC0  # float32 quiet NaN: SunSpec's "not implemented" for float32


def valid(regs):
    """True while the HAN data is valid (a telegram within 60 s: 40051 bit 0)."""
    return regs.value(_OFF_STATUS) & 1 == 1


class Values:
    """One HAN reading as the profiles serve it, taken from the HAN2X image (so it is the
    same reading, scaled the same). Signed powers: import positive."""

    def __init__(self):
        self.current = [0, 0, 0]  # mA
        self.voltage = [0, 0, 0]  # V x 10
        self.has_i = [False] * 3
        self.has_u = [False] * 3
        self.totals = [0, 0, 0, 0]  # Wh / varh: A+, A-, R+, R- (never decreasing)
        self._seen = -1  # regs.telegrams and regs.scaling of the reading taken
        self._seen_scaling = 0

    def take(self, regs):
        """Take the image's reading. False, and nothing done, when this reading (the same
        telegram at the same scaling) was taken already: the profile's image still shows it."""
        if regs.telegrams == self._seen and regs.scaling == self._seen_scaling:
            return False
        self._seen = regs.telegrams
        self._seen_scaling = regs.scaling
        present = regs.value(_OFF_PRESENT)
        self.power = regs.value32(0) - regs.value32(2)
        self.reactive = regs.value32(4) - regs.value32(6)
        for i in range(3):
            self.current[i] = regs.value32(_OFF_CURRENT + 2 * i)
            self.voltage[i] = regs.value32(_OFF_VOLTAGE + 2 * i)
            self.has_i[i] = present & (16 << i) != 0
            self.has_u[i] = present & (128 << i) != 0
        for i in range(4):
            self.totals[i] = regs.value32(_OFF_TOTALS + 2 * i)
        self.three = self.has_u[1] or self.has_u[2] or self.has_i[1] or self.has_i[2]
        return True

    def phase_power(self, i):
        """Phase i's share of the net power, split by current: the meter sends the total
        only (docs/integration.md: an estimate, for maps that have no 'not measured')."""
        total = self.current[0] + self.current[1] + self.current[2]
        if total == 0:
            return self.power if i == 0 else 0
        return _div(self.power * self.current[i], total)

    def mean_voltage(self):
        """Average of the voltages the meter sends (V x 10), 0 when none."""
        n = s = 0
        for i in range(3):
            if self.has_u[i]:
                n += 1
                s += self.voltage[i]
        return _div(s, n) if n else 0


def _div(a, b):
    """a / b rounded half away from zero, integers (b > 0)."""
    if a < 0:
        return -((-a + b // 2) // b)
    return (a + b // 2) // b


def f32(buf, off, num, den=1):
    """Write num/den as a big-endian IEEE 754 float32 (2 words, high first) at buf[off:],
    rounded as IEEE 754 does, from integers: exact on any interpreter (CircuitPython's own floats
    have 22 bits)."""
    if num == 0:
        struct.pack_into(">HH", buf, off, 0, 0)
        return
    sign = 0
    if num < 0:
        sign = 0x80000000
        num = -num
    e = 0
    while num < den << 23:  # scale num/den into [2**23, 2**24): value = num/den * 2**e
        num <<= 1
        e -= 1
    while num >= den << 24:
        den <<= 1
        e += 1
    m, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and m & 1):  # to nearest, ties to even (IEEE 754)
        m += 1
    if m >> 24:
        m >>= 1
        e += 1
    bits = sign | (e + 150) << 23 | (m & 0x7FFFFF)
    struct.pack_into(">HH", buf, off, bits >> 16, bits & 0xFFFF)


def text(buf, off, words, value):
    """ASCII text in words registers at buf[off:], NUL-padded (SunSpec and EM24 strings)."""
    raw = value.encode() if value else b""
    for i in range(2 * words):
        buf[off + i] = raw[i] if i < len(raw) else 0
