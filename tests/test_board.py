"""code.py, boot.py, safemode.py and han2x_core/board_io.py on CPython with the fakes in
tests/support/fakes, the real adafruit_wiznet5k driver on the W5500 model, the PIO program in the
emulator, and real Modbus requests over 127.0.0.1."""

import contextlib
import os
import re
import runpy
import socket
import struct
import threading

import pytest

from support.fakes._state import installed
from han2x_core import FIRMWARE_VERSION, board_io, bootio, indicators
from han2x_core import settings as S
from han2x_core.storage import READ_ONLY_MESSAGE, SettingsStore
from support.util import ROOT, free_port, load_corpus

def _stub_text(board_dir):
    import board_definitions

    path = os.path.join(list(board_definitions.__path__)[0], board_dir, "__init__.pyi")
    with open(path) as f:
        return f.read()


def _board_stub_names(board_dir):
    return set(re.findall(r"^(\w+): microcontroller\.Pin", _stub_text(board_dir), re.M))


@pytest.mark.parametrize("board_id", sorted(board_io.PROFILES))
def test_profile_pins_exist_on_the_board(board_id):
    names = _board_stub_names(board_id)
    prof = board_io.PROFILES[board_id]
    wanted = [prof["han_rx"], prof["han_led"], prof["power_led"], prof["button"],
              prof["w5500_cs"]] + list(prof["spi"])
    if prof["w5500_reset"]:
        wanted.append(prof["w5500_reset"])
    for name in wanted:
        assert name in names, (board_id, name)
    gpios = [_gpio(board_id, n) for n in wanted]
    assert len(set(gpios)) == len(gpios), "two functions on one GPIO"


def _gpio(board_dir, name):
    m = re.search(r"^%s: microcontroller\.Pin  # (GPIO\d+)" % name, _stub_text(board_dir), re.M)
    return m.group(1)


def test_unknown_board_falls_back_to_evb_pico_pins():
    prof, known = board_io.profile_for("raspberry_pi_pico")
    assert not known and prof is board_io.PROFILES["wiznet_w5500_evb_pico"]


# --- boot.py ----------------------------------------------------------------------------

@pytest.fixture
def paths(tmp_path, monkeypatch):
    settings = str(tmp_path / "settings.toml")
    marker = str(tmp_path / "usb_write.txt")
    monkeypatch.setattr(board_io, "SETTINGS_PATH", settings)
    monkeypatch.setattr(board_io, "USB_WRITE_MARKER", marker)
    return settings, marker


def _run_boot(hw, capsys):
    runpy.run_path(os.path.join(ROOT, "boot.py"), run_name="__main__")
    return capsys.readouterr().out


def test_boot_gives_the_board_the_drive(paths, capsys):
    with installed() as hw:
        out = _run_boot(hw, capsys)
        assert hw.storage.remounts == [("/", False)]
        assert not hw.storage.getmount("/").readonly
    assert "the device writes the drive" in out
    assert not os.path.exists(paths[0])  # nothing written without a reason


@pytest.mark.parametrize("content,kept", [("once\n", False), ("", False), ("keep\n", True)])
def test_boot_usb_marker_opens_the_drive_for_one_start(paths, capsys, content, kept):
    settings, marker = paths
    with open(marker, "w") as f:
        f.write(content)
    with installed() as hw:
        out = _run_boot(hw, capsys)
        assert hw.storage.remounts == [("/", False), ("/", True)]
        assert hw.storage.getmount("/").readonly  # code cannot write: the computer can
    assert "the computer writes the drive" in out
    assert os.path.exists(marker) == kept


def test_request_usb_write_writes_the_marker_and_resets(paths):
    settings, marker = paths
    with installed() as hw:
        with pytest.raises(hw.microcontroller.ResetCalled):
            board_io.request_usb_write(hw.microcontroller, marker)
    assert open(marker).read() == "once\n"


def test_usb_write_hook_writes_now_and_restarts_only_when_asked(paths):
    marker = paths[1]
    with installed() as hw:
        restart = board_io.usb_write_hook(hw.microcontroller)()
        assert open(marker).read() == "once\n" and hw.microcontroller.resets == []
        with pytest.raises(hw.microcontroller.ResetCalled):
            restart()


