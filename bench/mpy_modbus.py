"""MicroPython half of bench_modbus.py: heap bytes allocated per Modbus read request.

Run by bench_modbus.py as: micropython -X heapsize=192k bench/mpy_modbus.py PORT
1. The protocol core alone: ModbusConnection.respond() for FC03 x 50 registers (MBAP and
   RTU), with the request already in the connection's receive buffer (as the server puts it).
2. The whole server shell over MicroPython's socket module: bench_modbus.py sends 2,000
   closed-loop FC03 requests; heap allocated between request 500 and 1,500 is measured with
   the collector off, divided by the requests served, polls counted. The only allocation
   there is the exception accept() raises when nobody is connecting (rate-limited to one
   try per 5 ms by the server), so the figure falls with the request rate, not per request.
"""

import gc
import socket
import struct
import sys
import time


def _dirname(path):
    i = path.rfind("/")
    return path[:i] if i > 0 else "."


sys.path.insert(0, _dirname(_dirname(__file__)) if "/" in __file__ else "..")

from han2x_core.modbus import ModbusConnection, crc16  # noqa: E402
from han2x_core.modbus_pdu import ModbusHandler  # noqa: E402
from han2x_core.modbus_server import ModbusServer  # noqa: E402
from han2x_core.registers import Registers  # noqa: E402

_MASK = (1 << 29) - 1


def now_ms():
    return time.ticks_ms() & _MASK


def regs_with_values():
    regs = Registers(firmware_version=10)
    regs.update({"voltage_l1_dv": 2390, "active_power_import_w": 1234,
                 "current_l1_ma": -5000, "active_energy_import_wh": 123456789}, now_ms())
    return regs


def core(request, rounds=2000):
    conn = ModbusConnection(ModbusHandler(regs_with_values()))
    out = bytearray(260)
    n = len(request)
    for i in range(n):
        conn.rx[i] = request[i]
    conn.rx_len = n
    conn.respond(out)
    gc.collect()
    before = gc.mem_alloc()
    t0 = time.ticks_us()
    for _ in range(rounds):
        conn.rx_len = n
        conn.respond(out)
    us = time.ticks_diff(time.ticks_us(), t0)
    return (gc.mem_alloc() - before) / rounds, rounds * 1000000 / us


def server(port):
    regs = regs_with_values()
    srv = ModbusServer(socket, regs, port=port, max_clients=4)
    srv.start("127.0.0.1")
    polls = 0
    start_polls = 0
    before = None
    measured = None
    deadline = time.ticks_add(time.ticks_ms(), 30000)
    while time.ticks_diff(deadline, time.ticks_ms()) > 0:
        t = now_ms()
        regs.tick(t)
        srv.poll(t)
        polls += 1
        if before is None and srv.requests >= 500:
            gc.collect()
            gc.disable()
            before = gc.mem_alloc()
            start_requests = srv.requests
            start_polls = polls
            start_tries = srv._lis.tries
        elif before is not None and measured is None and srv.requests >= 1500:
            allocated = gc.mem_alloc() - before
            gc.enable()
            measured = (allocated, srv.requests - start_requests, polls - start_polls,
                        srv._lis.tries - start_tries)
        if srv.requests >= 2000 and srv.client_count == 0:
            break
    srv.stop()
    return measured


def main():
    mbap = struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 0, 50)
    body = struct.pack(">BBHH", 1, 3, 0, 50)
    crc = crc16(body, 0, len(body))
    rtu = body + bytes([crc & 0xFF, crc >> 8])
    per, rate = core(mbap)
    print("MicroPython core, MBAP FC03 x 50: %.1f heap bytes/request, %.0f requests/s" % (
        per, rate))
    per, rate = core(rtu)
    print("MicroPython core, RTU  FC03 x 50: %.1f heap bytes/request, %.0f requests/s" % (
        per, rate))
    measured = server(int(sys.argv[1]))
    if measured is None:
        print("MicroPython server: not enough requests arrived to measure")
        return
    allocated, requests, polls, tries = measured
    print("MicroPython server shell (real sockets): %.1f heap bytes/request "
          "(%d bytes over %d requests, %d polls; aim 0)" % (allocated / requests, allocated,
                                                            requests, polls))
    print("  of which accept() with nothing waiting: %d tries (each raises OSError(EAGAIN); "
          "time-driven, at most one per %d ms, not per request)" % (tries, 5))


main()
