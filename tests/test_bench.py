"""The benchmarks' MicroPython halves run to their figures (bench/run_all.py, `make bench`).
They assert nothing about the figures (docs/benchmarks.md); these tests only check that each
half still reaches the line that carries its figures, so that a change in the firmware's
shape (an attribute moved, a save that no longer stops the device) shows up here and not
first in a bench run."""

import pytest

from bench import bench_heap, bench_modbus
from support import mpy


def _need_micropython():
    import os

    if not os.path.exists(mpy.MICROPYTHON):
        pytest.fail("no MicroPython binary at %s: run `make setup`" % mpy.MICROPYTHON)


def test_bench_modbus_micropython_half_measures_the_server_shell(capsys):
    """2,000 closed-loop FC03 requests to ModbusServer on MicroPython, measured between
    request 500 and 1,500 (it died at request 500 when the accept counter moved to netio)."""
    _need_micropython()
    bench_modbus.run_micropython()
    out = capsys.readouterr().out
    assert "MicroPython server shell (real sockets):" in out, out
    assert "over 1000 requests" in out, out


@pytest.mark.slow
def test_bench_heap_whole_device_stops_on_its_saved_scaling_write(capsys):
    """bench_heap part 2 as `make bench` runs it: idle, Modbus, telegrams, 5 dashboard
    loads, then the scaling write whose save stops the device ('done stop')."""
    _need_micropython()
    bench_heap.run_device(bench_heap.DEVICE_HEAP)
    out = capsys.readouterr().out
    assert "  done stop " in out, out
    assert "dashboard (5 loads, 5 whole" in out, out
    assert " web_errors 0 " in out and " service_errors 0 " in out, out
