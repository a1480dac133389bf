"""The HAN2X register image: one preallocated bytearray of big-endian 16-bit registers.

Governed by han2x-spec.md (register map, scaling, rounding), documented for users in
docs/registers.md; estimation is energy.py, the scaling factor's write rules scaling.py.
Offsets are protocol offsets (address - 40001). Sans-I/O: time comes in as now_ms.
"""

import struct

from micropython import const

from han2x_core.energy import TOTAL_KEYS, EnergyEstimate
from han2x_core.scaling import SCALING_DEFAULT, SCALING_MAX, SCALING_MIN, ScalingWrite
from han2x_core.ticks import ticks_diff

# Size of the image: the original map (offsets 0-49) plus the extended block (50-101):
# 77-78 the lowest free heap (free_memory_min), 79 reserved (reads 0), 80-101 the capacity
# tariff (tariff.py renders them; 0 when off).
COUNT = const(102)
TARIFF_OFF = const(80)
ORIGINAL_COUNT = const(50)

STALE_MS = const(60000)  # like the HAN LED: no telegram for 60 s -> data not valid
_EST_STEP_MS = const(1000)  # integrate power at most once a second

# Original map offsets.
_OFF_CLOCK = const(36)  # 36..41: year, month, day, hour, minute, second
_OFF_FIRMWARE = const(42)
_OFF_TEMPERATURE = const(43)
_OFF_SCALING_MIRROR = const(44)  # 44-45 mirror of 48-49
_OFF_HOURS = const(47)
_OFF_SCALING = const(48)
# Extended block offsets (addresses 40051...).
_OFF_STATUS = const(50)
_OFF_AGE = const(51)
_OFF_PRESENT = const(52)
_OFF_METER = const(53)
_OFF_LIST = const(54)
_OFF_TELEGRAMS = const(55)
_OFF_UPTIME = const(57)
_OFF_NET_POWER = const(59)
_OFF_ENERGY_WH = const(61)  # 4 x uint32 cumulative, then 4 x uint32 estimated
_OFF_ESTIMATE_WH = const(69)
_OFF_FREE_MIN = const(77)  # uint32: lowest free heap since start, bytes

# The map, register by register, as runs of (first offset, words per register, registers):
# the one list the web's register page and /api/registers derive theirs from (webdata.layout;
# names and units: www/registers.txt, one line per register in this order). 40080 (79) is
# reserved and not listed. tests/test_register_map.py checks the page, the API, that file
# and docs/registers.md against it.
LAYOUT = (0, 2, 18,  # 40001-40036: powers, currents, voltages, energies, estimates
          _OFF_CLOCK, 1, 8,  # 40037-40044: meter clock, firmware version, temperature
          _OFF_SCALING_MIRROR, 2, 1,  # 40045-40046: scaling factor (alias)
          46, 1, 2,  # 40047 reserved, 40048 hours since start
          _OFF_SCALING, 2, 1,  # 40049-40050
          _OFF_STATUS, 1, 5,  # 40051-40055: status, age, present, meter make, list
          _OFF_TELEGRAMS, 2, 12,  # 40056-40079: telegrams ... lowest free heap
          TARIFF_OFF, 1, 2,  # 40081-40082: tariff flags, step
          TARIFF_OFF + 2, 2, 10)  # 40083-40102: tariff powers, energies, peaks

# Status bits (register 40051).
STATUS_DATA_VALID = const(1)
STATUS_EVER_RECEIVED = const(2)
STATUS_TOTALS = const(4)
STATUS_CLOCK = const(8)
STATUS_ESTIMATING = const(16)
STATUS_RESTORED = const(32)  # energies restored at start, no hourly total since

# Documented as never decreasing for one meter id, across restarts (docs/registers.md
# "Energy across restarts"): the extended block's hourly totals, Wh (40062-40069).
NEVER_DECREASING = (61, 63, 65, 67)

# Raw value slots, in register order: 4 powers, 3 currents, 3 voltages, 4 energies.
# Slot i is served at offset 2*i; slots 0-6 and 10-13 are scaled, 7-9 (voltage) are not.
_KEYS = (
    "active_power_import_w", "active_power_export_w",
    "reactive_power_import_var", "reactive_power_export_var",
    "current_l1_ma", "current_l2_ma", "current_l3_ma",
    "voltage_l1_dv", "voltage_l2_dv", "voltage_l3_dv",
) + TOTAL_KEYS
_NKEYS = const(14)
_FIRST_ENERGY = const(10)
_METERS = ("aidon", "kaifa", "kamstrup")
_CLOCK_KEYS = ("year", "month", "day", "hour", "minute", "second")
_U32 = 0xFFFFFFFF  # not const: a long int on the board, only used to clamp