def test_usb_write_hook_leaves_no_half_marker(paths, monkeypatch):
    """A disk that fills while the marker is written: no marker (boot.py would act on an
    empty one), the OSError for the web page, and no restart."""
    marker = paths[1]

    class Full:
        def __init__(self, path, mode):
            self.f = open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(board_io, "open", Full, raising=False)
    with installed() as hw:
        with pytest.raises(OSError, match="No space"):
            board_io.usb_write_hook(hw.microcontroller)()
        assert hw.microcontroller.resets == []
    assert not os.path.exists(marker)


def test_boot_button_held_at_power_up_sets_dhcp(paths, capsys):
    settings, marker = paths
    SettingsStore(settings).save(dict(S.DEFAULTS, modbus_port=1502))
    with installed(board_id="adafruit_feather_rp2040") as hw:
        hw.digitalio.levels["D5"] = False  # FACTRESET (to ground) held
        sleeps = []

        def sleep(ms):  # the user lets go after 1 s
            sleeps.append(ms)
            hw.supervisor.advance(ms)
            if sum(sleeps) >= 1000:
                hw.digitalio.levels["D5"] = True

        lines = bootio.boot(hw.storage, hw.digitalio, hw.board, hw.microcontroller, sleep,
                              hw.supervisor.ticks_ms, settings_path=settings, marker=marker)
        blinks = hw.digitalio.outputs["LED"]
        assert True in blinks and blinks.count(False) > 1  # the HAN LED blinked
        assert "DHCP mode set" in " ".join(lines)
        assert board_io.dhcp_requested(hw.microcontroller) is True
        assert board_io.dhcp_requested(hw.microcontroller) is False  # once
        assert "D5" not in hw.digitalio.claimed and "LED" not in hw.digitalio.claimed
    got, warning = SettingsStore(settings).load()
    assert got == dict(S.DEFAULTS, modbus_port=1502, dhcp=True) and warning is None


def test_boot_stuck_button_does_not_hang(paths):
    settings, marker = paths
    with installed() as hw:
        hw.digitalio.levels["GP15"] = False  # never released

        def sleep(ms):
            hw.supervisor.advance(ms)

        lines = bootio.boot(hw.storage, hw.digitalio, hw.board, hw.microcontroller, sleep,
                              hw.supervisor.ticks_ms, settings_path=settings, marker=marker)
        assert hw.supervisor.ticks_ms() <= 31000
    assert any("DHCP mode set" in x for x in lines)


def test_boot_survives_errors(paths, capsys, monkeypatch):
    with installed() as hw:
        def broken(*a, **k):
            raise RuntimeError("flash on fire")

        monkeypatch.setattr(hw.storage, "remount", broken)
        out = _run_boot(hw, capsys)
    assert "boot.py: flash on fire" in out


_LOADED = r"""
import os, runpy, sys
sys.path.append(%(root)r)
import tools._host
import han2x_core
package = sorted(m for m in sys.modules if m.startswith("han2x_core"))
from support.fakes._state import installed
from han2x_core import board_io
board_io.SETTINGS_PATH = os.path.join(%(tmp)r, "settings.toml")
board_io.USB_WRITE_MARKER = os.path.join(%(tmp)r, "usb_write.txt")
with installed() as hw:
    hw.supervisor.runtime.safe_mode_reason = hw.supervisor.SafeModeReason.PROGRAMMATIC
    runpy.run_path(os.path.join(%(root)r, %(script)r), run_name="__main__")
print("package", *package)
print("after", *sorted(m for m in sys.modules if m.startswith("han2x_core")))
"""


@pytest.mark.parametrize("script", ["boot.py", "safemode.py"])
def test_boot_and_safemode_do_not_load_the_decoder(script, tmp_path):
    """The package itself holds no import of the decoder (21 KB of cosem and meters on the
    board), and boot.py and safemode.py, which import only bootio, never load it. A fresh
    interpreter: this test process has long loaded the decoder."""
    import subprocess
    import sys

    code = _LOADED % {"root": ROOT, "tmp": str(tmp_path), "script": script}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    lines = dict(line.split(" ", 1) for line in p.stdout.splitlines()
                 if line.startswith(("package ", "after ")))
    assert lines["package"].split() == ["han2x_core"]
    after = lines["after"].split()
    assert "han2x_core.bootio" in after, p.stdout  # the script did run
    for decoder in ("han2x_core.cosem", "han2x_core.meters", "han2x_core.hdlc"):
        assert decoder not in after, after


