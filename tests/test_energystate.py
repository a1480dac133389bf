"""Energy across restarts (docs/registers.md "Energy across restarts"): the state file on
real files, a power cut at every step of its write, damaged files, and the App + Registers
fed real Aidon frames (tools/sim/metersim.encode_frame) before and after a restart."""

import errno
import os

import pytest

from han2x_core import energystate, webapi
from han2x_core.app import App
from han2x_core.registers import NEVER_DECREASING, STATUS_RESTORED, Registers
from han2x_core.storage import OsFiles, seal
from test_storage import CrashingFiles, PowerCut, ReadOnlyFiles
from tools.sim.metersim import encode_frame

ENERGIES = NEVER_DECREASING + (69, 71, 73, 75)  # + the estimates, 40070-40077

METER_A = "7359992890941742"
METER_B = "7359992890000001"


class FrameHan:
    """HAN source: the frames queued with send(), handed out whole."""

    def __init__(self):
        self.queue = []

    def send(self, frame):
        self.queue.append(frame)

    def readinto(self, buf):
        if not self.queue:
            return 0
        frame = self.queue.pop(0)
        buf[:len(frame)] = frame
        return len(frame)


def list1(power_w):
    return encode_frame("aidon", 1, {"active_power_import_w": power_w})


def list3(wh, hour, power_w=2000, meter_id=METER_A, day=1, export_wh=0):
    values = {"active_power_import_w": power_w, "active_power_export_w": 0,
              "reactive_power_import_var": 0, "reactive_power_export_var": 0,
              "current_l1_ma": 1000, "current_l2_ma": 1000, "current_l3_ma": 1000,
              "voltage_l1_dv": 2300, "voltage_l2_dv": 2300, "voltage_l3_dv": 2300,
              "active_energy_import_wh": wh, "active_energy_export_wh": export_wh,
              "reactive_energy_import_varh": 5000, "reactive_energy_export_varh": 7000,
              "meter_id": meter_id}
    return encode_frame("aidon", 3, values, (2026, 1, day, hour, 0, 10))


def list2(meter_id, power_w=1000):
    values = {"active_power_import_w": power_w, "active_power_export_w": 0,
              "reactive_power_import_var": 0, "reactive_power_export_var": 0,
              "current_l1_ma": 1000, "current_l2_ma": 1000, "current_l3_ma": 1000,
              "voltage_l1_dv": 2300, "voltage_l2_dv": 2300, "voltage_l3_dv": 2300,
              "meter_id": meter_id}
    return encode_frame("aidon", 2, values)


class Device:
    """App + Registers as code.py wires them, with the state file at path."""

    def __init__(self, path, files=None, now=0):
        self.han = FrameHan()
        self.regs = Registers()
        self.app = App(self.han, self.regs, now)
        self.warning = self.app.restore_energy(str(path), files)
        self.now = now

    def frame(self, frame, after_ms=2000):
        """Run the loop for after_ms (ticks every 500 ms), then take the frame."""
        for _ in range(after_ms // 500):
            self.now += 500
            self.app.step(self.now)
        self.han.send(frame)
        self.app.step(self.now)

    def u32(self, offset):
        return self.regs.value32(offset)

    def ext(self):
        """The extended block's energies, Wh: the totals, then the estimates."""
        return [self.u32(o) for o in ENERGIES]


def test_state_saved_on_the_hourly_value_and_served_after_a_restart(tmp_path):
    path = tmp_path / "energy_state.txt"
    dev = Device(path)
    assert dev.warning is None and not path.exists()
    dev.frame(list1(3600))
    assert not path.exists()  # nothing to keep before the first hourly value
    dev.frame(list3(10_000_000, 10, power_w=3600))
    state = energystate.load(str(path))[0]
    assert state[0] == METER_A and state[1] == (2026, 1, 1, 10, 0, 0)
    assert state[2] == [10_000_000, 0, 5000, 7000]
    for _ in range(30):
        dev.frame(list1(3600))  # 60 s at 3.6 kW: the estimate grows by 60 Wh
    before = dev.ext()
    assert before[4] >= 10_000_060 and dev.u32(20) == 10_000  # 40021, kWh
    assert path.read_bytes() == seal(energystate.serialise(*state))  # not written again

    after = Device(path, now=12345)  # the restart: a new device on the same drive
    assert after.warning is None
    status = after.regs.value(50)
    assert status & STATUS_RESTORED and not status & 1 and not status & 4
    assert after.regs.value(51) == 65535  # 40052: no telegram yet
    assert after.ext()[:4] == before[:4]  # 40062-40069: the totals, as before
    assert after.ext()[4] == state[3][0] >= 10_000_000  # estimate as saved, not 0
    for off in range(20, 36):  # the original map keeps the manual's 0
        assert after.regs.value(off) == 0, off
    after.frame(list1(3600))
    assert after.regs.value(50) & STATUS_RESTORED and after.regs.value(50) & 1
    assert after.ext()[:4] == before[:4] and after.regs.value32(20) == 0
    after.frame(list3(10_003_700, 11, power_w=3600))
    assert not after.regs.value(50) & STATUS_RESTORED and after.regs.value(50) & 4
    assert after.u32(20) == 10_003 and after.u32(61) == 10_003_700
    assert energystate.load(str(path))[0][2][0] == 10_003_700


def test_hourly_value_below_the_restored_estimate_holds_it(tmp_path):
    path = tmp_path / "energy_state.txt"
    dev = Device(path)
    dev.frame(list3(5_000_000, 10, power_w=10000))
    for _ in range(90):
        dev.frame(list1(40000))  # the estimate runs ahead of the meter
    dev.frame(list3(5_000_500, 11, power_w=40000))
    saved = energystate.load(str(path))[0]
    assert saved[3][0] > 5_000_500  # the estimate served at the save, held above the total
    seen = dev.ext()
    after = Device(path, now=7)
    assert after.ext()[:4] == seen[:4] and after.ext()[4] == saved[3][0]
    low = list(after.ext())
    after.frame(list3(5_000_600, 12, power_w=0))  # the meter's next value: below it
    assert after.u32(69) == low[4]  # holds
    assert after.u32(61) == 5_000_600 and after.u32(20) == 5_000
    for reg, was in zip(after.ext(), low):
        assert reg >= was


def test_another_meter_id_starts_fresh(tmp_path):
    path = tmp_path / "energy_state.txt"
    dev = Device(path)
    dev.frame(list3(9_000_000, 10))
    after = Device(path, now=3)
    assert after.u32(61) == 9_000_000
    after.frame(list2(METER_B))  # another meter on the same device
    assert after.ext() == [0] * 8 and not after.regs.value(50) & STATUS_RESTORED
    after.frame(list3(120_000, 11, meter_id=METER_B))
    assert after.u32(61) == 120_000 and after.u32(20) == 120
    assert energystate.load(str(path))[0][0] == METER_B


def test_same_meter_id_restored_state_is_not_lowered_by_a_list2(tmp_path):
    path = tmp_path / "energy_state.txt"
    Device(path).frame(list3(9_000_000, 10))
    after = Device(path, now=3)
    after.frame(list2(METER_A))
    assert after.u32(61) == 9_000_000 and after.regs.value(50) & STATUS_RESTORED


class CountingFiles(OsFiles):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, path, data):
        self.writes += 1
        super().write(path, data)


