"""The cooperative loop: real captured frames in, readings merged, services isolated."""

import pytest

from han2x_core.app import App
from support.util import load_corpus

CORPUS = load_corpus()


class ChunkedHan:
    """A HAN source that hands out a byte string in fixed-size chunks, never blocking."""

    def __init__(self, data, chunk=37):
        self.data = data
        self.pos = 0
        self.chunk = chunk

    def readinto(self, buf):
        n = min(self.chunk, len(buf), len(self.data) - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


class RecordingRegisters:
    def __init__(self):
        self.readings = []
        self.ticks = 0
        self.configured = None

    def update(self, reading, now_ms):
        self.readings.append(reading)

    def tick(self, now_ms):
        self.ticks += 1

    def configure(self, settings):
        self.configured = settings


class Exploding:
    name = "exploding"

    def __init__(self):
        self.calls = 0

    def poll(self, now_ms):
        self.calls += 1
        raise RuntimeError("client went away")


class Counting:
    def __init__(self):
        self.calls = 0

    def poll(self, now_ms):
        self.calls += 1


def frames(meter_prefix):
    return [bytes.fromhex(f["hex"]) for f in CORPUS if f["id"].startswith(meter_prefix)]


def run(app, steps, start=1000, dt=50):
    now = start
    for _ in range(steps):
        app.step(now)
        now += dt
    return now


def test_frames_behind_garbage_in_small_chunks_all_reach_the_registers():
    kaifa = frames("kaifa-ma304h3e")
    stream = b"\x00\x7e\xff garbage \x7e" + b"\x7e".join(kaifa[:6])
    regs = RecordingRegisters()
    app = App(ChunkedHan(stream), regs, now_ms=0)
    run(app, 200)
    assert len(regs.readings) == 6
    assert app.hdlc.frames_ok == 6
    assert app.last_frame == kaifa[5]
    assert regs.ticks == 200


def test_latest_merges_lists_and_keeps_meter_identity_from_list_2():
    kaifa = [f for f in CORPUS if f["id"].startswith("kaifa-ma304h3e")]
    l2 = next(f for f in kaifa if f["list"] == "2")
    l1 = next(f for f in kaifa if f["list"] == "1")
    stream = bytes.fromhex(l2["hex"]) + bytes.fromhex(l1["hex"])
    app = App(ChunkedHan(stream, chunk=512), RecordingRegisters(), now_ms=0)
    run(app, 5)
    assert app.latest["meter_id"] == l2["expected"]["meter_id"]
    assert app.latest["active_power_import_w"] == l1["expected"]["active_power_import_w"]
    assert app.latest["current_l1_ma"] == l2["expected"]["current_l1_ma"]
    assert app.last_list == 1


def test_a_failing_service_is_counted_and_does_not_stop_the_others():
    bad, good = Exploding(), Counting()
    app = App(None, RecordingRegisters(), now_ms=0, services=[bad, good])
    run(app, 10)
    assert bad.calls == 10 and good.calls == 10
    assert app.service_errors == 10
    assert "client went away" in app.last_error


def test_a_han_stream_that_cannot_start_leaves_the_app_serving():
    """App.configure once called a method that did not exist here (found by mypy's
    check_untyped_defs): a stream that failed to start then stopped the start-up."""
    from han2x_core.settings import DEFAULTS

    def no_memory(port):
        raise MemoryError("memory allocation failed, allocating 2048 bytes")

    app = App(None, RecordingRegisters(), now_ms=0)
    app.stream_factory = no_memory
    app.configure(dict(DEFAULTS, han_stream_port=2404))
    assert app.raw_tap is None
    assert app.service_errors == 1
    assert app.last_error.startswith("han_stream: memory allocation failed")
    run(app, 3)


def test_an_undecodable_but_crc_valid_frame_is_counted_not_fatal():
    swedish = [bytes.fromhex(f["hex"]) for f in CORPUS if f["list"] == "SE"]
    norwegian = frames("aidon-6534")[:1]
    regs = RecordingRegisters()
    app = App(ChunkedHan(b"".join(swedish + norwegian), chunk=64), regs, now_ms=0)
    run(app, 100)
    # Swedish frames either decode by OBIS code or are counted as decode errors.
    assert len(regs.readings) + app.decode_errors == len(swedish) + 1
    assert regs.readings[-1]["meter"] == "aidon"


def test_data_age_is_wrap_safe():
    aidon = frames("aidon-6534")[:1]
    app = App(ChunkedHan(aidon[0], chunk=512), RecordingRegisters(), now_ms=(1 << 29) - 100)
    app.step((1 << 29) - 100)
    assert app.last_frame_ms == (1 << 29) - 100
    assert app.data_age_ms(400) == 500


def test_history_is_bounded():
    kaifa_l1 = frames("kaifa-ma304h3e")
    app = App(None, RecordingRegisters(), now_ms=0)
    now = 0
    for i in range(600):
        app.han = ChunkedHan(kaifa_l1[i % len(kaifa_l1)], chunk=512)
        app.step(now)
        now += 10000
    assert app.history_len == 180
    samples = list(app.history())
    assert len(samples) == 180
    times = [t for t, _imp, _exp in samples]
    assert times == sorted(times) and times[-1] - times[0] == 179 * 10000  # the newest 180


def test_configure_reaches_registers_and_services():
    class Configurable(Counting):
        settings = None

        def configure(self, settings):
            self.settings = settings

    svc = Configurable()
    regs = RecordingRegisters()
    app = App(None, regs, now_ms=0, services=[svc])
    app.configure({"modbus_port": 1502})
    assert regs.configured == {"modbus_port": 1502}
    assert svc.settings == {"modbus_port": 1502}


@pytest.mark.parametrize("chunk", [1, 7, 512])
def test_every_corpus_frame_back_to_back_any_chunking(chunk):
    norwegian = [bytes.fromhex(f["hex"]) for f in CORPUS if f["list"] != "SE"]
    regs = RecordingRegisters()
    app = App(ChunkedHan(b"".join(norwegian), chunk=chunk), regs, now_ms=0)
    steps = 0
    while app.han.pos < len(app.han.data) and steps < 100000:
        app.step(steps)
        steps += 1
    app.step(steps)
    assert len(regs.readings) == len(norwegian)


def test_every_contained_error_sets_last_error_with_where_and_what(tmp_path):
    """Errors the web server, the Modbus server, the HAN reader and the settings store catch
    themselves still reach last_error (what /api/status and the diagnostics page show)."""
    import socket

    from support.fakes._state import load
    from han2x_core.han_reader import HanReader
    from han2x_core.han_uart import UartReceiver
    from han2x_core.modbus_server import ModbusServer
    from han2x_core.registers import Registers
    from han2x_core.settings import DEFAULTS
    from han2x_core.storage import SettingsStore

    busio = load("busio")
    han = HanReader(object(), make_receiver=lambda kind, pin, line, polarity: UartReceiver(
        pin, line, busio=busio))
    regs = Registers()
    store = SettingsStore(str(tmp_path / "gone" / "settings.toml"))  # no such folder
    app = App(han, regs, now_ms=0, settings=dict(DEFAULTS), store=store)
    modbus = ModbusServer(socket, regs, port=0)
    modbus.start("127.0.0.1")
    app.add(modbus)
    try:
        app.configure(dict(DEFAULTS, han_input="uart", han_polarity="inverted"))
        assert app.last_error == "han: busio UART cannot read an inverted line; use han_input = pio"
        errors = app.save_settings({"scaling_factor": 100})
        assert "_store" in errors and app.last_error.startswith("settings: ")
        assert "Settings not saved" in app.last_error
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        modbus.reconfigure(port=port)
        app.step(10)
        assert app.last_error.startswith("modbus: bind %d: " % port), app.last_error
        assert modbus.errors == 1 and app.service_errors == 0  # contained in the server
        taken.close()
    finally:
        modbus.stop()


def test_a_save_that_runs_out_of_memory_does_not_keep_the_schema_loaded(tmp_path):
    """save_settings loads the schema (han2x_core.settings, ~11 KB on the board) for the save
    only. When validate runs out of memory (the board after a page that did not fit: the
    scaling saver's save, bench_heap), the schema is dropped all the same; otherwise the
    heap it holds starves every later telegram. On CPython the MemoryError is raised where
    the board's allocator raised it: from validate, once."""
    import sys

    import han2x_core
    from han2x_core import settings
    from han2x_core.storage import SettingsStore

    path = tmp_path / "settings.toml"
    app = App(None, RecordingRegisters(), now_ms=0, settings=dict(settings.DEFAULTS),
              store=SettingsStore(str(path)))
    real = settings.validate
    calls = []

    def out_of_memory(merged):
        calls.append(merged["scaling_factor"])
        if len(calls) == 1:
            raise MemoryError("memory allocation failed, allocating 1552 bytes")
        return real(merged)

    settings.validate = out_of_memory
    try:
        with pytest.raises(MemoryError):
            app.save_settings({"scaling_factor": 4242})
        assert calls == [4242]
        assert "han2x_core.settings" not in sys.modules
        assert not hasattr(han2x_core, "settings")
        assert not path.exists()
    finally:
        settings.validate = real
    assert app.save_settings({"scaling_factor": 4242}) == {}  # memory back: saved
    assert "scaling_factor = 4242" in path.read_text()
    assert "han2x_core.settings" not in sys.modules


class Pending:
    """A service with work waiting for `left` more polls (a client's buffered bytes)."""

    def __init__(self, left):
        self.left = left

    def poll(self, now_ms):
        self.left = max(0, self.left - 1)

    def busy(self):
        return self.left > 0


def test_step_says_when_work_is_waiting_so_code_py_idles_only_when_none_is():
    """code.py sleeps after a step that returns False: only when no service is busy() and
    the HAN chunk did not fill the buffer (more bytes may be waiting in the ring)."""
    service = Pending(2)
    app = App(ChunkedHan(b""), RecordingRegisters(), now_ms=0, services=[Counting()])
    app.add(service)
    assert app.step(0) is True  # one poll done, one to go
    assert app.step(1) is False  # nothing waiting: code.py may sleep
    assert app.step(2) is False
    full = App(ChunkedHan(b"\x00" * 1500, chunk=10000), RecordingRegisters(), now_ms=0)
    assert [full.step(n) for n in range(4)] == [True, True, False, False]  # 512, 512, 476, 0
