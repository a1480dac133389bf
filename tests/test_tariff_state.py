"""The capacity tariff in the device (docs/tariff.md): off = its module never loaded;
on = peaks saved with the energy state (one file, one write per meter hour), a power cut at
every step of that write leaves the old or the new peaks, a damaged file gives empty peaks
and a visible warning, registers 40081-40102 and /api/status "tariff"."""

import sys

from han2x_core import energystate, webapi
from han2x_core.app import App
from han2x_core.registers import TARIFF_OFF, Registers
from test_energystate import METER_A, FrameHan, list2
from test_storage import CrashingFiles, PowerCut
from tools.sim.metersim import encode_frame

ON = {"tariff": True, "tariff_peaks": 3, "tariff_steps": "2 5 10 15 20 25 50 75 100",
      "scaling_factor": 1000}


def list3(wh, day, hour, power_w=2000):
    values = {"active_power_import_w": power_w, "active_power_export_w": 0,
              "reactive_power_import_var": 0, "reactive_power_export_var": 0,
              "current_l1_ma": 1000, "current_l2_ma": 1000, "current_l3_ma": 1000,
              "voltage_l1_dv": 2300, "voltage_l2_dv": 2300, "voltage_l3_dv": 2300,
              "active_energy_import_wh": wh, "active_energy_export_wh": 0,
              "reactive_energy_import_varh": 5000, "reactive_energy_export_varh": 7000,
              "meter_id": METER_A}
    return encode_frame("aidon", 3, values, (2026, 1, day, hour, 0, 10))


class Device:
    def __init__(self, path, settings=ON, files=None, now=0):
        self.han = FrameHan()
        self.regs = Registers()
        self.app = App(self.han, self.regs, now, settings=dict(settings))
        self.warning = self.app.restore_energy(str(path), files)
        self.app.configure(dict(settings))
        self.now = now

    def frame(self, frame, after_ms=2000):
        self.now += after_ms
        self.app.step(self.now)
        self.han.send(frame)
        self.app.step(self.now)

    def status(self):
        return webapi.status(self.app, type("Web", (), {"uptime_s": 0, "requests": 0,
                                                        "errors": 0})(), self.now)["tariff"]


def day_of_hours(dev, day, start_wh, loads):
    """Hourly totals on `day` for hours 1..len(loads), loads[i] Wh in hour i."""
    wh = start_wh
    dev.frame(list3(wh, day, 0))
    for hour, load in enumerate(loads, 1):
        wh += load
        dev.frame(list3(wh, day, hour))
    return wh


def test_off_never_loads_the_module_and_the_registers_read_0(tmp_path):
    sys.modules.pop("han2x_core.tariff", None)
    dev = Device(tmp_path / "e.txt", settings={"tariff": False})
    day_of_hours(dev, 1, 1000000, [3000, 5000])
    assert "han2x_core.tariff" not in sys.modules and dev.app.tariff is None
    assert dev.status() is None
    assert [dev.regs.value(o) for o in range(77, 102)] == [0] * 25
    assert "tariff" not in (tmp_path / "e.txt").read_text()


def test_on_serves_registers_and_status_and_turning_it_off_forgets_it(tmp_path):
    dev = Device(tmp_path / "e.txt")
    wh = day_of_hours(dev, 1, 1000000, [3000, 5000, 4000])
    wh = day_of_hours(dev, 2, wh, [6000])
    dev.frame(list2(METER_A, power_w=4000))
    s = dev.status()
    assert [(p["date"], p["hour"], p["kwh"]) for p in s["peaks"]] == [
        ("2026-01-02", 0, 6.0), ("2026-01-01", 1, 5.0)]
    assert s["average_kw"] == 5.5 and s["step"] == {"from_kw": 5.0, "to_kw": 10.0, "index": 3}
    # today (2nd) already has 6 kWh: this hour may reach 2 x 10 - 5 = 15 kWh
    assert s["kwh_left"] == round(15 - s["hour_used_kwh"], 3)
    r = dev.regs.value
    assert r(TARIFF_OFF) & 1 and r(TARIFF_OFF + 1) == 3
    assert dev.regs.value32(TARIFF_OFF + 2) == 5500
    assert dev.regs.value32(TARIFF_OFF + 4) == 10000
    assert dev.regs.value32(TARIFF_OFF + 10) == 15000 - int(s["hour_used_kwh"] * 1000)
    assert [dev.regs.value32(TARIFF_OFF + 12 + 2 * i) for i in range(5)] == [6000, 5000, 0, 0, 0]
    dev.app.configure({"tariff": False})
    assert dev.app.tariff is None and "han2x_core.tariff" not in sys.modules
    assert [r(o) for o in range(TARIFF_OFF, 102)] == [0] * 22


