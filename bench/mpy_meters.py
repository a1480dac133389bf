"""MicroPython half of bench_heap.py's meter profile figures (part 4): the heap each meter
profile holds while on (its module, meterutil and its map, imported by meterroute.py) and
what one request allocates, HAN2X and each profile's. Runs from source, or from the .mpy
files in the folder given as argument. Prints "held NAME BYTES", "request NAME BYTES" and
"off BYTES" (heap left held after turning every profile off again).
"""

import gc
import sys

ROOT = __file__.rsplit("/", 1)[0] + "/.." if "/" in __file__ else ".."
if len(sys.argv) > 1:
    ROOT = sys.argv[1]
sys.path.insert(0, ROOT)

from han2x_core.modbus_pdu import ModbusHandler  # noqa: E402
from han2x_core.registers import Registers  # noqa: E402

READING = {"active_power_import_w": 3356, "reactive_power_export_var": 431,
           "current_l1_ma": 1700, "current_l2_ma": 12800, "current_l3_ma": 200,
           "voltage_l1_dv": 2322, "voltage_l2_dv": 2305, "voltage_l3_dv": 2357,
           "meter_id": "7359992891237028", "meter": "aidon", "list": 3,
           "active_energy_import_wh": 163613870, "active_energy_export_wh": 0,
           "reactive_energy_import_varh": 872650, "reactive_energy_export_varh": 6260910}
OFF = {"sunspec_model": 0, "em24_unit": 0, "sdm630_unit": 0}
PROFILES = (("sunspec_203", {"sunspec_model": 203}), ("sunspec_213", {"sunspec_model": 213}),
            ("em24", {"em24_unit": 2}), ("sdm630", {"sdm630_unit": 3}),
            ("all", {"sunspec_model": 213, "em24_unit": 2, "sdm630_unit": 3}))
# (name, unit, fc, start, count): one request each
REQUESTS = (("han2x", 1, 3, 0, 77), ("sunspec", 1, 3, 40070, 125), ("em24", 2, 3, 0, 80),
            ("sdm630", 3, 4, 0, 60))

regs = Registers()
regs.update(READING, 0)
regs.tick(0)
regs.tick(1000)
handler = ModbusHandler(regs)
out = bytearray(260)
req = bytearray(5)


def configure(settings):
    from han2x_core import meterroute

    s = dict(OFF)
    s.update(settings)
    meterroute.configure(handler, s)


def request(unit, fc, start, count):
    req[0] = fc
    req[1] = start >> 8
    req[2] = start & 0xFF
    req[3] = 0
    req[4] = count
    handler.accepts(unit)
    return handler.execute(req, 0, 5, out, 0)


gc.collect()
base = gc.mem_alloc()
for name, settings in PROFILES:
    configure(settings)
    gc.collect()
    print("held", name, gc.mem_alloc() - base)
    if name == "all":
        for rname, unit, fc, start, count in REQUESTS:
            assert request(unit, fc, start, count) == 2 + 2 * count, rname  # renders once
            gc.collect()
            before = gc.mem_alloc()
            for _ in range(10):
                request(unit, fc, start, count)
            print("request", rname, (gc.mem_alloc() - before) // 10)
    configure(OFF)
    gc.collect()
gc.collect()
for rname, unit, fc, start, count in REQUESTS[:1]:
    before = gc.mem_alloc()
    for _ in range(10):
        request(unit, fc, start, count)
    print("request han2x_only", (gc.mem_alloc() - before) // 10)
print("off", gc.mem_alloc() - base)
