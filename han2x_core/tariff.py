"""The capacity tariff (kapasitetsledd, effekttrinn): this month's peaks, its step, and how
many kWh are left this hour (docs/tariff.md).

Hourly energy is the difference of the meter's consecutive hourly import totals (list 3),
on the meter's own clock; between them the hour's use is integrated from power (integers,
W x ms) and replaced by the exact value when the hour's total arrives. Kept: the MAX_PEAKS
highest hours of the month on different days, as fixed lists of ints (no growing state).
Opt-in (setting "tariff"): App imports this module only when it is on. Sans-I/O: time comes
in as now_ms, the meter clock as the reading's dict. Saved and restored by tariffstate.py
(loaded only for that) in energystate.py's file.
"""

import struct

from micropython import const

from han2x_core.ticks import ticks_diff

MAX_PEAKS = const(5)
_HOUR_MS = const(3600000)  # also W x ms in one Wh
_MAX_STEP_MS = const(60000)  # a longer gap between telegrams counts as this long (stale)
_FROZEN_DELAY_MS = const(10000)  # energy.py: totals frozen at xx:00:00, sent ~10 s later
_MAX_DELAY_MS = const(120000)
_MAX_GAP_H = const(744)  # a longer outage (31 days) is not spread over its hours
_NONE32 = 0xFFFFFFFF  # register value for "no upper bound"
REG_COUNT = const(22)  # registers served from registers.TARIFF_OFF (docs/registers.md)


