"""Serve the Modbus server shell under MicroPython (its socket module) for real clients.

Usage: micropython tests/mpy/serve_modbus.py PORT [SECONDS]
Driven by tests/test_modbus_micropython.py, which polls it with mbpoll and pymodbus.
Prints "listening PORT" once bound, and the counters when it stops (after SECONDS, or when
a client writes 4242 to the scaling factor's low word at 40050).
"""

import sys
import time

import socket


def _dirname(path):
    i = path.rfind("/")
    return path[:i] if i > 0 else "."


sys.path.insert(0, _dirname(_dirname(_dirname(__file__))))

from han2x_core.modbus_server import ModbusServer  # noqa: E402
from han2x_core.registers import Registers  # noqa: E402

_MASK = (1 << 29) - 1


def now_ms():
    return time.ticks_ms() & _MASK


def main(argv):
    port = int(argv[1])
    seconds = int(argv[2]) if len(argv) > 2 else 30
    regs = Registers(firmware_version=10)
    regs.update({"voltage_l1_dv": 2390, "active_power_import_w": 1234,
                 "current_l1_ma": -5000, "active_energy_import_wh": 123456789,
                 "meter_clock": {"year": 2026, "month": 11, "day": 25, "hour": 11,
                                 "minute": 0, "second": 10}, "meter": "aidon", "list": 3},
                now_ms())
    server = ModbusServer(socket, regs, port=port, max_clients=4, idle_timeout_ms=5000)
    server.start("127.0.0.1")
    print("listening", port)
    start = now_ms()
    while time.ticks_diff(time.ticks_ms() & _MASK, start) < seconds * 1000:
        t = now_ms()
        regs.tick(t)
        server.poll(t)
        if regs.scaling == 4242:
            break
        time.sleep_ms(1)
    server.stop()
    print("requests", server.requests, "exceptions", server.exceptions, "errors",
          server.errors, "accepted", server.accepted, "clients", server.client_count)


main(sys.argv)