def test_written_at_most_once_per_meter_hour(tmp_path):
    files = CountingFiles()
    dev = Device(tmp_path / "energy_state.txt", files)
    dev.frame(list3(1_000_000, 10))
    assert files.writes == 1
    dev.frame(list3(1_000_000, 10))  # Aidon repeats the hour: ignored
    dev.frame(list3(1_000_100, 10))  # the same meter hour with more (autumn clock change)
    assert files.writes == 1 and dev.u32(61) == 1_000_100
    dev.frame(list3(1_002_000, 11))
    assert files.writes == 2


def test_power_cut_at_every_step_of_the_state_write_leaves_old_or_new(tmp_path):
    old = (METER_A, (2026, 1, 1, 10, 0, 0), [1_000_000, 0, 5000, 7000], [1_000_040, 0, 5000,
                                                                           7000])
    new = (METER_A, (2026, 1, 1, 11, 0, 0), [1_003_000, 0, 5100, 7100], [1_003_000, 0, 5100,
                                                                           7100])
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    energystate.save(str(probe_dir / "e.txt"), old)
    probe = CrashingFiles()
    energystate.save(str(probe_dir / "e.txt"), new, probe)
    total = probe.ops
    assert total > 10
    seen = set()
    for crash_at in range(1, total + 2):
        d = tmp_path / ("cut%d" % crash_at)
        d.mkdir()
        path = str(d / "e.txt")
        energystate.save(path, old)
        files = CrashingFiles(crash_at)
        try:
            energystate.save(path, new, files)
            finished = True
        except PowerCut:
            finished = False
        got, warning = energystate.load(path)  # power back on
        assert warning is None and got in (old + (None,), new + (None,)), (crash_at, files.log, warning)
        if finished:
            assert got == new + (None,)  # no tariff line (the capacity tariff is off)
        seen.add(got[2][0])
        assert not os.path.exists(path + ".new"), (crash_at, files.log)
        assert energystate.load(path) == (got, None)
    assert seen == {1_000_000, 1_003_000}


def test_power_cut_during_the_first_write_gives_nothing_or_new(tmp_path):
    new = (METER_A, None, [1, 2, 3, 4], [1, 2, 3, 4])
    for crash_at in range(1, 30):
        path = str(tmp_path / ("e%d.txt" % crash_at))
        try:
            energystate.save(path, new, CrashingFiles(crash_at))
        except PowerCut:
            pass
        assert energystate.load(path) in ((None, None), (new + (None,), None))