def days(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def civil(z):
    """(year, month, day) of days since 1970-01-01."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, doy - (153 * mp + 2) // 5 + 1


def hour_index(clock):
    """Hours since 1970 of the meter's local clock dict (its own time, as it shows it)."""
    return days(clock["year"], clock["month"], clock["day"]) * 24 + clock["hour"]


def _spring_gap(idx):
    """True when idx is local 03:00 on the last Sunday of March: 02:00-03:00 does not exist
    (Norway's daylight-saving start), so a total at 01:00 then 03:00 is one real hour."""
    z = idx // 24
    y, m, d = civil(z)
    return m == 3 and d >= 25 and (z + 4) % 7 == 0 and idx % 24 == 3


def steps_of(text):
    """tariff_steps as settings.validate leaves it ("2 5 10.25": kW, ascending, at most 3
    decimals; what may be written is settings.steps_w) -> tuple of W."""
    out = []
    for part in text.split():
        cut = part.find(".")
        if cut < 0:
            out.append(int(part) * 1000)
        else:
            out.append(int(part[:cut]) * 1000 + int((part[cut + 1:] + "00")[:3]))
    return tuple(out)


class Tariff:
    """The month's peaks and this hour. steps: ascending thresholds in W (steps_of);
    peaks: how many of the highest days count (1..MAX_PEAKS); scaling as the registers'."""

    def __init__(self, peaks=3, steps=(2000, 5000, 10000, 15000, 20000, 25000, 50000,
                                       75000, 100000), scaling=1000):
        self.n = peaks
        self.steps = steps
        self.scaling = scaling
        self.year = 0  # the month the peaks belong to (0 = none yet)
        self.month = 0
        self.count = 0  # peaks held, <= MAX_PEAKS, highest first
        self.peak_wh = [0] * MAX_PEAKS
        self.peak_at = [0] * MAX_PEAKS  # day * 100 + hour
        self.prev_avg_w = -1  # last month's value, -1 = unknown
        self.last_total = -1  # meter's last hourly import total, Wh unscaled (-1 = none)
        self.last_idx = -1  # hour_index of that total = start of the current hour
        self.used_wh = 0  # this hour so far (scaled Wh), integrated
        self._acc = 0  # remainder, W x ms
        self.power_w = 0  # current import power (scaled)
        self.hour_ms = 0  # position in the current hour, ms
        self._ms = None  # tick of the last integration step
        self._backfill = True  # after a start: the hour's first part from the first clock
        self.restored = False
        self.warning = None  # peaks not restored (damaged file): shown until a good save
        self.hours = 0  # hourly totals taken (the app saves on change)

    def configure(self, settings):
        """Validated settings (settings.validate): the schema is not loaded for this."""
        self.n = settings.get("tariff_peaks", self.n)
        self.steps = steps_of(settings.get("tariff_steps", "")) or self.steps
        self.scaling = settings.get("scaling_factor", self.scaling)

    def _scaled(self, v):
        return v * self.scaling // 1000

    # ---- feeding -------------------------------------------------------------------------

    def feed(self, reading, now_ms):
        """Take one decoded telegram (any list), after Registers.update."""
        self._integrate(now_ms)
        p = reading.get("active_power_import_w")
        if p is not None:
            self.power_w = self._scaled(p)
        clock = reading.get("meter_clock")
        total = reading.get("active_energy_import_wh")
        if total is not None and clock:
            self.hourly(clock, total)
        elif clock and self._backfill:
            # First clock after a start: the hour had begun before; count its first part
            # at the current power (the hour's total corrects it).
            self._backfill = False
            ms = (clock["minute"] * 60 + clock["second"]) * 1000
            self.hour_ms = ms
            if self.last_idx < 0 or hour_index(clock) >= self.last_idx:
                self.used_wh = self.power_w * ms // _HOUR_MS
                self._acc = self.power_w * ms % _HOUR_MS

    def _integrate(self, now_ms):
        last = self._ms
        self._ms = now_ms
        if last is None:
            return
        dt = ticks_diff(now_ms, last)
        if dt <= 0:
            return
        if dt > _MAX_STEP_MS:
            dt = _MAX_STEP_MS
        self.hour_ms += dt
        self._add(self.power_w * dt)

    def _add(self, wms):
        acc = self._acc + wms
        if acc >= _HOUR_MS:
            self.used_wh += acc // _HOUR_MS
            acc %= _HOUR_MS
        self._acc = acc

    def hourly(self, clock, total):
        """The meter's hourly import total (Wh, unscaled) at its clock. Returns 1 taken,
        -1 ignored (Aidon's repeated hour), 0 re-based (first, meter changed, clock reset)."""
        idx = hour_index(clock)
        last = self.last_idx
        k = idx - last
        if last >= 0 and k <= 0 and total <= self.last_total:
            return -1  # the same hour again (Aidon repeats its hourly list)
        taken = 0
        if last >= 0 and total >= self.last_total:
            if k == 0:
                k = 1  # autumn: the clock repeats 02:00 with a larger total, a real hour
            elif k == 2 and _spring_gap(idx):
                k = 1
            if 0 < k <= _MAX_GAP_H:
                diff = self._scaled(total - self.last_total)
                # One hour: its exact energy. An outage of k hours: spread evenly (the
                # meter's own hourly values are not sent again), each a candidate peak.
                for i in range(k):
                    part = diff // k + (diff % k if i == k - 1 else 0)
                    self._hour(last + i if k > 1 else last, part)
                taken = 1
        self.last_total = total
        self.last_idx = idx
        self._enter(idx)  # the hour that starts now may open a new month
        self.hours += 1
        late = (clock["minute"] * 60 + clock["second"]) * 1000
        delay = _FROZEN_DELAY_MS if late == 0 else late if late <= _MAX_DELAY_MS else 0
        self.hour_ms = delay
        self.used_wh = self.power_w * delay // _HOUR_MS
        self._acc = self.power_w * delay % _HOUR_MS
        self._backfill = False
        self.restored = False
        return taken

    def _enter(self, idx):
        """Make idx's month the peaks' month; a later month starts empty."""
        y, m, _ = civil(idx // 24)
        if y * 12 + m > self.year * 12 + self.month:
            if self.year:
                self.prev_avg_w = self.average_w()
            self.year = y
            self.month = m
            self.count = 0
            return True
        return y == self.year and m == self.month

    def _hour(self, idx, wh):
        """A finished hour (local hour_index of its start) with its energy, scaled Wh."""
        if not self._enter(idx):
            return  # an hour of an earlier month: that month is over
        day = civil(idx // 24)[2]
        self.add_peak(day, idx % 24, wh)

    def add_peak(self, day, hour, wh):
        """Keep wh if it is among the month's highest, one per day."""
        at = day * 100 + hour
        pw = self.peak_wh
        pa = self.peak_at
        n = self.count
        for i in range(n):
            if pa[i] // 100 == day:
                if wh <= pw[i]:
                    return
                pw[i] = wh
                pa[i] = at
                self._bubble(i)
                return
        if n < MAX_PEAKS:
            self.count = n + 1
        elif wh <= pw[n - 1]:
            return
        else:
            n -= 1
        pw[n] = wh
        pa[n] = at
        self._bubble(n)

    def _bubble(self, i):
        pw = self.peak_wh
        pa = self.peak_at
        while i > 0 and pw[i] > pw[i - 1]:
            pw[i], pw[i - 1] = pw[i - 1], pw[i]
            pa[i], pa[i - 1] = pa[i - 1], pa[i]
            i -= 1

    def clear(self):
        self.count = 0

    # ---- figures ---------------------------------------------------------------------------

    def counted(self):
        return self.count if self.count < self.n else self.n

    def average_w(self):
        """The month's capacity value: the average of the counted peaks, W (0 when none)."""
        c = self.counted()
        if not c:
            return 0
        s = 0
        for i in range(c):
            s += self.peak_wh[i]
        return s // c

    def step(self, avg_w):
        """(index from 1, from W, to W or None) of the step avg_w falls in."""
        lo = 0
        steps = self.steps
        for i in range(len(steps)):
            if avg_w < steps[i]:
                return i + 1, lo, steps[i]
            lo = steps[i]
        return len(steps) + 1, lo, None

    def estimate_wh(self):
        """This hour at its end if the current power holds."""
        rest = _HOUR_MS - self.hour_ms
        return self.used_wh + (self.power_w * rest // _HOUR_MS if rest > 0 else 0)

    def limit_wh(self):
        """How large this hour may get before the month's value reaches the next step's
        threshold if this hour became a peak; None in the top step."""
        upper = self.step(self.average_w())[2]
        if upper is None:
            return None
        c = self.counted()
        pw = self.peak_wh
        rest = 0  # the counted peaks that would stay
        day = -1
        if self.last_idx >= 0:
            y, m, day = civil(self.last_idx // 24)
            if y != self.year or m != self.month:
                c = 0  # the current hour opens a month whose peaks are not in yet
        mine = -1
        for i in range(c):
            if self.peak_at[i] // 100 == day:
                mine = i
        if mine >= 0:  # today is a peak day: this hour would replace today's peak
            for i in range(c):
                rest += pw[i] if i != mine else 0
            return upper * c - rest
        if c < self.n:  # another peak day would join
            for i in range(c):
                rest += pw[i]
            return upper * (c + 1) - rest
        for i in range(c - 1):  # it would push out the lowest
            rest += pw[i]
        return upper * c - rest

    def left_wh(self):
        """kWh left this hour (as Wh), never below 0; None in the top step."""
        limit = self.limit_wh()
        if limit is None:
            return None
        left = limit - self.used_wh
        return left if left > 0 else 0

    def status(self):
        """The /api/status "tariff" object (docs/web.md)."""
        avg = self.average_w()
        index, lo, hi = self.step(avg)
        peaks = []
        for i in range(self.count):  # allocates: per API request only
            at = self.peak_at[i]
            peaks.append({"date": "%04d-%02d-%02d" % (self.year, self.month, at // 100),
                          "hour": at % 100, "kwh": self.peak_wh[i] / 1000,
                          "counted": i < self.n})
        left = self.left_wh()
        est = self.estimate_wh()
        limit = self.limit_wh()
        return {"peaks": peaks, "average_kw": avg / 1000,
                "step": {"from_kw": lo / 1000, "to_kw": None if hi is None else hi / 1000,
                         "index": index},
                "hour_used_kwh": self.used_wh / 1000, "hour_estimate_kwh": est / 1000,
                "kwh_left": None if left is None else left / 1000,
                "will_cross": limit is not None and est >= limit,
                "month": "%04d-%02d" % (self.year, self.month) if self.year else None,
                "peaks_counted": self.n, "restored": self.restored,
                "previous_average_kw": None if self.prev_avg_w < 0 else self.prev_avg_w / 1000,
                "warning": self.warning}

    def render(self, image, off):
        """Write the REG_COUNT tariff registers at offset off (docs/registers.md)."""
        avg = self.average_w()
        index, _, hi = self.step(avg)
        left = self.left_wh()
        est = self.estimate_wh()
        limit = self.limit_wh()
        flags = 1 | (2 if self.restored else 0) | (4 if self.warning else 0) | (
            8 if limit is not None and est >= limit else 0)
        struct.pack_into(">HH", image, 2 * off, flags, index)
        _put32(image, off + 2, avg)
        _put32(image, off + 4, _NONE32 if hi is None else hi)
        _put32(image, off + 6, self.used_wh)
        _put32(image, off + 8, est)
        _put32(image, off + 10, _NONE32 if left is None else left)
        for i in range(MAX_PEAKS):
            _put32(image, off + 12 + 2 * i, self.peak_wh[i] if i < self.count else 0)


def _put32(image, offset, value):
    if value > _NONE32:
        value = _NONE32
    elif value < 0:
        value = 0
    struct.pack_into(">HH", image, 2 * offset, value >> 16, value & 0xFFFF)
