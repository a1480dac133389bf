"""Wrap-safe millisecond ticks, as supervisor.ticks_ms() counts them (period 2**29).

Never compare raw ticks: use ticks_diff. Works on CPython, MicroPython and
CircuitPython; every value stays a small int (below 2**30) on the RP2040.
"""

from micropython import const

_MASK = const((1 << 29) - 1)
_HALF = const(1 << 28)


def ticks_add(ticks, delta):
    """Return ticks + delta on the wrapping clock."""
    return (ticks + delta) & _MASK


def ticks_diff(a, b):
    """Return a - b in ms, correct across one wrap (result in -2**28 .. 2**28 - 1)."""
    return ((a - b + _HALF) & _MASK) - _HALF
