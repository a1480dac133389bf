"""Meter simulator (host side): encodes realistic HAN telegrams for Aidon, Kaifa, Kamstrup.

encode_frame(vendor, list_no, values, clock=None, phases=3) builds one complete HDLC frame
in the vendor's real layout (see docs/meters.md); decode_frame(encode_frame(...)) gives the
values back, at the vendor's resolution (quantise()). MeterSimulator yields a meter's
telegrams at its real cadence, with power on a random walk and energies integrating it.
"""

import datetime
import random
import time

import tools._host  # noqa: F401  (micropython.const on CPython without Blinka)

from han2x_core.hdlc import crc16

VENDORS = ("aidon", "kaifa", "kamstrup")
POWERS = ("active_power_import_w", "active_power_export_w", "reactive_power_import_var",
          "reactive_power_export_var")
CURRENTS = ("current_l1_ma", "current_l2_ma", "current_l3_ma")
VOLTAGES = ("voltage_l1_dv", "voltage_l2_dv", "voltage_l3_dv")
ENERGIES = ("active_energy_import_wh", "active_energy_export_wh",
            "reactive_energy_import_varh", "reactive_energy_export_varh")

# Smallest step of each quantity as sent, in our units (mA, 0.1 V, Wh).
_RESOLUTION = {
    "aidon": {"current": 100, "voltage": 1, "energy": 10},
    "kaifa": {"current": 1, "voltage": 1, "energy": 1},
    "kamstrup": {"current": 10, "voltage": 10, "energy": 10},
}

_DEFAULT_IDS = {
    "aidon": ("AIDON_V0001", "7359992890941742", {1: "6515", 3: "6534"}),
    "kaifa": ("KFM_001", "6970631401753985", {1: "MA105H2E", 3: "MA304H4"}),
    "kamstrup": ("Kamstrup_V0001", "5706567274389702",
                 {1: "6861111BN243101040", 3: "6841131BN243101090"}),
}

# OBIS codes (6 bytes) per quantity. Aidon/Kaifa use A-B 1-0, Kamstrup 1-1.
_OBIS_CDE = {
    "active_power_import_w": (1, 7, 0), "active_power_export_w": (2, 7, 0),
    "reactive_power_import_var": (3, 7, 0), "reactive_power_export_var": (4, 7, 0),
    "current_l1_ma": (31, 7, 0), "current_l2_ma": (51, 7, 0), "current_l3_ma": (71, 7, 0),
    "voltage_l1_dv": (32, 7, 0), "voltage_l2_dv": (52, 7, 0), "voltage_l3_dv": (72, 7, 0),
    "active_energy_import_wh": (1, 8, 0), "active_energy_export_wh": (2, 8, 0),
    "reactive_energy_import_varh": (3, 8, 0), "reactive_energy_export_varh": (4, 8, 0),
}
# DLMS units for the Aidon scaler-unit.
_UNIT = {"active_power": 0x1B, "reactive_power": 0x1D, "current": 0x21, "voltage": 0x23,
         "active_energy": 0x1E, "reactive_energy": 0x20}


def _kind(key):
    if key in CURRENTS:
        return "current"
    if key in VOLTAGES:
        return "voltage"
    if key in ENERGIES:
        return "energy"
    return "power"


def resolution(vendor, key):
    """Smallest step of `key` that `vendor` can send (1 for powers)."""
    kind = _kind(key)
    return 1 if kind == "power" else _RESOLUTION[vendor][kind]