@pytest.mark.parametrize("content", [
    b"",
    b"meter_id = 1\n",  # hand-written, no end line
    b"\xff\xfe\x00garbage",
    seal("meter_id = 1\nclock = -\ntotals = 1 2 3\nestimates = 1 2 3 4\n")[:-9],  # torn
    seal("meter_id = 1\nclock = -\ntotals = 1 2 3\nestimates = 1 2 3 4\n"),
    seal("meter_id = 1\nclock = 2026 1 1\ntotals = 1 2 3 4\nestimates = 1 2 3 4\n"),
    seal("meter_id = \nclock = -\ntotals = 1 2 3 4\nestimates = 1 2 3 4\n"),
    seal("meter_id = 1\nclock = -\ntotals = 1 2 -3 4\nestimates = 1 2 3 4\n"),
    seal("meter_id = 1\ntotals = 1 2 3 4\nestimates = 1 2 3 4\n"),
    seal("meter_id = 1\nclock = -\ntotals = 1 2 x 4\nestimates = 1 2 3 4\nnonsense\n"),
])
def test_damaged_file_is_not_restored_and_the_device_goes_on(tmp_path, content):
    path = tmp_path / "energy_state.txt"
    path.write_bytes(content)
    dev = Device(path)
    assert dev.warning and "not restored" in dev.warning and str(path) in dev.warning
    assert dev.app.energy_warning == dev.warning
    assert dev.ext() == [0] * 8 and not dev.regs.value(50) & STATUS_RESTORED
    dev.frame(list3(2_000_000, 10))  # the next hourly value writes a good file
    assert dev.u32(61) == 2_000_000 and dev.app.energy_warning is None
    assert Device(path).u32(61) == 2_000_000


def test_unreadable_drive_is_a_warning(tmp_path):
    class Unreadable(OsFiles):
        def read(self, path):
            raise OSError(errno.EIO, "I/O error")

    dev = Device(tmp_path / "energy_state.txt", Unreadable())
    assert "not restored" in dev.warning and dev.ext() == [0] * 8


def test_read_only_drive_warns_and_serves_the_values(tmp_path):
    dev = Device(tmp_path / "energy_state.txt", ReadOnlyFiles())
    dev.frame(list3(3_000_000, 10))
    assert dev.u32(61) == 3_000_000 and dev.u32(20) == 3_000
    assert dev.app.energy_warning.startswith("energy state not saved: OSError")
    assert not (tmp_path / "energy_state.txt").exists()


def test_meter_id_that_is_no_line_of_text_is_not_saved(tmp_path):
    path = str(tmp_path / "e.txt")
    assert energystate.save(path, ("a\nb", None, [1] * 4, [1] * 4)) is False
    assert energystate.save(path, (None, None, [1] * 4, [1] * 4)) is False
    assert not os.path.exists(path)


def test_api_status_serves_the_never_decreasing_energies(tmp_path):
    path = tmp_path / "energy_state.txt"
    Device(path).frame(list3(4_000_000, 10, export_wh=1230))
    after = Device(path, now=5)

    class Web:
        uptime_s = requests = errors = 0

    status = webapi.status(after.app, Web(), after.now)
    assert status["totals"]["active_energy_import_wh"] == 4_000_000
    assert status["totals"]["active_energy_export_wh"] == 1230
    assert status["totals"]["restored"] is True
    assert status["estimated"]["active_energy_import_wh"] >= 4_000_000
    assert status["device"]["energy_warning"] is None
    after.frame(list3(4_001_000, 11, export_wh=1300))
    status = webapi.status(after.app, Web(), after.now)
    assert status["totals"]["active_energy_import_wh"] == 4_001_000
    assert status["totals"]["restored"] is False


def test_lower_meter_total_of_the_same_meter_holds_the_totals(tmp_path):
    """40062-40069 never decrease for one meter id: a lower total (a meter whose registers
    were reset, a state file from later) holds them; 40021 shows the meter's own value."""
    path = tmp_path / "energy_state.txt"
    Device(path).frame(list3(9_000_000, 14))
    after = Device(path, now=3)
    after.frame(list3(8_999_000, 15))
    assert after.u32(61) == 9_000_000 and after.u32(20) == 8_999
    assert after.u32(69) >= 9_000_000
    after.frame(list3(9_000_500, 16))
    assert after.u32(61) == 9_000_500


def test_the_restored_hour_sent_again_after_a_restart_is_taken_once(tmp_path):
    """Aidon repeats its last hourly list: after a restart the restored hour itself fills
    the original map (40021) without a new write; older hours stay ignored."""
    files = CountingFiles()
    path = tmp_path / "energy_state.txt"
    Device(path, files).frame(list3(6_000_000, 10))
    assert files.writes == 1
    after = Device(path, files, now=9)
    after.frame(list3(5_990_000, 9))  # an older hour: ignored
    assert after.u32(20) == 0 and after.regs.value(50) & STATUS_RESTORED
    after.frame(list3(6_000_000, 10))
    assert after.u32(20) == 6_000 and not after.regs.value(50) & STATUS_RESTORED
    after.frame(list3(6_000_000, 10))
    assert after.regs.stale_repeats == 2 and files.writes == 1
