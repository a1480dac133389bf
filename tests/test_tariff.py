"""The capacity tariff core (han2x_core/tariff.py, docs/tariff.md): a month of real encoded
Aidon frames with an outage, the autumn clock change, stale and duplicated hourly lists and
the month boundary, against a hand calculation; the spring clock change; kWh left against
the formula; steps without a cap; state round trip."""

from han2x_core import decode_frame, tariffstate
from han2x_core.tariff import Tariff, civil, days, hour_index
from support.tariffmonth import START_UTC, consumption, expected, frames, local

ELVIA = (2000, 5000, 10000, 15000, 20000, 25000, 50000, 75000, 100000)
MASK = (1 << 29) - 1


def run_month(tariff, until=None, every=None):
    """Feed the month's frames at their real times (board ticks wrap like the board's)."""
    for utc, frame in frames():
        if until is not None and utc >= until:
            break
        now = int((utc - START_UTC).total_seconds() * 1000) & MASK
        tariff.feed(decode_frame(frame), now)
        if every is not None:
            every(utc, tariff)


def clock(y, mo, d, h, mi=0, s=0):
    return {"year": y, "month": mo, "day": d, "hour": h, "minute": mi, "second": s}


def test_calendar_round_trip():
    for z in range(days(1999, 12, 1), days(2031, 3, 1)):
        assert days(*civil(z)) == z
    assert days(1970, 1, 1) == 0 and civil(days(2024, 2, 29)) == (2024, 2, 29)
    assert (days(2026, 10, 25) + 4) % 7 == 0  # a Sunday


