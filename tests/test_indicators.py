"""indicators.py: HAN/POWER LEDs and the FACTRESET button, on an injected clock."""

import pytest

from han2x_core import indicators as I
from han2x_core.indicators import Indicators
from han2x_core.ticks import ticks_add

WRAP_NEAR = (1 << 29) - 7000  # start close to the tick wrap: every test crosses it


class Rig:
    def __init__(self, start=WRAP_NEAR, **kw):
        self.now = start
        self.resets = []
        self.saved = True
        self.ind = Indicators(start, on_factory_reset=self._reset, **kw)
        self.pressed = False
        self.last_frame = None

    def _reset(self, now_ms):
        self.resets.append(now_ms)
        return self.saved

    def run(self, ms, step=10):
        """Advance ms milliseconds; return the HAN LED samples."""
        out = []
        for _ in range(ms // step):
            self.now = ticks_add(self.now, step)
            self.ind.update(self.now, self.pressed, self.last_frame)
            out.append(self.ind.han_led)
            assert self.ind.power_led is True
        return out


def test_han_led_follows_telegrams_for_60_s():
    r = Rig()
    assert r.run(1000) == [False] * 100
    r.last_frame = r.now
    lit = r.run(60000, step=100)
    assert all(lit[:-1]) and not lit[-1]  # 59.9 s lit, dark at 60.0 s
    r.last_frame = r.now
    assert r.run(1000)[-1] is True
    assert r.run(120000, step=1000)[-1] is False


def test_factory_reset_after_hold_then_fast_blink():
    r = Rig()
    r.run(200)
    r.last_frame = r.now
    r.pressed = True
    held = r.run(I.RESET_HOLD_MS - 100)
    assert r.resets == [] and not any(held[10:])  # dark while counting
    r.run(200)
    assert len(r.resets) == 1
    blink = r.run(2000)  # still held: keeps blinking, fires once only
    assert len(r.resets) == 1 and 0 < sum(blink) < len(blink)
    on = I.BLINK_FACTORY_RESET[0]
    assert blink[: on // 10].count(blink[0]) >= on // 10 - 1  # 100 ms periods
    r.pressed = False
    after = r.run(I.BLINK_FACTORY_RESET[2] + 500)
    assert 0 < sum(after[:250]) < 250  # blinks on for 3 s after release
    assert after[-1] is True  # then back to the telegram state (frame < 60 s ago)
    assert r.ind.factory_resets == 1


def test_short_press_does_nothing():
    r = Rig()
    r.run(100)
    for _ in range(5):
        r.pressed = True
        r.run(I.RESET_HOLD_MS - 500)
        r.pressed = False
        r.run(300)
    assert r.resets == []


def test_bounce_does_not_restart_or_trigger():
    r = Rig()
    r.run(100)
    r.pressed = True
    for _ in range(400):  # 8 s of a contact that chatters every 20 ms: never stable
        r.pressed = not r.pressed
        r.run(20)
    assert r.resets == []


def test_held_at_power_up_is_ignored_until_released():
    r = Rig()
    r.pressed = True  # boot.py saw it: DHCP mode; code.py must not also reset
    r.run(20000, step=50)
    assert r.resets == []
    r.pressed = False
    r.run(200)
    r.pressed = True
    r.run(I.RESET_HOLD_MS + 200)
    assert len(r.resets) == 1


def test_stuck_button_fires_once():
    r = Rig()
    r.run(100)
    r.pressed = True
    r.run(60000, step=100)
    assert len(r.resets) == 1


def test_reset_not_saved_shows_long_blinks():
    r = Rig()
    r.saved = False
    r.run(100)
    r.pressed = True
    r.run(I.RESET_HOLD_MS + 100)
    r.pressed = False
    on, off, duration = I.BLINK_RESET_NOT_SAVED
    seq = r.run(duration - 200)
    runs = []
    for v in seq:
        if runs and runs[-1][0] == v:
            runs[-1][1] += 1
        else:
            runs.append([v, 1])
    assert max(n for v, n in runs if v) * 10 >= on - 20


@pytest.mark.parametrize("pattern", [I.BLINK_DHCP, I.BLINK_FACTORY_RESET])
def test_blink_pattern_timing(pattern):
    on, off, duration = pattern
    r = Rig()
    r.ind.blink(pattern, r.now)
    seq = r.run(duration + 1000, step=10)
    period = (on + off) // 10
    lit = seq[: duration // 10]
    for k in range(len(lit) - 1):
        assert lit[k] == ((k + 1) % period < on // 10), k
    assert not any(seq[duration // 10 + 1:])  # no telegram: dark after the pattern


def test_custom_hold_time():
    r = Rig(hold_ms=10000)
    r.run(100)
    r.pressed = True
    r.run(9000)
    assert r.resets == []
    r.run(1200)
    assert len(r.resets) == 1