# --- safemode.py --------------------------------------------------------------------------

@pytest.mark.parametrize("reason,resets", [
    ("BROWNOUT", True), ("HARD_FAULT", True), ("WATCHDOG", True), ("STACK_OVERFLOW", True),
    ("GC_ALLOC_OUTSIDE_VM", True), ("USER", False), ("PROGRAMMATIC", False),
    ("SDK_FATAL_ERROR", True), ("NO_CIRCUITPY", False),
])
def test_safemode_resets_unless_the_user_asked(reason, resets, monkeypatch, capsys):
    import time

    monkeypatch.setattr(time, "sleep", lambda s: None)
    with installed() as hw:
        hw.supervisor.runtime.safe_mode_reason = getattr(hw.supervisor.SafeModeReason, reason)
        if resets:
            with pytest.raises(hw.microcontroller.ResetCalled):
                runpy.run_path(os.path.join(ROOT, "safemode.py"))
        else:
            runpy.run_path(os.path.join(ROOT, "safemode.py"))
            assert hw.microcontroller.resets == []


# --- services -------------------------------------------------------------------------------

def test_board_status_temperature_every_10_s():
    class Regs:
        calls = []

        def set_board(self, temperature_c100=None, hours=None):
            self.calls.append(temperature_c100)

    with installed() as hw:
        regs = Regs()
        svc = board_io.BoardStatus(hw.microcontroller, regs, (1 << 29) - 5000)  # reads at once
        svc.poll((1 << 29) - 4000)  # not yet
        hw.microcontroller.cpu.temperature = -3.456
        svc.poll((1 << 29) - 1000)  # not yet
        svc.poll(5001)  # 10 s later, across the tick wrap
        hw.microcontroller.cpu.temperature = None
        svc.poll(20000)
    assert regs.calls == [2750, -346]


def test_watchdog_service():
    with installed() as hw:
        w = board_io.Watchdog(hw.microcontroller, hw.watchdog)
        assert hw.microcontroller.watchdog.mode == hw.watchdog.WatchDogMode.RESET
        assert hw.microcontroller.watchdog.timeout == 8
        w.poll(0)
        w.poll(1)
        assert hw.microcontroller.watchdog.feeds == 2


def test_factory_reset_on_read_only_drive_applies_defaults_anyway(tmp_path):
    from han2x_core.app import App

    class Regs:
        def tick(self, now_ms):
            pass

        def configure(self, settings):
            self.settings = settings

    class RO(SettingsStore):
        def save(self, settings):
            raise OSError(READ_ONLY_MESSAGE)

    app = App(None, Regs(), 0, settings=dict(S.DEFAULTS, ip="10.1.1.1", gateway="10.1.1.254"),
              store=RO(str(tmp_path / "s.toml")))
    assert board_io.factory_reset(app) is False
    assert app.settings == S.DEFAULTS and app.registers.settings == S.DEFAULTS
    assert app.settings_warning == READ_ONLY_MESSAGE
    app.store = SettingsStore(str(tmp_path / "s.toml"))
    assert board_io.factory_reset(app) is True


def test_settings_file_saves_with_storage_loaded_only_for_the_save(tmp_path):
    """The board's App store: storage.py is imported for a save and dropped after it,
    and the keys the file holds that we do not own are written back."""
    import sys

    path = tmp_path / "settings.toml"
    path.write_text("CIRCUITPY_PYSTACK_SIZE = 2048\nmodbus_port = 1502\n")
    loaded = SettingsStore(str(path))
    settings, warning = loaded.load()
    assert warning is None and settings["modbus_port"] == 1502
    store = board_io.SettingsFile(loaded.path, loaded.extra)
    sys.modules.pop("han2x_core.storage", None)
    store.save(dict(settings, modbus_port=1503))
    assert "han2x_core.storage" not in sys.modules
    again, warning = SettingsStore(str(path)).load()
    assert warning is None and again["modbus_port"] == 1503
    assert "CIRCUITPY_PYSTACK_SIZE = 2048" in path.read_text()
    gone = board_io.SettingsFile(str(tmp_path / "no-such-folder" / "settings.toml"), {})
    with pytest.raises(OSError):  # a failed save raises (App.save_settings reports it)
        gone.save(dict(settings))
    assert "han2x_core.storage" not in sys.modules


