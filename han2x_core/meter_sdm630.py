"""Eastron SDM630 profile, on its own unit id (setting sdm630_unit): input registers
(function 04) as big-endian float32, in both framings the port speaks (MBAP and
RTU-over-TCP, modbus.py), for evcc's `eastron` template and others.

Facts: Eastron's SDM630 Modbus protocol (input register map, "at most 30 parameters per
request"). User documentation: docs/integration.md. Loaded by meterroute.py only when
sdm630_unit is set.
"""

from micropython import const

from han2x_core.meterutil import Values, f32, valid

_MAIN = const(90)  # input registers 0-89: per phase, totals, energies, demand
_TOTAL = const(342)  # 342-345: total kWh and kvarh (import + export)
_MAX_READ = const(60)  # 30 parameters per request, as on the meter


class Sdm630:
    """The SDM630 map on one unit id: read(fc, start, count, out, off) and write()."""

    key = "sdm630_unit"  # its setting (meterroute.py)

    def __init__(self, regs, unit):
        self.regs = regs
        self.unit = unit
        self.image = bytearray(2 * (_MAIN + 4))
        self._values = Values()

    def read(self, fc, start, count, out, off):
        if fc != 4:
            return 2  # holding registers are the meter's settings: not served
        if count > _MAX_READ:
            return 3
        end = start + count
        if end <= _MAIN:
            src = start
        elif start >= _TOTAL and end <= _TOTAL + 4:
            src = start - _TOTAL + _MAIN
        else:
            return 2
        if not valid(self.regs):
            return 4  # no telegram for 60 s: no stale values to a control loop
        self._render()
        img = self.image
        for i in range(2 * count):
            out[off + i] = img[2 * src + i]
        return 0

    def write(self, start, data, off, count):
        return 2  # the measured values are read-only; settings are not served

    def _render(self):
        regs = self.regs
        v = self._values
        if not v.take(regs):
            return  # the image already shows this reading
        img = self.image
        for i in range(len(img)):
            img[i] = 0
        n = 0
        for i in range(3):
            f32(img, 2 * (0 + 2 * i), v.voltage[i], 10)  # V
            f32(img, 2 * (6 + 2 * i), v.current[i], 1000)  # A
            f32(img, 2 * (12 + 2 * i), v.phase_power(i))  # W (estimated split)
            if v.has_i[i]:
                n += 1
        amps = v.current[0] + v.current[1] + v.current[2]
        f32(img, 2 * 42, v.mean_voltage(), 10)
        f32(img, 2 * 46, amps, 1000 * (n or 1))  # average line current
        f32(img, 2 * 48, amps, 1000)  # sum of line currents
        f32(img, 2 * 52, v.power)
        f32(img, 2 * 60, v.reactive)
        t = v.totals
        f32(img, 2 * 72, t[0], 1000)  # import kWh
        f32(img, 2 * 74, t[1], 1000)  # export kWh
        f32(img, 2 * 76, t[2], 1000)  # import kvarh
        f32(img, 2 * 78, t[3], 1000)  # export kvarh
        f32(img, 2 * _MAIN, t[0] + t[1], 1000)  # 342: total kWh
        f32(img, 2 * (_MAIN + 2), t[2] + t[3], 1000)  # 344: total kvarh
