"""tariff.py on the MicroPython VM at 192k: a month (October 2026, the autumn clock change,
a 3-hour outage, Aidon's repeated hourly list, into November) with a telegram every
minute; the heap the tariff holds is the same on the 31st as on the 1st."""

import gc

from han2x_core.tariff import Tariff, days

_DST_END = days(2026, 10, 25) * 24 + 1  # local index where 02:00 repeats (UTC 01:00)


def _clock(y, mo, d, h, mi, s):
    return {"year": y, "month": mo, "day": d, "hour": h, "minute": mi, "second": s}


def _month(t, on_day=None):
    """Feed a month; on_day(day) after each local midnight's total."""
    from han2x_core.tariff import civil

    total = 5000000
    now = (1 << 29) - 600000  # the board's ticks wrap during the month
    start = days(2026, 10, 1) * 24
    last_clock = None
    for u in range(start, start + 31 * 24 + 3):  # real hours, labelled on local time
        local = u + (0 if u < _DST_END + 1 else -1)  # the repeated 02:00 hour
        y, mo, d = civil(local // 24)
        h = local % 24
        load = 9000 if (d, h) == (15, 18) else 1000 + 10 * ((d * 7 + h * 13) % 90)
        outage = (mo, d) == (10, 15) and 11 <= h <= 13
        if not outage:
            clock = _clock(y, mo, d, h, 0, 0)
            if (mo, d, h) == (10, 8, 7):
                clock, sent = last_clock  # Aidon repeats the previous hour's list
            else:
                sent = total
            last_clock = (clock, sent)
            t.feed({"active_power_import_w": load, "meter_clock": clock,
                    "active_energy_import_wh": sent}, now)
            reading = {"active_power_import_w": load}
            for _ in range(59):
                now = (now + 60000) & ((1 << 29) - 1)
                t.feed(reading, now)
            now = (now + 60000) & ((1 << 29) - 1)
        else:
            now = (now + 3600000) & ((1 << 29) - 1)
        if h == 0 and on_day is not None:
            on_day(d)
        total += load


def test_heap_is_flat_over_a_month():
    gc.collect()
    before = gc.mem_alloc()
    t = Tariff()
    t.configure({"tariff_peaks": 3, "tariff_steps": "2 5 10 15 20 25 50 75 100",
                 "scaling_factor": 1000})
    gc.collect()
    held = gc.mem_alloc() - before
    image = bytearray(204)
    seen = [0] * 40  # preallocated: the test's own list must not grow either
    n = [0]

    def on_day(day):
        t.render(image, 80)
        gc.collect()
        seen[n[0]] = gc.mem_alloc() - before
        n[0] += 1

    gc.collect()
    _month(t, on_day)
    seen = seen[:n[0]]
    assert len(seen) >= 31
    print("tariff state held", held, "bytes; over the month", min(seen), "..", max(seen))
    assert max(seen) - min(seen) <= 32, seen  # flat: no growing state
    # The month's outcome: 1 November starts empty of October's peaks.
    assert (t.year, t.month) == (2026, 11)
    assert t.prev_avg_w == (9000 + 1890 + 1890) // 3  # 18:00 on the 15th, two 1.89 kWh days
    s = t.status()
    assert s["month"] == "2026-11" and s["previous_average_kw"] > 1


def test_zz_release_modules():
    import sys

    import han2x_core

    for name in ("tariff", "settings"):
        sys.modules.pop("han2x_core." + name, None)
        try:
            delattr(han2x_core, name)
        except (AttributeError, KeyError):  # MicroPython: KeyError for a name never set
            pass
