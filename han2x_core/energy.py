"""Estimated energy between the meter's hourly totals (han2x-spec, docs/registers.md
"Estimated energy"): each hourly total re-bases an estimate that adds power x time, in
integers, and never goes backwards. Aidon's repeated old hour is recognised and ignored.
The last totals and estimates survive a restart through restore() (docs/registers.md
"Energy across restarts"); while the meter id stays the same neither ever decreases.
Sans-I/O: time comes in as now_ms. Used by registers.py.
"""

from micropython import const

from han2x_core.ticks import ticks_diff

_WMS_PER_WH = const(3600000)  # W x ms in one Wh
_FROZEN_DELAY_MS = const(10000)  # hourly totals are frozen at xx:00:00 and sent ~10 s later
_MAX_DELAY_MS = const(120000)
_MAX_STEP_MS = const(60000)  # registers.STALE_MS: a longer gap counts as this long

# A+, A-, R+, R-: the reading keys of the four totals, in register order.
TOTAL_KEYS = ("active_energy_import_wh", "active_energy_export_wh",
              "reactive_energy_import_varh", "reactive_energy_export_varh")
_CLOCK_KEYS = ("year", "month", "day", "hour", "minute", "second")


class EnergyEstimate:
    """Four estimates, one per total. power arguments are the current A+, A-, R+, R- power
    in W / var (the first four items of a list). est_ms: tick of the last integration step,
    None until the first telegram; have_base: an hourly total has arrived since the start;
    restored: values came from restore() and no hourly total has confirmed them yet."""

    def __init__(self):
        self._base = [0] * 4  # last hourly total, Wh
        self._since = [0] * 4  # whole Wh integrated since that total
        self._acc = [0] * 4  # remainder, W x ms (< 3.6e6)
        self._served = [0] * 4  # last estimate served, Wh: never goes backwards
        self.top = [0] * 4  # highest hourly total of this meter, Wh: never goes backwards
        self.have_base = False
        self.restored = False
        self._totals_clock = None
        self.est_ms = None

    def forget(self):
        """Another meter: start again from its first hourly total."""
        for i in range(4):
            self._base[i] = self._since[i] = self._acc[i] = self._served[i] = self.top[i] = 0
        self.have_base = False
        self.restored = False
        self._totals_clock = None

    def restore(self, clock, totals, estimates):
        """Values saved before a restart (energystate.py): served at once, held (no
        integration) until the meter's next hourly total, which never lowers them."""
        for i in range(4):
            self._base[i] = self.top[i] = totals[i]
            self._served[i] = estimates[i] if estimates[i] > totals[i] else totals[i]
        self._totals_clock = clock  # so a repeat of that hour is still recognised
        self.restored = True

    def state(self):
        """(meter clock tuple or None, totals, estimates) to save; lists are copies."""
        return self._totals_clock, list(self.top), list(self._served)

    def totals(self, reading, power, now_ms):
        """Take the hourly totals of a decoded reading. Returns 1 when taken, 0 when the
        reading has none, -1 for an old hour repeated (ignored)."""
        have = False
        for i in range(4):
            if reading.get(TOTAL_KEYS[i]) is not None:
                have = True
        if not have:
            return 0
        clock = reading.get("meter_clock")
        key = None
        if clock:
            key = tuple(clock.get(k) or 0 for k in _CLOCK_KEYS)  # allocates (hourly)
            old = self._totals_clock
            if old is not None and (key < old or key == old and not self.restored) and \
                    not self._grew(reading):
                # Aidon may repeat the previous hour's list: same or older meter clock and
                # no total above ours. (A clock that goes back with larger totals is the
                # autumn daylight-saving change: taken. The restored hour itself, sent
                # again after a restart, is taken: the original map shows it.)
                return -1
        self._totals_clock = key
        # The totals are the meter's registers frozen at the full hour; the telegram comes
        # seconds later (han-protocol.md: xx:00:10, Kamstrup xx:00:05). Credit the energy
        # of that delay at the current power, from the meter's clock when it says how late
        # it is, else the usual 10 s (Aidon stamps the list with the freeze time xx:00:00).
        delay_ms = _FROZEN_DELAY_MS
        if clock:
            late_ms = ((clock.get("minute") or 0) * 60 + (clock.get("second") or 0)) * 1000
            if 0 < late_ms <= _MAX_DELAY_MS:
                delay_ms = late_ms
            elif late_ms > _MAX_DELAY_MS:
                delay_ms = 0  # not an hourly freeze we understand: no credit
        for i in range(4):
            total = reading.get(TOTAL_KEYS[i])
            if total is None:
                continue
            if not self.have_base or total != self._base[i]:
                # Re-base: the estimate restarts from the meter's own total.
                self._base[i] = total
                self._since[i] = 0
                self._acc[i] = 0
                self._add(i, power[i] * delay_ms)
            if total > self.top[i]:
                self.top[i] = total
        self.have_base = True
        self.restored = False
        self.est_ms = now_ms
        return 1

    def _grew(self, reading):
        for i in range(4):
            total = reading.get(TOTAL_KEYS[i])
            if total is not None and total > self._base[i]:
                return True
        return False

    def integrate(self, power, now_ms, fresh):
        """Add power x elapsed time since the last step (integers only). fresh: the power
        is from a telegram young enough to count; else the estimate holds."""
        if self.est_ms is None:
            return
        dt = ticks_diff(now_ms, self.est_ms)
        if dt <= 0:
            return
        self.est_ms = now_ms
        if not self.have_base or not fresh:
            return  # no total to add to, or no fresh power: hold the estimate
        if dt > _MAX_STEP_MS:
            dt = _MAX_STEP_MS
        for i in range(4):
            self._add(i, power[i] * dt)

    def _add(self, i, wms):
        """Add W x ms to estimate i: whole Wh to _since, the remainder kept (integers only)."""
        acc = self._acc[i] + wms
        if acc >= _WMS_PER_WH:
            whole = acc // _WMS_PER_WH
            self._since[i] += whole
            acc -= whole * _WMS_PER_WH
        self._acc[i] = acc

    def estimate(self, i):
        """Estimate i in Wh: before the first hourly total the restored value (0 when none),
        else never less than the value returned before (after a re-base or a restore)."""
        if not self.have_base:
            return self._served[i]
        est = self._base[i] + self._since[i]
        if est < self._served[i]:
            est = self._served[i]
        self._served[i] = est
        return est