# --- code.py end to end ---------------------------------------------------------------------

class StopLoop(BaseException):
    """Ends code.py's endless loop from the test (not an Exception: code.py lets it pass)."""


def _modbus_read(port, start, count, unit=1):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(struct.pack(">HHHBBHH", 7, 0, 6, unit, 3, start, count))
        head = b""
        while len(head) < 9:
            head += s.recv(9 - len(head))
        body = b""
        while len(body) < head[8]:
            body += s.recv(head[8] - len(body))
    return struct.unpack(">%dH" % count, body)


def _frame():
    for c in load_corpus():
        if c["expected"].get("voltage_l1_dv") and len(c["hex"]) < 600 and "aidon" in c["id"]:
            return bytes.fromhex(c["hex"]), c["expected"]
    raise AssertionError("no Aidon list 2 frame in the corpus")


@pytest.mark.parametrize("board_id, web_memory", [("wiznet_w5500_evb_pico", True),
                                                   ("adafruit_feather_rp2040", True),
                                                   ("wiznet_w5500_evb_pico", False)])
def test_code_py_serves_modbus_from_a_pio_telegram(board_id, web_memory, paths, monkeypatch,
                                                   capsys):
    """code.py boots on fakes: settings from the file, W5500 (model + real driver), Modbus
    and web servers, PIO HAN input (emulator), LEDs, watchdog, temperature; a telegram
    on the HAN pin shows up in the registers read by a Modbus client over 127.0.0.1.
    Without the memory for the web server (MemoryError building it) the device serves
    Modbus alone instead of restarting."""
    from tools.sim.w5500_model import W5500Model, install_driver_shims

    from han2x_core import web

    install_driver_shims()
    if not web_memory:
        def no_memory(self, *a, **k):
            raise MemoryError("memory allocation failed, allocating 3072 bytes")

        monkeypatch.setattr(web.WebServer, "__init__", no_memory)
    settings_path, marker = paths
    SettingsStore(settings_path).save(dict(S.DEFAULTS, modbus_port=1502))
    modbus_port, web_port = free_port(), free_port()
    model = W5500Model(port_map={1502: modbus_port, 80: web_port})
    frame, expected = _frame()
    with installed(board_id=board_id) as hw:
        prof = board_io.PROFILES[board_id]
        real_dio = hw.digitalio.DigitalInOut

        def dio(pin):
            return model.cs if pin.name == prof["w5500_cs"] else real_dio(pin)

        monkeypatch.setattr(hw.digitalio, "DigitalInOut", dio)
        monkeypatch.setattr(hw.busio, "SPI", lambda *a, **k: model.spi)
        hw.storage.getmount("/").readonly = False  # boot.py gave the board the drive
        state = {"ticks": 0, "sent": False, "result": None, "error": None}

        def client():
            try:
                state["result"] = _modbus_read(modbus_port, 0, 79)
            except Exception as e:  # reported by the assertion below
                state["error"] = e

        thread = threading.Thread(target=client, daemon=True)

        def ticks_ms():
            state["ticks"] += 1
            hw.supervisor.advance(5)
            sms = hw.rp2pio.instances
            if sms and not state["sent"]:
                sm = sms[-1]
                wave = hw.rp2pio.Line()
                wave.t = float(sm.clock)
                wave.idle(4).chars(frame, "8E1").idle(4)
                sm.attach(wave)
                sm.emulate(int(wave.t) - sm.clock)
                state["sent"] = True
                hw.mem_free[0] = 91234  # one busy step: the lowest free heap since start
                thread.start()
            elif state["sent"]:
                hw.mem_free[0] = 150000
            if state["sent"] and not thread.is_alive():
                state["after"] = state.get("after", 0) + 1
                if state["after"] > 5:  # a few more loops after the answer
                    raise StopLoop()
            if state["ticks"] > 200000:
                raise StopLoop()
            return hw.supervisor._now[0] & ((1 << 29) - 1)

        monkeypatch.setattr(hw.supervisor, "ticks_ms", ticks_ms)
        with pytest.raises(StopLoop):
            runpy.run_path(os.path.join(ROOT, "code.py"), run_name="__main__")
        out = capsys.readouterr().out
        assert state["error"] is None, state["error"]
        regs = state["result"]
        assert regs[14] << 16 | regs[15] == expected["voltage_l1_dv"]  # 40015: voltage L1
        assert regs[42] == FIRMWARE_VERSION  # 40043
        assert regs[43] == 2750  # 40044: 27.5 degC from microcontroller.cpu.temperature
        assert regs[77] << 16 | regs[78] == 91234  # 40078-40079: lowest free heap
        assert hw.microcontroller.watchdog.feeds >= 5  # once per loop
        assert hw.microcontroller.watchdog.mode == hw.watchdog.WatchDogMode.RESET
        assert hw.digitalio.outputs[prof["power_led"]][-1] is True
        assert hw.digitalio.outputs[prof["han_led"]][-1] is True  # a telegram just came
        assert "HAN2X" in out and prof["name"] in out
        assert hw.microcontroller.resets == []
        assert ("web page unavailable: MemoryError" in out) is not web_memory, out
        assert (80 in model._listeners) is web_memory  # device port 80: the web listener
    model.close()


