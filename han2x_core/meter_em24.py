"""Carlo Gavazzi EM24 Ethernet profile, on its own unit id (setting em24_unit), for
Victron Venus OS and others that read an EM24.

Facts: Carlo Gavazzi's EM24-DIN communication protocol (register map, "identification
code at 000Bh, read a word at a time") and how victronenergy/dbus-modbus-client reads the
meter (carlo_gavazzi.py: probe 0x000b on function 03, application register 0xa000 set to
7 = "H", 0x0302/0x0304 versions, 0x1002 measuring system, 0x5000 serial, then one read of
0x0000-0x004f and 0xa100). User documentation: docs/integration.md. Loaded by
meterroute.py only when em24_unit is set.
"""

import struct

from micropython import const

from han2x_core import FIRMWARE_VERSION
from han2x_core.meterutil import Values, text, valid

_DATA = const(0x52)  # 0x0000-0x0051: the instantaneous variables and energies
_ID_REG = const(0x000B)  # a one-register read here is the identification code
MODEL_ID = const(1648)  # EM24DINAV23XE1X (dbus-modbus-client accepts 1648-1653)
_APP = const(0xA000)  # application mode: 0-7 = A-H; Victron wants 7 (H)
_SWITCH = const(0xA100)  # front selector: 3 = locked
_SYSTEM = const(0x1002)  # measuring system: 0 = 3P.n, 3 = 1P
_SERIAL = const(0x5000)  # 7 registers of text


class Em24:
    """The EM24 map on one unit id: read(fc, start, count, out, off) and write()."""

    key = "em24_unit"  # its setting (meterroute.py)

    def __init__(self, regs, unit):
        self.regs = regs
        self.unit = unit
        self.app = 7  # kept in RAM: a power cut brings back H, which every reader wants
        self.image = bytearray(2 * _DATA)
        self._values = Values()
        major, minor, patch = FIRMWARE_VERSION // 100, FIRMWARE_VERSION // 10 % 10, \
            FIRMWARE_VERSION % 10
        self._version = major << 12 | minor << 8 | patch  # Victron shows it as %d.%d.%d

    def read(self, fc, start, count, out, off):
        if start == _ID_REG and count == 1:
            struct.pack_into(">H", out, off, MODEL_ID)
            return 0
        end = start + count
        if end <= _DATA:
            if not valid(self.regs):
                return 4  # no telegram for 60 s: no stale values to a control loop
            self._render()
            img = self.image
            for i in range(2 * count):
                out[off + i] = img[2 * start + i]
            return 0
        if start == _SERIAL and count == 7:
            meter_id = self.regs.meter_id
            text(out, off, 7, meter_id[-14:] if meter_id else "")
            return 0
        value = self._info(start) if count == 1 else -1
        if value < 0:
            return 2
        struct.pack_into(">H", out, off, value)
        return 0

    def _info(self, reg):
        """The one-register setting at reg, or -1 (exception 02)."""
        if reg == 0x0302 or reg == 0x0304:
            return self._version
        if reg == _SYSTEM:
            if not self.regs.telegrams:
                return 0
            self._render()  # takes the latest reading
            return 0 if self._values.three else 3
        if reg == _APP:
            return self.app
        if reg == _SWITCH:
            return 3
        return -1

    def write(self, start, data, off, count):
        """Only the application mode is writable (0-7), as on the meter."""
        if start != _APP or count != 1:
            return 2
        value = (data[off] << 8) | data[off + 1]
        if value > 7:
            return 3
        self.app = value
        return 0

    def _render(self):
        regs = self.regs
        v = self._values
        if not v.take(regs):
            return  # the image already shows this reading
        img = self.image
        for i in range(2 * _DATA):
            img[i] = 0
        for i in range(3):
            _s32l(img, 0x00 + 2 * i, v.voltage[i])  # V x 10
            _s32l(img, 0x0C + 2 * i, v.current[i])  # A x 1000
            _s32l(img, 0x12 + 2 * i, 10 * v.phase_power(i))  # W x 10 (estimated split)
        _s32l(img, 0x24, v.mean_voltage())
        _s32l(img, 0x28, 10 * v.power)
        _s32l(img, 0x2C, 10 * v.reactive)
        t = v.totals
        _s32l(img, 0x34, t[0] // 100)  # kWh(+) x 10 from Wh, rounded down
        _s32l(img, 0x36, t[2] // 100)  # kvarh(+)
        _s32l(img, 0x4E, t[1] // 100)  # kWh(-)
        _s32l(img, 0x50, t[3] // 100)  # kvarh(-)


def _s32l(img, reg, value):
    """A signed 32-bit value, low word first (the EM24's word order), at register reg."""
    if value > 0x7FFFFFFF:
        value = 0x7FFFFFFF
    elif value < -0x80000000:
        value = -0x80000000
    value &= 0xFFFFFFFF
    struct.pack_into(">HH", img, 2 * reg, value & 0xFFFF, value >> 16)
