"""End to end: a month of an Aidon meter (tests/support/tariffmonth.py: known hourly consumptions,
a 3-hour outage, the autumn clock change, a stale and a duplicated hourly list) replayed
through tools/simulate.py at high speed with the capacity tariff on. The peaks, the average
and the step from /api/status and from Modbus (pymodbus) equal the hand calculation; then
the simulator restarts on the same folder and the month boundary follows: October's value
becomes last month's, November starts with its first hour."""

import datetime
import json
import signal
import time
import urllib.request

import pytest
from pymodbus.client import ModbusTcpClient

from han2x_core.registers import TARIFF_OFF
from support.tariffmonth import expected, frames
from support import simproc
from support.util import free_port

pytestmark = pytest.mark.slow

CUT = datetime.datetime(2026, 10, 31, 22, 30)  # UTC: 31 October 23:30 on the meter's clock


class Run:
    def __init__(self, folder, raw, speed=20000):
        capture = folder / "capture.txt"
        capture.write_text("".join(f.hex() + "\n" for f in raw))
        self.count = len(raw)
        self.port = free_port()
        self.http = free_port()
        self.proc = simproc.start(
            ["--replay", str(capture), "--interval", "2", "--speed", str(speed),
             "--modbus-port", str(self.port), "--http-port", str(self.http), "--quiet",
             "--settings", str(folder / "settings.toml")], self.http)

    def status(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/api/status" % self.http,
                                    timeout=5) as r:
            return json.loads(r.read())

    def replayed(self, timeout=120):
        """Wait until every frame was taken once (the replay then loops: old hours, ignored)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            if st["device"]["frames_ok"] >= self.count:
                return st
            time.sleep(0.2)
        raise AssertionError("replay not done: %r" % st["device"])

    def registers(self):
        client = ModbusTcpClient("127.0.0.1", port=self.port, timeout=3)
        assert client.connect()
        try:
            return client.read_holding_registers(TARIFF_OFF, count=22, device_id=1).registers
        finally:
            client.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out = self.proc.communicate(timeout=10)[0]
        assert self.proc.returncode == 0, out
        return out


def u32(words, i):
    return words[i] << 16 | words[i + 1]


def test_a_month_at_high_speed_then_the_month_boundary_after_a_restart(tmp_path):
    folder = tmp_path / "drive"
    folder.mkdir()
    (folder / "settings.toml").write_text("tariff = true\n")
    month = frames()
    october = [f for utc, f in month if utc < CUT]
    run = Run(folder, october)
    try:
        st = run.replayed()
        tariff = st["tariff"]
        words = run.registers()
    finally:
        run.stop()
    top, avg = expected(10, 3, CUT)  # the hand calculation
    assert [(int(p["date"][8:]), p["hour"], round(p["kwh"] * 1000)) for p in
            tariff["peaks"][:3]] == top == [(15, 10, 8000), (12, 18, 7400), (25, 2, 6900)]
    assert tariff["average_kw"] == avg / 1000 == 7.433
    assert tariff["step"] == {"from_kw": 5.0, "to_kw": 10.0, "index": 3}
    assert tariff["month"] == "2026-10" and tariff["warning"] is None
    assert words[1] == 3 and u32(words, 2) == avg and u32(words, 4) == 10000
    assert [u32(words, 12 + 2 * i) for i in range(3)] == [wh for _, _, wh in top]
    assert st["device"]["repeated_hourly_lists"] >= 1  # the duplicate was seen and ignored

    rest = [f for utc, f in month if utc >= CUT]
    # Restarted on the same folder with October's last frame only (replayed in a loop), so
    # what it shows can only be October's, from the file. With November's frames in the
    # replay, the first status raced them (the replay runs at 20,000 times real time).
    run = Run(folder, rest[:1])
    try:
        first = run.status()["tariff"]
    finally:
        run.stop()
    run = Run(folder, rest)  # and again with the rest: the month boundary follows
    try:
        st = run.replayed()
    finally:
        run.stop()
    assert first["month"] == "2026-10" and len(first["peaks"]) == 5
    tariff = st["tariff"]
    assert tariff["month"] == "2026-11"
    assert tariff["previous_average_kw"] == expected(10, 3)[1] / 1000 == 7.466
    assert [(p["date"], p["hour"], p["kwh"]) for p in tariff["peaks"]] == [
        ("2026-11-01", 0, 9.99)]