def test_code_py_start_up_failure_resets(paths, monkeypatch, capsys):
    with installed() as hw:
        def no_spi(*a, **k):
            raise ValueError("SCK in use")

        monkeypatch.setattr(hw.busio, "SPI", no_spi)
        with pytest.raises(hw.microcontroller.ResetCalled):
            runpy.run_path(os.path.join(ROOT, "code.py"), run_name="__main__")
        assert hw.microcontroller.resets == [True]
    assert "SCK in use" in capsys.readouterr().err


def _wire_w5500(monkeypatch, hw, model):
    """The W5500 model on the EVB-Pico's SPI bus and its chip select (GP17)."""
    real_dio = hw.digitalio.DigitalInOut
    monkeypatch.setattr(hw.digitalio, "DigitalInOut",
                        lambda pin: model.cs if pin.name == "GP17" else real_dio(pin))
    monkeypatch.setattr(hw.busio, "SPI", lambda *a, **k: model.spi)


def test_code_py_ctrl_c_stops_the_watchdog(paths, monkeypatch, capsys):
    """A developer's Ctrl-C must give a REPL that the watchdog does not reset 8 s later."""
    from tools.sim.w5500_model import W5500Model, install_driver_shims

    install_driver_shims()
    model = W5500Model(port_map={502: free_port(), 80: free_port()})
    SettingsStore(paths[0]).save(dict(S.DEFAULTS, han_line="8N1", han_polarity="inverted"))
    with installed() as hw:
        _wire_w5500(monkeypatch, hw, model)
        calls = [0]

        def ticks_ms():
            calls[0] += 1
            if calls[0] > 20:
                raise KeyboardInterrupt()
            return calls[0]

        monkeypatch.setattr(hw.supervisor, "ticks_ms", ticks_ms)
        runpy.run_path(os.path.join(ROOT, "code.py"), run_name="__main__")
        # the han_* settings from the file reached the PIO receiver
        import adafruit_pioasm
        from tools.han_pio import program_source

        want = adafruit_pioasm.Program(program_source("8N1", "inverted")).assembled
        assert [sm.program for sm in hw.rp2pio.instances] == [list(want)]
        assert hw.microcontroller.watchdog.feeds > 0
        assert hw.microcontroller.watchdog.mode is None  # deinit
        assert hw.microcontroller.resets == []
    model.close()
    assert "HAN2X stopped" in capsys.readouterr().out


