"""The scaling factor's range and its Modbus write rules (han2x-spec; docs/registers.md
"Scaling factor (40049-40050, mirrored at 40045-40046)"): a 32-bit value written one word
at a time, where a high word written alone waits up to 30 s for its low word and a low word
commits. Pure: used by registers.py, which serves the value.
"""

from micropython import const

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