def quantise(vendor, values):
    """values rounded down to what vendor's telegram can carry (what decode will return)."""
    out = dict(values)
    for key, v in values.items():
        if key in _OBIS_CDE and v is not None:
            step = resolution(vendor, key)
            out[key] = -(-v // step * step) if v < 0 else v // step * step
    return out


def _clock_tuple(clock):
    if clock is None:
        return None
    if isinstance(clock, dict):
        return (clock["year"], clock["month"], clock["day"], clock["hour"], clock["minute"],
                clock["second"])
    return tuple(clock)[:6]


def _datetime_bytes(clock, vendor):
    y, mo, d, h, mi, s = clock
    try:
        weekday = datetime.date(y, mo, d).isoweekday()  # 1 = Monday .. 7 = Sunday
    except ValueError:
        weekday = 0xFF
    if vendor == "aidon":
        weekday %= 7  # Aidon sends 0 for Sunday
        tail = b"\xff\x00\x00\x00"  # hundredths unspecified, deviation 0, status 0
    else:
        tail = b"\xff\x80\x00\x00"  # deviation unspecified
    return bytes((y >> 8, y & 0xFF, mo, d, weekday, h, mi, s)) + tail


def _u(value, size, key):
    if value < 0 or value >= 1 << (8 * size):
        raise ValueError("%s = %d does not fit an unsigned %d-byte field" % (key, value, size))
    return value.to_bytes(size, "big")


def _s16(value, key):
    if not -0x8000 <= value <= 0x7FFF:
        raise ValueError("%s = %d does not fit a signed 16-bit field" % (key, value))
    return (value & 0xFFFF).to_bytes(2, "big")


def _string(tag, text):
    raw = text.encode("ascii")
    if len(raw) > 127:
        raise ValueError("string too long: %r" % text)
    return bytes((tag, len(raw))) + raw


def _obis(a, b, c, d, e, f=255):
    return bytes((0x09, 6, a, b, c, d, e, f))


def hdlc_frame(address, info):
    """Wrap an information field (LLC + APDU) in an HDLC type-3 frame with HCS and FCS.

    address: destination + source address bytes + control byte, e.g. b"\\x41\\x08\\x83\\x13".
    """
    length = 2 + len(address) + 2 + len(info) + 2
    if length > 2047:
        raise ValueError("frame too long for the 11-bit length field")
    head = bytes((0xA0 | length >> 8, length & 0xFF)) + address
    hcs = crc16(head, 0, len(head))
    body = head + bytes((hcs & 0xFF, hcs >> 8)) + info
    fcs = crc16(body, 0, len(body))
    return b"\x7e" + body + bytes((fcs & 0xFF, fcs >> 8)) + b"\x7e"


def _keys_for(list_no, phases):
    if list_no == 1:
        return ["active_power_import_w"]
    keys = list(POWERS)
    if phases == 1:
        keys += ["current_l1_ma", "voltage_l1_dv"]
    else:
        keys += list(CURRENTS) + list(VOLTAGES)
    if list_no == 3:
        keys += list(ENERGIES)
    return keys


def _ids(vendor, values, phases):
    version, meter_id, types_ = _DEFAULT_IDS[vendor]
    return (values.get("list_version") or version, values.get("meter_id") or meter_id,
            values.get("meter_type") or types_[1 if phases == 1 else 3])


def _aidon(list_no, values, clock, phases):
    items = []
    if list_no > 1:
        version, meter_id, meter_type = _ids("aidon", values, phases)
        items.append(b"\x02\x02" + _obis(1, 1, 0, 2, 129) + _string(0x0A, version))
        items.append(b"\x02\x02" + _obis(0, 0, 96, 1, 0) + _string(0x0A, meter_id))
        items.append(b"\x02\x02" + _obis(0, 0, 96, 1, 7) + _string(0x0A, meter_type))
    for key in _keys_for(list_no, phases):
        v = values.get(key)
        if key == "active_energy_import_wh":  # the clock object precedes the energies
            if clock is None:
                raise ValueError("Aidon list 3 needs a clock")
            hour = (clock[0], clock[1], clock[2], clock[3], 0, 0)  # frozen at xx:00:00
            items.append(b"\x02\x02" + _obis(0, 0, 1, 0, 0) + b"\x09\x0c"
                         + _datetime_bytes(hour, "aidon"))
        if v is None:
            continue  # Aidon omits what it does not measure (6525: no IL2)
        kind = _kind(key)
        if kind == "power":
            raw, scaler = _u(v, 4, key), 0
            unit = _UNIT["active_power" if key.startswith("active") else "reactive_power"]
            value = b"\x06" + raw
        elif kind == "current":
            raw = v // 100 if v >= 0 else -(-v // 100)
            value, scaler, unit = b"\x10" + _s16(raw, key), -1, _UNIT["current"]
        elif kind == "voltage":
            value, scaler, unit = b"\x12" + _u(v, 2, key), -1, _UNIT["voltage"]
        else:
            value, scaler = b"\x06" + _u(v // 10, 4, key), 1
            unit = _UNIT["active_energy" if key.startswith("active") else "reactive_energy"]
        c, d, e = _OBIS_CDE[key]
        items.append(b"\x02\x03" + _obis(1, 0, c, d, e) + value
                     + bytes((0x02, 0x02, 0x0F, scaler & 0xFF, 0x16, unit)))
    body = bytes((0x01, len(items))) + b"".join(items)
    apdu = b"\x0f\x40\x00\x00\x00\x00" + body
    return hdlc_frame(b"\x41\x08\x83\x13", b"\xe6\xe7\x00" + apdu)


def _kaifa(list_no, values, clock, phases):
    if clock is None:
        raise ValueError("Kaifa telegrams carry a date-time: give clock")
    items = []
    if list_no > 1:
        version, meter_id, meter_type = _ids("kaifa", values, phases)
        items += [_string(0x09, version), _string(0x09, meter_id), _string(0x09, meter_type)]
    for key in _keys_for(list_no, phases):
        if key == "active_energy_import_wh":
            items.append(b"\x09\x0c" + _datetime_bytes(clock, "kaifa"))
        v = values.get(key)
        if v is None:
            raise ValueError("Kaifa lists are positional: %s is required" % key)
        items.append(b"\x06" + _u(v, 4, key))
    body = bytes((0x02, len(items))) + b"".join(items)
    apdu = b"\x0f\x40\x00\x00\x00\x09\x0c" + _datetime_bytes(clock, "kaifa") + body
    return hdlc_frame(b"\x01\x02\x01\x10", b"\xe6\xe7\x00" + apdu)


def _kamstrup(list_no, values, clock, phases):
    if list_no == 1:
        raise ValueError("Kamstrup sends no list 1 (its 10-s list is list 2)")
    if clock is None:
        raise ValueError("Kamstrup telegrams carry a date-time: give clock")
    version, meter_id, meter_type = _ids("kamstrup", values, phases)
    items = [_string(0x0A, version),
             _obis(1, 1, 0, 0, 5), _string(0x0A, meter_id),
             _obis(1, 1, 96, 1, 1), _string(0x0A, meter_type)]
    for key in _keys_for(list_no, phases):
        if key == "active_energy_import_wh":
            items += [_obis(0, 1, 1, 0, 0), b"\x09\x0c" + _datetime_bytes(clock, "kamstrup")]
        v = values.get(key)
        if v is None:
            continue  # objects a variant lacks are not pushed (rev 3.1)
        kind = _kind(key)
        if kind == "voltage":
            value = b"\x12" + _u(v // 10, 2, key)
        elif kind == "current" or kind == "energy":
            value = b"\x06" + _u(v // 10, 4, key)
        else:
            value = b"\x06" + _u(v, 4, key)
        c, d, e = _OBIS_CDE[key]
        items += [_obis(1, 1, c, d, e), value]
    body = bytes((0x02, len(items))) + b"".join(items)
    apdu = b"\x0f\x00\x00\x00\x00\x0c" + _datetime_bytes(clock, "kamstrup") + body
    return hdlc_frame(b"\x2b\x21\x13", b"\xe6\xe7\x00" + apdu)


def encode_frame(vendor, list_no, values, clock=None, phases=3):
    """One complete HDLC frame (bytes) of vendor's list list_no (1, 2, 3) with values.

    values: a dict with decode_frame's keys and units (missing keys: the vendor default
    ids, or an error for a Kaifa value). clock: {year..second} dict or a 6-tuple, else
    values["meter_clock"]; Aidon's list 3 clock object is the hour (xx:00:00) of it.
    phases: 1 or 3 (selects the single- or three-phase list layout). ValueError for values
    that the vendor's layout cannot carry.
    """
    if vendor not in VENDORS:
        raise ValueError("vendor must be one of %s" % (VENDORS,))
    if list_no not in (1, 2, 3):
        raise ValueError("list_no must be 1, 2 or 3")
    if phases not in (1, 3):
        raise ValueError("phases must be 1 or 3")
    clock = _clock_tuple(clock if clock is not None else values.get("meter_clock"))
    return {"aidon": _aidon, "kaifa": _kaifa, "kamstrup": _kamstrup}[vendor](
        list_no, values, clock, phases)


# Cadence in ms: (list 1 period or None, list 2 period, list 3 second within the hour).
_CADENCE = {"aidon": (2500, 10000, 10), "kaifa": (2000, 10000, 10), "kamstrup": (None, 10000, 5)}


class MeterSimulator:
    """A simulated meter: telegrams() yields (t_seconds_since_start, frame) forever.

    Aidon: list 1 every 2.5 s, list 2 every 10 s, list 3 at xx:00:10 (values frozen at
    xx:00:00). Kaifa: list 1 every 2 s, list 2 every 10 s, list 3 at xx:00:10 (in the
    list 2 slot). Kamstrup: list 2 every 10 s, list 3 at xx:00:05. Power follows a seeded
    random walk; energy registers integrate it exactly (integer W*ms).
    """

    def __init__(self, vendor="aidon", phases=3, start=(2026, 11, 25, 10, 59, 30), seed=1,
                 stale_list3=0.0):
        if vendor not in VENDORS:
            raise ValueError("vendor must be one of %s" % (VENDORS,))
        self.vendor = vendor
        self.phases = phases
        self.start = datetime.datetime(*start)
        self.rng = random.Random(seed)
        self.power_w = 1500 + self.rng.randrange(2000)
        self.export_w = 0
        self.reactive_import_var = self.rng.randrange(300)
        self.reactive_export_var = self.rng.randrange(500)
        self.voltages_dv = [2300 + self.rng.randrange(-40, 40) for _ in range(3)]
        self.shares = [1, 1, 1]
        # energy in W*ms (3,600,000 W*ms = 1 Wh), started at a plausible meter reading
        self._energy = [self.rng.randrange(10**6, 10**8) * 3600000, 0,
                        self.rng.randrange(10**5, 10**6) * 3600000,
                        self.rng.randrange(10**5, 10**7) * 3600000]
        self._last_ms = 0
        self.frozen = None  # energies (Wh) at the last full hour
        # Aidon quirk (han-protocol notes 9.4): with this probability an hourly list repeats
        # the previous hour's clock and energies (fresh instantaneous values).
        self.stale_list3 = stale_list3
        self._last_list3 = None  # (clock, energies) of the last hourly list sent

    def _walk(self, now_ms):
        dt = now_ms - self._last_ms
        if dt > 0:
            powers = (self.power_w, self.export_w, self.reactive_import_var,
                      self.reactive_export_var)
            for i in range(4):
                self._energy[i] += powers[i] * dt
            self._last_ms = now_ms
        rng = self.rng
        limit = 6000 if self.phases == 1 else 16000
        self.power_w = min(limit, max(50, self.power_w + rng.randrange(-150, 151)))
        self.reactive_import_var = min(2000, max(0, self.reactive_import_var
                                                 + rng.randrange(-20, 21)))
        self.reactive_export_var = min(2000, max(0, self.reactive_export_var
                                                 + rng.randrange(-20, 21)))
        for i in range(3):
            self.voltages_dv[i] = min(2530, max(2070, self.voltages_dv[i]
                                                + rng.randrange(-8, 9)))
            self.shares[i] = min(8, max(1, self.shares[i] + rng.choice((-1, 0, 0, 1))))

    def energies_wh(self):
        """Current energy registers in Wh (import, export, reactive import, export)."""
        return [e // 3600000 for e in self._energy]

    def values(self):
        """The instantaneous values (our units) the meter would send now."""
        v = {"active_power_import_w": self.power_w, "active_power_export_w": self.export_w,
             "reactive_power_import_var": self.reactive_import_var,
             "reactive_power_export_var": self.reactive_export_var}
        if self.phases == 1:
            v["voltage_l1_dv"] = self.voltages_dv[0]
            v["current_l1_ma"] = self.power_w * 10000 // self.voltages_dv[0]
        else:
            total = sum(self.shares)
            for i in range(3):
                p = self.power_w * self.shares[i] // total
                v[VOLTAGES[i]] = self.voltages_dv[i]
                v[CURRENTS[i]] = p * 10000 // self.voltages_dv[i]
        return v

    def telegrams(self):
        """Endless iterator of (t_seconds_since_start, frame_bytes) in time order."""
        l1, l2, l3_second = _CADENCE[self.vendor]
        step = 500  # ms grid that holds every cadence (2 s, 2.5 s, 10 s, xx:00:05)
        start = self.start
        t = 0
        # first slot at or after the start on the grid of the wall clock
        while True:
            now = start + datetime.timedelta(milliseconds=t)
            ms_in_hour = (now.minute * 60 + now.second) * 1000 + now.microsecond // 1000
            kind = None
            if ms_in_hour == l3_second * 1000:
                kind = 3
            elif ms_in_hour % l2 == 0:
                kind = 2
            elif l1 is not None and (ms_in_hour % l2) % l1 == 0:
                kind = 1
            if ms_in_hour == 0:  # the meter freezes its registers at the full hour
                self._walk(t)
                self.frozen = self.energies_wh()
            if kind is not None:
                self._walk(t)
                values = self.values()
                clock = (now.year, now.month, now.day, now.hour, now.minute, now.second)
                if kind == 3:
                    if self.frozen is None:
                        self.frozen = self.energies_wh()
                    energies = self.frozen
                    if self._last_list3 is not None and self.stale_list3 and \
                            self.rng.random() < self.stale_list3:
                        clock, energies = self._last_list3  # the stale repeat
                    else:
                        self._last_list3 = (clock, energies)
                    for key, wh in zip(ENERGIES, energies):
                        values[key] = wh
                yield t / 1000, encode_frame(self.vendor, kind, values, clock, self.phases)
            t += step

    def paced(self, speed=1.0, sleep=time.sleep, monotonic=time.monotonic):
        """telegrams() at wall-clock pace, speed times faster than real time."""
        t0 = monotonic()
        for t, frame in self.telegrams():
            delay = t0 + t / speed - monotonic()
            if delay > 0:
                sleep(delay)
            yield t, frame