def test_a_month_gives_the_hand_calculated_peaks_average_and_step():
    import datetime

    t = Tariff(3, ELVIA)
    until = datetime.datetime(2026, 10, 31, 22, 30)  # 31 October 23:30, before November
    run_month(t, until=until)
    top, avg = expected(10, 3, until)
    assert [(a // 100, a % 100, wh) for a, wh in zip(t.peak_at, t.peak_wh)][:t.count][:3] == top
    assert top == [(15, 10, 8000), (12, 18, 7400), (25, 2, 6900)]  # the hand calculation
    assert t.average_w() == avg == 7433
    s = t.status()
    assert s["step"] == {"from_kw": 5.0, "to_kw": 10.0, "index": 3}
    assert s["average_kw"] == 7.433 and s["month"] == "2026-10"
    assert [p["date"] for p in s["peaks"][:3]] == ["2026-10-15", "2026-10-12", "2026-10-25"]
    assert s["peaks"][0] == {"date": "2026-10-15", "hour": 10, "kwh": 8.0, "counted": True}
    # The autumn's two 02:00 hours are two hours (3000, 6900), neither merged (9900) nor
    # dropped; the outage's 4 hours share 32 kWh (8000 each, the first is the day's peak).


def test_the_month_boundary_starts_november_empty_and_keeps_octobers_value():
    t = Tariff(3, ELVIA)
    run_month(t)
    assert (t.year, t.month) == (2026, 11)
    # 1 November 00:00-01:00 and 01:00-02:00: one day, its highest hour
    assert (t.count, t.peak_at[0], t.peak_wh[0]) == (1, 100, 9990)
    assert t.average_w() == 9990
    assert t.prev_avg_w == expected(10, 3)[1] == (8000 + 7400 + 7000) // 3
    assert t.status()["previous_average_kw"] == 7.466


def test_one_peak_counted_and_five_kept():
    import datetime

    t = Tariff(1, ELVIA)
    run_month(t, until=datetime.datetime(2026, 10, 31, 22, 30))
    assert t.average_w() == 8000 and t.step(8000)[0] == 3
    assert t.count == 5 and t.peak_wh[:5] == [8000, 7400, 6900, 6200, 5100]
    t.configure({"tariff_peaks": 5})
    assert t.average_w() == (8000 + 7400 + 6900 + 6200 + 5100) // 5


def test_spring_clock_change_is_one_hour_and_a_real_gap_is_shared():
    t = Tariff(3, ELVIA)
    t.hourly(clock(2026, 3, 29, 1), 1000000)
    assert t.hourly(clock(2026, 3, 29, 3), 1004000) == 1  # 01:00 -> 03:00 CEST: one hour
    assert (t.peak_at[0], t.peak_wh[0]) == (2901, 4000)
    t = Tariff(3, ELVIA)
    t.hourly(clock(2026, 3, 28, 1), 1000000)
    t.hourly(clock(2026, 3, 28, 3), 1004000)  # the day before: two hours, shared
    assert (t.count, t.peak_wh[0], t.peak_at[0]) == (1, 2000, 2801)


def test_aidon_repeat_and_a_new_meter_are_not_hours():
    t = Tariff(3, ELVIA)
    assert t.hourly(clock(2026, 1, 5, 10), 5000) == 0
    assert t.hourly(clock(2026, 1, 5, 11), 7000) == 1
    assert t.hourly(clock(2026, 1, 5, 11), 7000) == -1  # same clock, same total
    assert t.hourly(clock(2026, 1, 5, 12), 100) == 0  # lower total: another meter
    assert t.count == 1 and t.peak_wh[0] == 2000


def test_steps_have_no_cap_at_255_kw():
    t = Tariff(1, (100000, 300000, 1000000))
    t.hourly(clock(2026, 1, 5, 10), 0)
    t.hourly(clock(2026, 1, 5, 11), 400000)  # 400 kWh in one hour
    s = t.status()
    assert s["average_kw"] == 400.0
    assert s["step"] == {"from_kw": 300.0, "to_kw": 1000.0, "index": 3}
    regs = bytearray(200)
    t.render(regs, 0)
    assert int.from_bytes(regs[4:8], "big") == 400000  # average W, 32 bits
    t.hourly(clock(2026, 1, 5, 12), 1600000)
    assert t.status()["step"] == {"from_kw": 1000.0, "to_kw": None, "index": 4}
    assert t.status()["kwh_left"] is None


def crosses(peaks, today, x, n, upper):
    """Would the month's value reach upper if today's hour used x Wh? (peaks: day -> Wh)"""
    days_ = dict(peaks)
    days_[today] = max(days_.get(today, 0), x)
    top = sorted(days_.values(), reverse=True)[:n]
    return sum(top) // len(top) >= upper


MOMENTS = ((3, 9, 7), (12, 18, 23), (12, 23, 41), (15, 9, 58), (16, 18, 30), (25, 1, 12),
           (31, 22, 45))


def test_kwh_left_at_chosen_moments_matches_the_formula():
    """At local (day, hour, minute): the month so far, then list 1 every 10 s at power P.
    kWh left must be the largest x (brute force over Wh) for which this hour as today's
    peak keeps the average of the 3 highest days below the next threshold, minus what the
    hour used; the estimate is used + P x the rest of the hour."""
    import copy
    import datetime

    from tools.sim.metersim import encode_frame

    starts = {}

    def watch(utc, t):
        lt = local(utc)
        for day, hour, minute in MOMENTS:
            if (lt.day, lt.hour, lt.minute, lt.second) == (day, hour, 0, 10) and lt.month == 10:
                starts[(day, hour, minute)] = (utc, copy.deepcopy(t))

    run_month(Tariff(3, ELVIA), until=datetime.datetime(2026, 10, 31, 22, 30), every=watch)
    assert len(starts) == len(MOMENTS)
    for (day, hour, minute), (utc, t) in sorted(starts.items()):
        power = 3000 + 97 * day
        now0 = int((utc - START_UTC).total_seconds() * 1000)
        frame = decode_frame(encode_frame("aidon", 1, {"active_power_import_w": power}))
        for s in range(10, minute * 60 - 10 + 1, 10):
            t.feed(frame, (now0 + s * 1000) & MASK)
        peaks = dict((a // 100, wh) for a, wh in zip(t.peak_at[:t.counted()], t.peak_wh))
        upper = t.step(t.average_w())[2]
        best = next(x for x in range(200000) if crosses(peaks, day, x, 3, upper))
        used = t.used_wh
        # The hourly list (xx:00:10, Aidon's clock xx:00:00) credits its 10 s at its power,
        # which also runs until the next telegram 10 s later; since then P.
        hp = consumption(utc - datetime.timedelta(seconds=10))
        assert t.power_w == power
        assert used == (hp * 20 + power * (minute * 60 - 20)) // 3600
        assert t.left_wh() == max(0, best - used), (day, hour, minute, peaks, used)
        assert t.status()["kwh_left"] == max(0, best - used) / 1000
        rest_ms = 3600000 - t.hour_ms
        assert t.hour_ms == minute * 60 * 1000
        assert t.estimate_wh() == used + power * rest_ms // 3600000


def test_state_round_trip_and_damaged_states():
    t = Tariff(3, ELVIA)
    run_month(t)
    v = tariffstate.state(t)
    u = Tariff(3, ELVIA)
    tariffstate.restore(u, v, False)
    assert tariffstate.state(u) == v and u.restored and u.warning is None
    for bad in ([], [2] + v[1:], v[:7] + v[8:], v[:6] + [9] + v[7:],
                v[:7] + [3299, 5] + v[9:] if len(v) > 8 else v[:6] + [1, 3299, 5]):
        w = Tariff(3, ELVIA)
        tariffstate.restore(w, bad, False)
        assert w.count == 0 and w.year == 0 and "peaks not restored" in w.warning


def test_a_restart_mid_hour_counts_the_hour_from_the_first_clock():
    t = Tariff(3, ELVIA)
    t.hourly(clock(2026, 1, 5, 10, 0, 10), 5000)
    u = Tariff(3, ELVIA)
    tariffstate.restore(u, tariffstate.state(t), False)
    # Kaifa/Kamstrup telegrams carry the clock: 10:30:00 at 4 kW -> 2 kWh so far.
    u.feed({"active_power_import_w": 4000, "meter_clock": clock(2026, 1, 5, 10, 30)}, 0)
    assert u.used_wh == 2000 and u.estimate_wh() == 4000
    for now in range(10000, 600001, 10000):  # 10 minutes of telegrams every 10 s
        u.feed({"active_power_import_w": 4000}, now)
    assert u.used_wh == 2000 + 4000 * 600000 // 3600000
    u.feed({"active_power_import_w": 4000}, 600000 + 3600000)  # an hour of silence: 60 s
    assert u.used_wh == 2000 + 4000 * 660000 // 3600000


def test_hour_index_is_the_meters_local_clock():
    assert hour_index(clock(1970, 1, 2, 3)) == 27
