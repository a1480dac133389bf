"""A month of an Aidon meter for the capacity tariff tests (docs/tariff.md): October 2026 on
the meter's local clock (Norway: CEST until Sunday 25 October 03:00, then CET), into
1 November, with known hourly consumptions, a 3-hour outage, the autumn daylight-saving
change, Aidon's stale hourly list and a duplicated one, and the month boundary.

events() gives (utc_datetime, list_no, values, local_clock) in time order; frames() the
same as encoded frames; expected() the hand calculation of the month's peaks in real
(UTC) hours, independent of han2x_core.tariff.
"""

import datetime
import functools

from tools.sim.metersim import encode_frame

H = datetime.timedelta(hours=1)
START_UTC = datetime.datetime(2026, 9, 30, 22)  # 2026-10-01 00:00 CEST
END_UTC = datetime.datetime(2026, 11, 1, 2)  # 2026-11-01 03:00 CET
CET_FROM_UTC = datetime.datetime(2026, 10, 25, 1)  # 03:00 CEST -> 02:00 CET
START_TOTAL_WH = 12345670

# Hours with a load, by local (day, hour[, the repeated 02:00 hour's second pass]).
LOADS = {(10, 5, 17): 6200, (10, 12, 18): 7400, (10, 12, 19): 7300, (10, 20, 8): 5100,
         (10, 15, 10): 9000, (10, 15, 11): 7000, (10, 15, 12): 8000, (10, 15, 13): 8000,
         (10, 25, 2, 0): 3000, (10, 25, 2, 1): 6900, (10, 31, 23): 7000,
         (11, 1, 0): 9990, (11, 1, 1): 500}
OUTAGE = ((10, 15, 11), (10, 15, 12), (10, 15, 13))  # hourly totals never received
STALE = (10, 8, 7)  # this hour's list 3 repeats the previous one (clock and totals)
DUPLICATE = (10, 9, 4)  # this hour's list 3 is sent twice


def local(utc):
    return utc + (2 * H if utc < CET_FROM_UTC else H)


def consumption(utc):
    """Wh used in the real hour starting at utc (multiples of Aidon's 10 Wh)."""
    t = local(utc)
    key = (t.month, t.day, t.hour)
    if key == (10, 25, 2):
        key += (0 if utc < CET_FROM_UTC else 1,)
    return LOADS.get(key, 1000 + 10 * ((t.day * 7 + t.hour * 13) % 90))


def _clock(t, second=0):
    return (t.year, t.month, t.day, t.hour, t.minute, second)


def _values(power_w, total=None):
    v = {"active_power_import_w": power_w, "active_power_export_w": 0,
         "reactive_power_import_var": 0, "reactive_power_export_var": 0,
         "current_l1_ma": 1000, "current_l2_ma": 1000, "current_l3_ma": 1000,
         "voltage_l1_dv": 2300, "voltage_l2_dv": 2300, "voltage_l3_dv": 2300,
         "meter_id": "7359992890941742"}
    if total is not None:
        v.update({"active_energy_import_wh": total, "active_energy_export_wh": 0,
                  "reactive_energy_import_varh": 5000, "reactive_energy_export_varh": 7000})
    return v


def events(list2_every_min=10):
    """(utc, list_no, values, local clock) in time order. Each hour's power is its
    consumption (W = Wh in an hour); list 2 every list2_every_min minutes."""
    out = []
    total = START_TOTAL_WH
    last = None  # (clock, total) of the last list 3 sent
    utc = START_UTC
    while utc <= END_UTC:
        t = local(utc)
        key = (t.month, t.day, t.hour)
        hour_power = consumption(utc)
        if key not in OUTAGE:
            clock, sent = _clock(t), total
            if key == STALE:
                clock, sent = last
            last = (clock, sent)
            out.append((utc + datetime.timedelta(seconds=10), 3, _values(hour_power, sent),
                        clock))
            if key == DUPLICATE:
                out.append((utc + datetime.timedelta(seconds=20), 3,
                            _values(hour_power, sent), clock))
            for m in range(list2_every_min, 60, list2_every_min):
                tm = utc + datetime.timedelta(minutes=m)
                out.append((tm, 2, _values(hour_power), _clock(local(tm))))
        total += hour_power
        utc += H
    return out


@functools.lru_cache(maxsize=2)
def frames(list2_every_min=10):
    return [(utc, encode_frame("aidon", n, v, clock)) for utc, n, v, clock in
            events(list2_every_min)]


def expected(month=10, peaks=3, ended_by=None):
    """The hand calculation: the hourly values the meter's totals give (a missing total:
    the hours between two totals share their difference evenly, in real hours), the
    highest hour of each local day of `month`, the `peaks` highest days, their average W.
    ended_by: only hours whose total arrived by this UTC time."""
    arrived = []  # (utc of the total's hour, total)
    total = START_TOTAL_WH
    utc = START_UTC
    while utc <= END_UTC:
        t = local(utc)
        key = (t.month, t.day, t.hour)
        if key not in OUTAGE and key != STALE and (ended_by is None or utc < ended_by):
            arrived.append((utc, total))
        total += consumption(utc)
        utc += H
    hours = []  # (local start of the hour, Wh)
    for (u0, t0), (u1, t1) in zip(arrived, arrived[1:]):
        k = int((u1 - u0) / H)
        for i in range(k):
            share = (t1 - t0) // k + ((t1 - t0) % k if i == k - 1 else 0)
            hours.append((local(u0 + i * H), share))
    best = {}
    for t, wh in hours:
        if t.month == month and wh > best.get(t.day, (-1,))[0]:
            best[t.day] = (wh, t.hour)
    top = sorted(best.items(), key=lambda kv: -kv[1][0])[:peaks]
    avg = sum(wh for _, (wh, _) in top) // len(top)
    return [(day, hour, wh) for day, (wh, hour) in top], avg