class Registers:
    """The register image. read()/write() serve Modbus; update()/tick() feed it.

    on_scaling_change(value) is called after a Modbus write changes the scaling factor.
    """

    def __init__(self, scaling=SCALING_DEFAULT, firmware_version=0, on_scaling_change=None):
        self.image = bytearray(2 * COUNT)
        self.on_scaling_change = on_scaling_change
        self.scaling = scaling if SCALING_MIN <= scaling <= SCALING_MAX else SCALING_DEFAULT
        self.firmware_version = firmware_version
        self.telegrams = 0
        self.hourly = 0  # hourly totals taken since start (the app saves the state on change)
        self.stale_repeats = 0  # hourly lists ignored because older than the last one
        self._raw = [0] * _NKEYS
        self._present = 0
        self._meter = 0
        self._list = 0
        self.meter_id = None
        self._clock_ok = False
        self._energy = EnergyEstimate()  # estimated energy (docs/registers.md)
        # Time keeping from tick() deltas (wrap-safe for any uptime).
        self._last_tick = None
        self._up_s = 0
        self._up_rem_ms = 0
        self._age_ms = -1  # ms since the last telegram; -1 = none yet
        self._hours = None  # set_board(hours=...) overrides the uptime count
        self._temperature = 0
        self.read_only = False  # settings modbus_read_only: every write gets exception 2
        self._scaling_write = ScalingWrite()  # a high word waiting for its low word
        self._render_all()

    # ---- feeding -------------------------------------------------------------------------

    def configure(self, settings):
        """Apply settings["scaling_factor"] (from the settings store; no callback) and
        modbus_read_only."""
        self.read_only = settings.get("modbus_read_only", False)
        value = settings.get("scaling_factor", self.scaling)
        if SCALING_MIN <= value <= SCALING_MAX and value != self.scaling:
            self.scaling = value
            self._render_all()

    def update(self, reading, now_ms):
        """Take one decoded telegram. Values the telegram does not carry keep their last value."""
        meter_id = reading.get("meter_id")
        if meter_id is not None and self.meter_id is not None and meter_id != self.meter_id:
            self._forget_meter()
        if meter_id is not None:
            self.meter_id = meter_id
        energy = self._energy  # the interval that ends now used the previous power:
        energy.integrate(self._raw, now_ms, 0 <= self._age_ms < STALE_MS)
        raw = self._raw
        for i in range(_FIRST_ENERGY):
            value = reading.get(_KEYS[i])
            if value is not None:
                raw[i] = -value if value < 0 else value  # Aidon's signed current: magnitude
                self._present |= 1 << i
        taken = energy.totals(reading, raw, now_ms)
        if taken < 0:
            self.stale_repeats += 1
        elif taken:
            self.hourly += 1
            for i in range(_FIRST_ENERGY, _NKEYS):
                value = reading.get(_KEYS[i])
                if value is not None:
                    raw[i] = value
                    self._present |= 1 << i
        clock = reading.get("meter_clock")
        if clock:
            self._clock_ok = True
            for i in range(6):
                struct.pack_into(">H", self.image, 2 * (_OFF_CLOCK + i),
                                 clock.get(_CLOCK_KEYS[i]) or 0)
        meter = reading.get("meter")
        for i in range(3):
            if meter == _METERS[i]:
                self._meter = i + 1
        lst = reading.get("list")
        self._list = lst if lst in (1, 2, 3) else 0
        self.telegrams += 1
        self._age_ms = 0
        if energy.est_ms is None:
            energy.est_ms = now_ms
        self._render_all()

    def restore(self, meter_id, clock, totals, estimates):
        """Energies saved before a restart (energystate.py; docs/registers.md)."""
        self.meter_id = meter_id
        self._energy.restore(clock, totals, estimates)
        self._render_all()

    def energy_state(self):
        """(meter id, meter clock tuple, totals, estimates) for energystate.save."""
        return (self.meter_id,) + self._energy.state()

    def tick(self, now_ms):
        """Advance clocks: uptime, hours, data age, estimation. Call every loop; cheap."""
        last = self._last_tick
        self._last_tick = now_ms
        if last is None:
            return
        dt = ticks_diff(now_ms, last)
        if dt <= 0:
            return
        if self._age_ms >= 0 and self._age_ms < (1 << 29):
            self._age_ms += dt
        if self._scaling_write.pending_hi >= 0:
            self._scaling_write.tick(dt)
        rem = self._up_rem_ms + dt
        if rem < 1000:
            self._up_rem_ms = rem
            return
        self._up_s += rem // 1000
        self._up_rem_ms = rem % 1000
        # Once a second at most: integrate and refresh the time-dependent registers.
        est_ms = self._energy.est_ms
        if est_ms is not None and ticks_diff(now_ms, est_ms) >= _EST_STEP_MS:
            self._energy.integrate(self._raw, now_ms, 0 <= self._age_ms < STALE_MS)
            self._render_energy()
        self._render_dynamic()

    def set_board(self, temperature_c100=None, hours=None):
        """Board temperature in degC x 100 (served as int16) and, optionally, hours."""
        if temperature_c100 is not None:
            self._temperature = temperature_c100
        if hours is not None:
            self._hours = hours
        self._render_dynamic()

    def set_free_memory_min(self, n):
        self._put32(_OFF_FREE_MIN, n)

    # ---- Modbus access ---------------------------------------------------------------------

    def read(self, start, count, out, off):
        """Copy registers start..start+count-1 into out[off:] big-endian; 0 or exception 2."""
        if start < 0 or count < 0 or start + count > COUNT:
            return 2
        img = self.image
        src = 2 * start
        # A byte loop: slices (even of memoryviews) allocate on the board's VM.
        for i in range(2 * count):
            out[off + i] = img[src + i]
        return 0

    def write(self, start, data, off, count):
        """Write count big-endian words from data[off:]; 0, or exception 2 (not writable) or 3.

        Only the scaling factor (offsets 48-49 and its mirror 44-45) is writable. A high word
        written alone waits for its low word (see docs/registers.md); a low word commits.
        """
        if start < 0 or count < 1 or start + count > COUNT or self.read_only:
            return 2
        for i in range(count):
            reg = start + i
            if reg not in (44, 45, 48, 49):
                return 2
        value = self._scaling_write.write(self.scaling, start, data, off, count)
        if value < 0:
            return 3
        if value != self.scaling:
            self.scaling = value
            self._render_all()
            if self.on_scaling_change is not None:
                self.on_scaling_change(value)
        return 0

    def value(self, offset):
        """One register as an int (the meter profiles, MQTT state, tests)."""
        return (self.image[2 * offset] << 8) | self.image[2 * offset + 1]

    def value32(self, offset):
        """Two registers, high word first, as an int."""
        return (self.value(offset) << 16) | self.value(offset + 1)

    # ---- internals -------------------------------------------------------------------------

    def _forget_meter(self):
        for i in range(_NKEYS):
            self._raw[i] = 0
        self._energy.forget()
        self._present = 0
        self._clock_ok = False
        for i in range(6):
            struct.pack_into(">H", self.image, 2 * (_OFF_CLOCK + i), 0)

    def _scaled(self, value):
        if value == 0:
            return 0
        return value * self.scaling // 1000  # Decision: integers, rounded down

    def _put32(self, offset, value):
        if value > _U32:
            value = _U32
        elif value < 0:
            value = 0
        struct.pack_into(">HH", self.image, 2 * offset, value >> 16, value & 0xFFFF)

    def _render_all(self):
        raw = self._raw
        for i in range(_FIRST_ENERGY):
            self._put32(2 * i, raw[i] if 7 <= i <= 9 else self._scaled(raw[i]))
        top = self._energy.top
        for i in range(4):
            self._put32(2 * (_FIRST_ENERGY + i), self._scaled(raw[_FIRST_ENERGY + i]) // 1000)
            self._put32(_OFF_ENERGY_WH + 2 * i, self._scaled(top[i]))  # never decreasing
        img = self.image
        struct.pack_into(">H", img, 2 * _OFF_FIRMWARE, self.firmware_version & 0xFFFF)
        self._put32(_OFF_SCALING_MIRROR, self.scaling)
        self._put32(_OFF_SCALING, self.scaling)
        struct.pack_into(">H", img, 2 * 46, 0)  # 40047 reads 0
        struct.pack_into(">HHH", img, 2 * _OFF_PRESENT, self._present, self._meter, self._list)
        self._put32(_OFF_TELEGRAMS, self.telegrams)
        net = self._scaled(raw[0]) - self._scaled(raw[1])
        if net > 0x7FFFFFFF:
            net = 0x7FFFFFFF
        elif net < -0x80000000:
            net = -0x80000000
        struct.pack_into(">hH", img, 2 * _OFF_NET_POWER, net >> 16, net & 0xFFFF)
        self._render_energy()
        self._render_dynamic()

    def _render_energy(self):
        energy = self._energy
        for i in range(4):
            wh = self._scaled(energy.estimate(i))
            self._put32(28 + 2 * i, wh // 1000 if energy.have_base else 0)  # the manual's 0
            self._put32(_OFF_ESTIMATE_WH + 2 * i, wh)

    def _render_dynamic(self):
        img = self.image
        age = self._age_ms
        status = 0
        have_base = self._energy.have_base
        if age >= 0:
            status |= STATUS_EVER_RECEIVED
            if age < STALE_MS:
                status |= STATUS_DATA_VALID
                if have_base:
                    status |= STATUS_ESTIMATING
        if have_base:
            status |= STATUS_TOTALS
        if self._clock_ok:
            status |= STATUS_CLOCK
        if self._energy.restored:
            status |= STATUS_RESTORED
        age_s = 0xFFFF if age < 0 else age // 1000
        if age_s > 0xFFFF:
            age_s = 0xFFFF
        hours = self._hours if self._hours is not None else self._up_s // 3600
        if hours > 0xFFFF:
            hours = 0xFFFF
        struct.pack_into(">HH", img, 2 * _OFF_STATUS, status, age_s)
        struct.pack_into(">H", img, 2 * _OFF_HOURS, hours)
        struct.pack_into(">H", img, 2 * _OFF_TEMPERATURE, self._temperature & 0xFFFF)
        self._put32(_OFF_UPTIME, self._up_s)