def test_peaks_survive_a_restart_and_are_written_once_per_meter_hour(tmp_path):
    class Counting(CrashingFiles):
        pass

    files = Counting()
    dev = Device(tmp_path / "e.txt", files=files)
    day_of_hours(dev, 1, 1000000, [3000, 5000, 4000] + [1000] * 20)
    writes = [name for name in files.log if name.startswith("write")]
    assert files.log.count("rename") == 24  # 24 hourly totals, one save each
    assert writes
    dev.frame(list3(1000000 + 32000, 1, 23))  # Aidon repeats the hour: no write
    assert files.log.count("rename") == 24
    before = dev.status()
    again = Device(tmp_path / "e.txt")
    s = again.status()
    assert s["peaks"] == before["peaks"] and s["restored"] and s["warning"] is None
    assert again.regs.value(TARIFF_OFF) & 2  # restored


def test_power_cut_at_every_step_of_the_write_keeps_the_old_or_the_new_peaks(tmp_path):
    path = tmp_path / "probe.txt"
    dev = Device(path)
    wh = day_of_hours(dev, 1, 1000000, [3000])
    old = dev.status()["peaks"]
    probe = CrashingFiles()
    dev.app.energy_files = probe
    dev.frame(list3(wh + 7000, 1, 2))
    new = dev.status()["peaks"]
    assert old != new and probe.ops > 10
    seen = []
    for crash_at in range(1, probe.ops + 2):
        p = tmp_path / ("cut%d.txt" % crash_at)
        d = Device(p)
        day_of_hours(d, 1, 1000000, [3000])
        files = CrashingFiles(crash_at)
        d.app.energy_files = files
        try:
            d.frame(list3(wh + 7000, 1, 2))
        except PowerCut:
            pass
        after = Device(p)  # power back on
        got = after.status()
        assert got["warning"] is None and got["peaks"] in (old, new), (crash_at, files.log)
        seen.append(got["peaks"] == new)
    assert seen[0] is False and seen[-1] is True


def test_a_damaged_tariff_line_gives_empty_peaks_a_warning_and_the_energies(tmp_path):
    path = tmp_path / "e.txt"
    dev = Device(path)
    day_of_hours(dev, 1, 1000000, [3000, 5000])
    state = energystate.load(str(path))[0]
    for bad in ([1, 2026, 1, 5, 5, -1, 2, 3299, 5000, 101, 3000], "x"):
        text = energystate.serialise(*state[:4])
        text += "tariff = %s\n" % (bad if isinstance(bad, str) else " ".join(map(str, bad)))
        from han2x_core.storage import seal

        path.write_bytes(seal(text))
        again = Device(path)
        s = again.status()
        assert s["peaks"] == [] and "peaks not restored" in s["warning"]
        assert again.regs.value(TARIFF_OFF) & 4  # warning flag
        assert again.regs.value32(61) == 1008000 and again.warning is None  # energies kept
        # the next hourly save writes good peaks and clears the warning (the first total
        # starts the count again, the second closes an hour)
        again.frame(list3(1008000 + 2500, 1, 3))
        assert again.status()["warning"] is None
        again.frame(list3(1008000 + 4000, 1, 4))
        assert [p["kwh"] for p in Device(path).status()["peaks"]] == [1.5]


def test_a_damaged_file_is_a_warning_never_a_crash(tmp_path):
    path = tmp_path / "e.txt"
    path.write_bytes(b"\xff\x00 not a state file")
    dev = Device(path)
    assert dev.warning and "peaks not restored" in dev.status()["warning"]
    day_of_hours(dev, 1, 1000000, [3000])
    assert dev.status()["peaks"][0]["kwh"] == 3.0


def test_an_edited_peak_is_saved_at_once(tmp_path):
    path = tmp_path / "e.txt"
    dev = Device(path)
    day_of_hours(dev, 1, 1000000, [3000, 9000])
    t = dev.app.tariff
    t.clear()
    t.add_peak(1, 1, 3000)  # the 9 kWh hour was a mistake (e.g. a car charger test)
    assert dev.app.save_tariff() is None
    assert [p["kwh"] for p in Device(path).status()["peaks"]] == [3.0]