@contextlib.contextmanager
def code_py_first_step(monkeypatch, readonly=True):
    """Run code.py on the fakes and the W5500 model up to the App's first step; yields
    (that App, the fake hardware), the hardware still installed."""
    import han2x_core.app as app_mod

    seen = {}

    def step(self, now_ms):
        seen["app"] = self
        raise StopLoop()

    monkeypatch.setattr(app_mod.App, "step", step)  # wherever App was imported (assembly)
    from tools.sim.w5500_model import W5500Model, install_driver_shims

    install_driver_shims()
    model = W5500Model(port_map={502: free_port(), 80: free_port()})
    try:
        with installed() as hw:
            _wire_w5500(monkeypatch, hw, model)
            hw.storage.getmount("/").readonly = readonly
            with pytest.raises(StopLoop):
                runpy.run_path(os.path.join(ROOT, "code.py"), run_name="__main__")
            yield seen["app"], hw
    finally:
        model.close()


def test_code_py_reports_a_read_only_drive(paths, monkeypatch):
    """USB write mode: the web page must say why settings are not saved."""
    with code_py_first_step(monkeypatch) as (app, _hw):
        assert app.settings_warning == READ_ONLY_MESSAGE


def test_code_py_gives_the_web_page_the_drive_button(paths, monkeypatch):
    """App.usb_write from code.py writes usb_write.txt, then restarts the board."""
    with code_py_first_step(monkeypatch, readonly=False) as (app, hw):
        assert app.settings_warning is None
        restart = app.usb_write()
        assert open(paths[1]).read() == "once\n"
        assert hw.microcontroller.resets == []  # not before the web page's answer is sent
        with pytest.raises(hw.microcontroller.ResetCalled):
            restart()
        assert hw.microcontroller.resets == [True]


