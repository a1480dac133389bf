"""The scaling factor's range and its Modbus write rules (han2x-spec; docs/registers.md
"Scaling factor (40049-40050, mirrored at 40045-40046)"): a 32-bit value written one word
at a time, where a high word written alone waits up to 30 s for its low word and a low word
commits; and ScalingSaver, which persists a written factor coalesced. Pure: used by
registers.py, which serves the value.
"""

from micropython import const

from han2x_core.ticks import ticks_diff

SCALING_MIN = const(10)
SCALING_MAX = const(1000000)
SCALING_DEFAULT = const(1000)

_PENDING_MS = const(30000)  # an FC06 high word waits this long for its low word


class ScalingWrite:
    """What a scaling-factor write leaves between its words. pending_hi: a high word
    waiting for its low word, -1 = none; tick(dt) forgets it after 30 s."""

    def __init__(self):
        self.pending_hi = -1
        self._pending_ms = 0

    def tick(self, dt):
        """dt ms have passed (call while pending_hi >= 0)."""
        self._pending_ms += dt
        if self._pending_ms > _PENDING_MS:
            self.pending_hi = -1

    def write(self, value, start, data, off, count):
        """Apply count big-endian words from data[off:] at offsets start.. (each one of 44,
        45, 48, 49: the caller checked) to the current factor `value`. Returns the new
        factor (maybe unchanged), or -1 for an illegal value (exception 3; nothing kept)."""
        pending = self.pending_hi
        for i in range(count):
            word = (data[off + 2 * i] << 8) | data[off + 2 * i + 1]
            if (start + i) & 1 == 0:  # high word (44 or 48)
                if word > (SCALING_MAX >> 16):
                    return -1
                pending = word
            else:
                hi = pending if pending >= 0 else value >> 16
                value = (hi << 16) | word
                if not SCALING_MIN <= value <= SCALING_MAX:
                    return -1
                pending = -1
        if pending >= 0:
            # A high word alone: applied at once when it makes a valid value with the current
            # low word, and remembered either way so that a following low word completes it.
            candidate = (pending << 16) | (value & 0xFFFF)
            if SCALING_MIN <= candidate <= SCALING_MAX:
                value = candidate
            self.pending_hi = pending
            self._pending_ms = 0
        else:
            self.pending_hi = -1
        return value


_SAVE_EVERY_MS = const(60000)  # a factor written over Modbus is saved at most this often
_SETTLE_MS = const(1000)  # ... and once it has not changed for this long (FC06 word pairs)


class ScalingSaver:
    """Persists a scaling factor written over Modbus without wearing out the flash: the
    registers apply it at once (Registers.on_scaling_change = saver.changed), the settings
    file gets it at most once a minute, the last value winning. scaling_unsaved: the value
    not yet in the file (None = saved); power lost before then keeps the last saved one.
    A polled service (App.add)."""

    name = "scaling"

    def __init__(self, app, every_ms=_SAVE_EVERY_MS):
        self.app = app
        self.every_ms = every_ms
        self.scaling_unsaved = None
        self.saves = 0
        self._saved_ms = None
        self._changed = False
        self._changed_ms = 0

    def changed(self, value):
        settings = dict(self.app.settings)  # allocates (per changing write)
        settings["scaling_factor"] = value
        self.app.settings = settings  # a settings page save meanwhile keeps (and saves) it
        self.scaling_unsaved = value
        self._changed = True

    def poll(self, now_ms):
        if self.scaling_unsaved is None:
            return
        if self._changed:  # (re)start the settle time
            self._changed = False
            self._changed_ms = now_ms
            return
        if ticks_diff(now_ms, self._changed_ms) < _SETTLE_MS or (
                self._saved_ms is not None and
                ticks_diff(now_ms, self._saved_ms) < self.every_ms):
            return
        self.flush(now_ms)

    def stop(self):
        """A clean stop (the PC simulator's Device.close): save now."""
        self.flush()

    def flush(self, now_ms=None):
        """Save the unsaved value now (also at a clean stop on the PC). A failed save (the
        app shows why) is tried again a minute later."""
        value = self.scaling_unsaved
        if value is None:
            return
        self._saved_ms = now_ms
        self.saves += 1
        if not self.app.save_settings({"scaling_factor": value}):
            if self.scaling_unsaved == value:
                self.scaling_unsaved = None
