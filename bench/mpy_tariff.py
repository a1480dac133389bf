"""MicroPython half of bench_heap.py's capacity tariff figure (han2x_core/tariff.py): heap
held by importing the module (beyond the package, always loaded; from the folder given, source or .mpy), by one Tariff, and
after a month of telegrams (one a minute, an hourly total each hour); bytes allocated per
telegram (feed + render) and per hourly total, and by configure(settings) (the settings
schema is not loaded for it). Prints "NAME BYTES" lines."""

import gc
import sys

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else ".")

import han2x_core.ticks  # noqa: E402,F401  (resident on the device anyway)

gc.collect()
base = gc.mem_alloc()
from han2x_core.tariff import Tariff, days  # noqa: E402

gc.collect()
print("import", gc.mem_alloc() - base)
base = gc.mem_alloc()
t = Tariff()
gc.collect()
print("instance", gc.mem_alloc() - base)
gc.collect()
gc.disable()  # what configure allocates at start and after each save, garbage included
a = gc.mem_alloc()
t.configure({"tariff": True, "tariff_peaks": 3, "tariff_steps": "2 5 10 15 20 25 50 75 100",
             "scaling_factor": 1000})
print("configure", gc.mem_alloc() - a)
gc.enable()
image = bytearray(204)
reading = {"active_power_import_w": 2345}
clock = {"year": 2026, "month": 10, "day": 1, "hour": 0, "minute": 0, "second": 0}
hourly = {"active_power_import_w": 2345, "meter_clock": clock, "active_energy_import_wh": 0}
start = days(2026, 10, 1)
now = 0
tele = 0
tele_bytes = 0
hours = 0
hour_bytes = 0
for h in range(31 * 24):
    clock["day"] = 1 + h // 24
    clock["hour"] = h % 24
    hourly["active_energy_import_wh"] = 1000000 + h * 2345 + (h * 7919) % 5000
    a = gc.mem_alloc()
    t.feed(hourly, now)
    t.render(image, 80)
    hour_bytes += gc.mem_alloc() - a
    hours += 1
    for _ in range(59):
        now += 60000
        a = gc.mem_alloc()
        t.feed(reading, now)
        t.render(image, 80)
        tele_bytes += gc.mem_alloc() - a
        tele += 1
    now += 60000
    gc.collect()
gc.collect()
print("after_month", gc.mem_alloc() - base)
print("per_telegram", tele_bytes // tele)
print("per_hourly", hour_bytes // hours)
a = gc.mem_alloc()
t.status()
print("status", gc.mem_alloc() - a)