def test_indicator_constants_documented():
    with open(os.path.join(ROOT, "docs", "leds-and-button.md")) as f:
        text = f.read()
    assert "%d s" % (indicators.RESET_HOLD_MS // 1000) in text
    assert "60 s" in text


# --- start-up that fails again and again (han2x_core/startup.py) ---------------------------

def _failing_start(hw, capsys):
    """One code.py run whose start-up fails (no SPI): (reset?, console text)."""
    try:
        runpy.run_path(os.path.join(ROOT, "code.py"), run_name="__main__")
    except hw.microcontroller.ResetCalled:
        cap = capsys.readouterr()
        hw.digitalio.claimed.clear()  # the reset frees every pin and state machine
        hw.rp2pio.instances.clear()
        return True, cap.out + cap.err
    raise AssertionError("code.py returned")


def test_code_py_failing_starts_back_off_to_a_safe_state(paths, monkeypatch, capsys):
    """Two failed full starts, then two without the web server, then the safe state: the
    POWER LED blinks the code, the console says why, and the board is never reset again.
    A reset from there (the user's) tries a full start once more."""
    import time

    from han2x_core import startup

    with installed() as hw:
        def no_spi(*a, **k):
            raise ValueError("SCK in use")

        monkeypatch.setattr(hw.busio, "SPI", no_spi)
        modes = []
        for _ in range(startup.FULL_TRIES + startup.MODBUS_TRIES):
            reset, out = _failing_start(hw, capsys)
            assert reset and "SCK in use" in out
            modes.append("modbus-only" if "starting modbus-only" in out else "full")
        assert modes == ["full", "full", "modbus-only", "modbus-only"]
        assert len(hw.microcontroller.resets) == 4
        sleeps = []

        def sleep(s):
            sleeps.append(s)
            if len(sleeps) > 200:
                raise StopLoop()

        monkeypatch.setattr(time, "sleep", sleep)
        hw.digitalio.outputs.clear()
        with pytest.raises(StopLoop):
            runpy.run_path(os.path.join(ROOT, "code.py"), run_name="__main__")
        out = capsys.readouterr().out
        assert len(hw.microcontroller.resets) == 4  # no reset: the safe state stays
        assert "HAN2X safe state: 4 starts in a row failed; last: ValueError: SCK in use" in out
        power = hw.digitalio.outputs[board_io.PROFILES["wiznet_w5500_evb_pico"]["power_led"]]
        on_ms, off_ms, count, pause_ms = startup.SAFE_BLINK
        assert sleeps[:2 * count + 1] == [on_ms / 1000, off_ms / 1000] * count + [pause_ms / 1000]
        assert power[:1 + 2 * count] == [True] + [True, False] * count  # "on" at the start
        assert hw.rp2pio.instances == [] and hw.microcontroller.watchdog.mode is None
        # the user presses reset: a full start again
        monkeypatch.setattr(time, "sleep", lambda s: None)
        reset, out = _failing_start(hw, capsys)
        assert reset and "failed start" not in out


def test_code_py_modbus_only_start_leaves_the_web_server_out(paths, monkeypatch):
    """After two failed starts: HAN input and Modbus, no web server; a start that then
    runs STABLE_MS clears the count."""
    from han2x_core import startup
    from han2x_core.modbus_server import ModbusServer
    from han2x_core.web import WebServer

    fails = bytes((0x5A, startup.FULL_TRIES)) + b"ValueError: SCK in use\0"
    monkeypatch.setattr(startup, "begin", _begin_with(startup.begin, fails))
    with code_py_first_step(monkeypatch) as (app, hw):
        kinds = [type(s) for s in app.services]
        assert ModbusServer in kinds and WebServer not in kinds
        assert hw.rp2pio.instances  # the HAN receiver runs
        assert hw.microcontroller.nvm[2] == startup.FULL_TRIES + 1  # counted until stable
        startup.ok(hw.microcontroller.nvm)
        assert hw.microcontroller.nvm[2] == 0


def _begin_with(begin, raw):
    def wrapped(nvm):
        nvm[1:1 + len(raw)] = raw
        return begin(nvm)
    return wrapped


def test_code_py_start_order_han_and_modbus_before_the_web_server(paths, monkeypatch):
    """The PIO receiver is running and Modbus listening before the web server is built,
    and the watchdog is the last service."""
    from han2x_core import web

    seen = {}
    real_init = web.WebServer.__init__

    def init(self, pool, app, **kw):
        seen["pio"] = len(__import__("rp2pio").instances)
        seen["services"] = [type(s).__name__ for s in app.services]
        real_init(self, pool, app, **kw)

    monkeypatch.setattr(web.WebServer, "__init__", init)
    with code_py_first_step(monkeypatch) as (app, _hw):
        assert seen["pio"] == 1
        assert {"Network", "ModbusServer"} <= set(seen["services"])
        assert [type(s).__name__ for s in app.services][-2:] == ["WebServer", "Watchdog"]
        assert app.free_memory_min == _hw.mem_free[0]  # gc.mem_free() once started
        out = bytearray(4)
        assert app.registers.read(77, 2, out, 0) == 0 and int.from_bytes(out, "big") == 150000


def test_code_py_drops_the_startup_module_once_the_start_is_stable(paths, monkeypatch):
    """After STABLE_MS of loop the failed-start count is cleared and han2x_core.startup is
    forgotten (2.3 KB of the board's heap); Ctrl-C afterwards still stops cleanly."""
    import sys

    import han2x_core.app as app_mod
    from han2x_core import startup
    from tools.sim.w5500_model import W5500Model, install_driver_shims

    fails = bytes((0x5A, 1)) + b"MemoryError: x\0"
    monkeypatch.setattr(startup, "begin", _begin_with(startup.begin, fails))
    seen = []

    class Probe(app_mod.App):
        def step(self, now_ms):
            seen.append((now_ms, "han2x_core.startup" in sys.modules))
            if len(seen) > 20:
                raise KeyboardInterrupt()

    monkeypatch.setattr(app_mod, "App", Probe)
    install_driver_shims()
    model = W5500Model(port_map={502: free_port(), 80: free_port()})
    clock = [0]

    def ticks_ms():
        clock[0] += 5000
        return clock[0]

    try:
        with installed() as hw:
            _wire_w5500(monkeypatch, hw, model)
            monkeypatch.setattr(hw.supervisor, "ticks_ms", ticks_ms)
            runpy.run_path(os.path.join(ROOT, "code.py"), run_name="__main__")
            assert hw.microcontroller.nvm[2] == 0  # stable: the count is cleared
    finally:
        model.close()
    start = seen[0][0]
    held = [now - start < startup.STABLE_MS for now, _ in seen]
    assert [m for _, m in seen] == held and True in held and False in held, seen
