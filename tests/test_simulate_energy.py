"""End to end: tools/simulate.py restarted on the same settings folder at several moments,
read with pymodbus right after each start. The energy registers the docs' Home Assistant
sensors read (docs/integration.md; the never-decreasing block of docs/registers.md) never
return a lower value: not across a restart before the first hourly value, just after one,
or mid-hour with the estimate above the meter's next hourly value."""

import signal
import time

import pytest
from pymodbus.client import ModbusTcpClient

from han2x_core.registers import NEVER_DECREASING, STATUS_RESTORED
from test_energystate import ENERGIES, list1, list3
from support import simproc
from support.util import free_port

pytestmark = pytest.mark.slow

POWER_W = 36000  # 10 Wh a second: the estimate moves between reads
TOTALS = NEVER_DECREASING  # 40062-40069, what the docs' energy sensors read


class Run:
    """One start of the simulator replaying frames (one every 0.2 s, looping)."""

    def __init__(self, folder, frames):
        capture = folder / "capture.txt"
        capture.write_text("".join(f.hex() + "\n" for f in frames))
        self.port = free_port()
        self.proc = simproc.start(
            ["--replay", str(capture), "--interval", "0.2", "--modbus-port", str(self.port),
             "--http-port", "0", "--quiet", "--settings", str(folder / "settings.toml")],
            self.port)
        self.client = ModbusTcpClient("127.0.0.1", port=self.port, timeout=3)
        assert self.client.connect()

    def read(self):
        """{offset: value} of the extended block's energies, and the status word."""
        words = self.client.read_holding_registers(50, count=27, device_id=1).registers
        values = {off: words[off - 50] << 16 | words[off - 49] for off in ENERGIES}
        return values, words[0]

    def until(self, check, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            values, status = self.read()
            if check(values, status):
                return values, status
            time.sleep(0.1)
        raise AssertionError("timed out; last read %r %r" % (values, status))

    def stop(self):
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        out = self.proc.communicate(timeout=10)[0]
        assert self.proc.returncode == 0, out
        return out


def hour_frames(hour, wh, export_wh, lead=15, tail=40):
    """lead list-1 telegrams, the hourly list, then tail list-1 telegrams."""
    return ([list1(POWER_W)] * lead + [list3(wh, hour, power_w=POWER_W, export_wh=export_wh)]
            + [list1(POWER_W)] * tail)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "drive"
    d.mkdir()
    return d


def test_restarts_never_lower_the_docs_energy_registers(folder):
    highest = {off: 0 for off in TOTALS}  # the most any client has seen so far

    def check(values, run_seen=None):
        for off in TOTALS:
            assert values[off] >= highest[off], (off, values, highest)
            highest[off] = values[off]
        if run_seen is not None:  # within one run, the estimates never go back either
            for off in ENERGIES:
                assert values[off] >= run_seen.get(off, 0), (off, values, run_seen)
                run_seen[off] = values[off]

    t1, t2, t3 = 50_000_000, 50_000_010, 50_050_000
    # 1. First start, nothing saved: the first hourly value, then the estimate runs ahead.
    run = Run(folder, hour_frames(10, t1, 1000))
    seen = {}
    values, status = run.read()
    assert values == {off: 0 for off in ENERGIES} and not status & STATUS_RESTORED
    values, _ = run.until(lambda v, s: v[61] == t1)
    check(values, seen)
    values, _ = run.until(lambda v, s: v[69] >= t1 + 40)  # mid-hour: estimate above t2
    check(values, seen)
    estimate_before = values[69]
    run.stop()
    saved = (folder / "energy_state.txt").read_text()
    assert "totals = %d 1000 5000 7000" % t1 in saved

    # 2. Restart mid-hour; the meter's next hourly value (t2) is below the estimate.
    run = Run(folder, hour_frames(11, t2, 1010))
    seen = {}
    values, status = run.read()  # right after the start, before the hourly value
    check(values, seen)
    assert values[61] == t1 and values[63] == 1000 and status & STATUS_RESTORED
    assert t1 <= values[69] <= estimate_before
    values, status = run.until(lambda v, s: not s & STATUS_RESTORED)
    check(values, seen)
    assert values[61] == t2 and values[63] == 1010
    for _ in range(5):
        check(run.read()[0], seen)
    run.stop()  # just after an hourly value

    # 3. Restart just after the hourly value; stopped again before the next one.
    run = Run(folder, hour_frames(12, t3, 1100, lead=60))
    seen = {}
    values, status = run.read()
    check(values, seen)
    assert values[61] == t2 and status & STATUS_RESTORED
    for _ in range(5):
        values, status = run.read()
        check(values, seen)
        assert status & STATUS_RESTORED  # the hourly value is 12 s away
    run.stop()

    # 4. Restart after a run that saw no hourly value: still the last saved totals.
    run = Run(folder, hour_frames(12, t3, 1100))
    seen = {}
    values, status = run.read()
    check(values, seen)
    assert values[61] == t2 and values[63] == 1010 and status & STATUS_RESTORED
    values, _ = run.until(lambda v, s: v[61] == t3)
    check(values, seen)
    run.stop()
