"""SunSpec meter profile: "SunS", common model 1, meter model 203 (integers and scale
factors) or 213 (float32), end marker, at the standard base 40000 beside the HAN2X map.

Facts from the SunSpec Alliance's model definitions (sunspec/models, model_1/203/213.json);
user documentation in docs/integration.md. Loaded by meterroute.py only when
sunspec_model is 203 or 213. Served on the units the HAN2X map answers: a read below 40000
is the HAN2X map's, unchanged.
"""

import struct

from micropython import const

from han2x_core import __version__
from han2x_core.meterutil import NAN_HI, Values, f32, text, valid

BASE = const(40000)
_M1 = const(2)  # model 1's ID register, from BASE
_METER = const(70)  # the meter model's ID register
_LEN = {203: 105, 213: 124}
_NI16 = const(0x8000)  # int16 and sunssf "not implemented"
_MAX16 = const(32767)


class SunSpec:
    """The SunSpec map with the HAN2X map below 40000: read(fc, start, count, out, off)
    and write() like Registers'."""


    def __init__(self, regs, model):
        self.regs = regs
        self.model = model
        n = _METER + 2 + _LEN[model] + 2
        self.size = n
        self.image = bytearray(2 * n)
        self._values = Values()
        img = self.image
        struct.pack_into(">4sHH", img, 0, b"SunS", 1, 66)
        text(img, 2 * (_M1 + 2), 16, "HAN2X open firmware")
        text(img, 2 * (_M1 + 18), 16, "HAN2X AMS meter")
        text(img, 2 * (_M1 + 42), 8, __version__)
        struct.pack_into(">H", img, 2 * (_M1 + 66), 1)  # DA: device address
        struct.pack_into(">HH", img, 2 * _METER, model, _LEN[model])
        struct.pack_into(">HH", img, 2 * (n - 2), 0xFFFF, 0)

    def read(self, fc, start, count, out, off):
        if start < BASE:
            return self.regs.read(start, count, out, off)
        first = start - BASE
        if first + count > self.size:
            return 2
        if first + count > _METER + 2 and first < self.size - 2:
            if not valid(self.regs):
                return 4  # no telegram for 60 s: no stale values to a control loop
        self._render()
        img = self.image
        src = 2 * first
        for i in range(2 * count):
            out[off + i] = img[src + i]
        return 0

    def write(self, start, data, off, count):
        if start < BASE:
            return self.regs.write(start, data, off, count)
        return 2  # read-only, like the HAN2X map's measured values

    def _render(self):
        regs = self.regs
        v = self._values
        if not v.take(regs):
            return  # the image already shows this reading
        img = self.image
        text(img, 2 * (_M1 + 34), 8, _METER_NAMES[regs.value(53)])  # Opt: meter make
        text(img, 2 * (_M1 + 50), 16, regs.meter_id or "")
        if self.model == 203:
            self._render_203(img, v, 2 * (_METER))
        else:
            self._render_213(img, v, 2 * (_METER))

    def _render_203(self, img, v, b):
        for p in range(2, 107):
            struct.pack_into(">H", img, b + 2 * p, _NI16)
        for p in range(38, 71):  # acc32 "not implemented" is 0
            if p != 54:
                struct.pack_into(">H", img, b + 2 * p, 0)
        for p in range(72, 104):
            struct.pack_into(">H", img, b + 2 * p, 0)
        struct.pack_into(">HH", img, b + 2 * 105, 0, 0)  # Evt
        # Currents: mA, scale factor from -2 up while a value does not fit an int16.
        sf = _sf(v.current[0] + v.current[1] + v.current[2], -2, -3)
        _put16(img, b + 2 * 2, v.current[0] + v.current[1] + v.current[2], sf + 3)
        for i in range(3):
            if v.has_i[i]:
                _put16(img, b + 2 * (3 + i), v.current[i], sf + 3)
        struct.pack_into(">h", img, b + 2 * 6, sf)
        _put16(img, b + 2 * 7, v.mean_voltage(), 0)
        for i in range(3):
            if v.has_u[i]:
                _put16(img, b + 2 * (8 + i), v.voltage[i], 0)
        struct.pack_into(">h", img, b + 2 * 15, -1)  # V x 10
        sf = _sf(abs(v.power), 0, 0)
        _put16(img, b + 2 * 18, v.power, sf)
        struct.pack_into(">h", img, b + 2 * 22, sf)
        sf = _sf(abs(v.reactive), 0, 0)
        _put16(img, b + 2 * 28, v.reactive, sf)
        struct.pack_into(">h", img, b + 2 * 32, sf)
        t = v.totals
        struct.pack_into(">II", img, b + 2 * 38, t[1] & 0xFFFFFFFF, 0)  # TotWhExp: A-
        struct.pack_into(">I", img, b + 2 * 46, t[0] & 0xFFFFFFFF)  # TotWhImp: A+
        struct.pack_into(">h", img, b + 2 * 54, 0)  # Wh

    def _render_213(self, img, v, b):
        for p in range(2, 124, 2):
            struct.pack_into(">HH", img, b + 2 * p, NAN_HI, 0)
        struct.pack_into(">HH", img, b + 2 * 124, 0, 0)  # Evt
        f32(img, b + 2 * 2, v.current[0] + v.current[1] + v.current[2], 1000)
        for i in range(3):
            if v.has_i[i]:
                f32(img, b + 2 * (4 + 2 * i), v.current[i], 1000)
            if v.has_u[i]:
                f32(img, b + 2 * (12 + 2 * i), v.voltage[i], 10)
        f32(img, b + 2 * 10, v.mean_voltage(), 10)
        f32(img, b + 2 * 28, v.power)
        f32(img, b + 2 * 44, v.reactive)
        f32(img, b + 2 * 60, v.totals[1])  # TotWhExp: A-
        f32(img, b + 2 * 68, v.totals[0])  # TotWhImp: A+


_METER_NAMES = ("", "Aidon", "Kaifa", "Kamstrup")


def _sf(value, sf, unit_exp):
    """The smallest scale factor from sf up at which value (in 10**unit_exp) fits an int16."""
    div = 10 ** (sf - unit_exp)
    while (value + div // 2) // div > _MAX16:
        sf += 1
        div *= 10
    return sf


def _put16(img, pos, value, shift):
    """value / 10**shift, rounded, as an int16 (shift = scale factor - unit exponent)."""
    div = 10 ** shift if shift > 0 else 1
    mul = 10 ** -shift if shift < 0 else 1
    value *= mul
    q = (abs(value) + div // 2) // div
    if q > _MAX16:
        q = _MAX16
    struct.pack_into(">h", img, pos, -q if value < 0 else q)
