"""indicators.py on the MicroPython VM."""

from han2x_core import indicators as I
from han2x_core.ticks import ticks_add


def _run(ind, now, ms, pressed, last_frame):
    for _ in range(ms // 10):
        now = ticks_add(now, 10)
        ind.update(now, pressed, last_frame)
    return now


def test_han_led_and_reset():
    resets = []
    now = (1 << 29) - 3000
    ind = I.Indicators(now, on_factory_reset=lambda t: resets.append(t) or True)
    now = _run(ind, now, 100, False, None)
    assert ind.han_led is False and ind.power_led is True
    frame = now
    now = _run(ind, now, 1000, False, frame)
    assert ind.han_led is True
    now = _run(ind, now, I.RESET_HOLD_MS + 200, True, frame)
    assert len(resets) == 1 and ind.blinking
    now = _run(ind, now, 4000, False, frame)
    assert not ind.blinking and ind.han_led is True
    now = _run(ind, now, 60000, False, frame)
    assert ind.han_led is False


def test_zz_release_modules():
    """Runs last in this file: drop han2x_core.indicators from the shared heap (the runner keeps
    one process for every file; the modules tested later do not need this one)."""
    import sys

    import han2x_core

    sys.modules.pop("han2x_core.indicators", None)
    try:
        delattr(han2x_core, "indicators")
    except AttributeError:
        pass


def test_update_does_not_allocate():
    import micropython

    ind = I.Indicators(0)
    ind.update(10, False, 5)
    ind.blink(I.BLINK_DHCP, 10)
    micropython.heap_lock()
    try:
        for t in range(20, 4000, 10):
            ind.update(t, t > 2000, 5)
    finally:
        micropython.heap_unlock()
    assert ind.han_led is False  # the button is held: dark while counting
