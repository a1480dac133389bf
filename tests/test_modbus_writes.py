"""Modbus writes from any LAN host against the flash (docs/web.md, "Threat model"): the
simulator's wiring (tools/simulate.build_device, as code.py) with the real settings store on
a real directory, a real pymodbus client on 127.0.0.1."""

import threading
import time

import pytest
from pymodbus.client import ModbusTcpClient

from han2x_core.storage import OsFiles, SettingsStore
from support.util import free_port, load_corpus
from tools import simulate


class CountingFiles(OsFiles):
    """The real file calls, counted: each rename is one settings-file rewrite (erases)."""

    def __init__(self):
        super().__init__()
        self.renames = 0
        self.syncs = 0

    def rename(self, old, new):
        self.renames += 1
        super().rename(old, new)

    def sync(self):
        self.syncs += 1
        super().sync()


class Sim:
    def __init__(self, tmp_path, settings=None):
        capture = tmp_path / "capture.txt"
        capture.write_text(load_corpus()[0]["hex"] + "\n")
        self.port = free_port()
        args = simulate.build_parser().parse_args(
            ["--replay", str(capture), "--modbus-port", str(self.port), "--http-port", "0",
             "--quiet"])
        self.files = CountingFiles()
        self.store = SettingsStore(str(tmp_path / "settings.toml"), self.files)
        base = simulate.build_settings(args, self.store.load()[0])
        base.update(settings or {})
        self.device = simulate.build_device(args, store=self.store, settings=base)
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.client = ModbusTcpClient("127.0.0.1", port=self.port, timeout=2)
        assert self.client.connect()

    def _run(self):
        while not self._stop:
            self.device.step()
            time.sleep(0.001)

    def close(self):
        self.client.close()
        self._stop = True
        self.thread.join(5)
        self.device.close()


@pytest.fixture
def sim(tmp_path):
    s = Sim(tmp_path)
    yield s
    s.close()


def test_alternating_scaling_writes_do_not_rewrite_the_settings_file(sim):
    """100 alternating writes once made 100 renames and 300 syncs in 0.13 s. Now each is
    applied at once and the file is written once, with the last value, after a second of
    quiet, then at most once a minute."""
    regs = sim.device.registers
    for i in range(100):
        value = 2000 if i % 2 else 3000
        assert not sim.client.write_registers(48, [0, value]).isError()
        assert regs.scaling == value  # applied at once
    assert sim.files.renames == 0
    saver = sim.device.services["scaling"]
    assert saver.scaling_unsaved == 2000  # what the diagnostics page shows as pending
    deadline = time.monotonic() + 5
    while saver.scaling_unsaved is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.files.renames == 1
    assert SettingsStore(sim.store.path).load()[0]["scaling_factor"] == 2000
    # more writes within the minute: applied, pending, not written
    for i in range(20):
        assert not sim.client.write_register(49, 4000 + i).isError()
    time.sleep(1.5)
    assert regs.scaling == 4019 and saver.scaling_unsaved == 4019
    assert sim.files.renames == 1
    assert SettingsStore(sim.store.path).load()[0]["scaling_factor"] == 2000  # power loss now
    sim.close()  # a clean stop on the PC saves what is pending
    assert SettingsStore(sim.store.path).load()[0]["scaling_factor"] == 4019
    assert sim.files.renames == 2


def test_read_only_modbus_refuses_every_write(tmp_path):
    s = Sim(tmp_path, {"modbus_read_only": True})
    try:
        for result in (s.client.write_registers(48, [0, 2000]), s.client.write_register(49, 5),
                       s.client.write_register(49, 2000)):
            assert result.isError() and result.exception_code == 2
        assert s.device.registers.scaling == 1000 and s.files.renames == 0
        assert s.client.read_holding_registers(48, count=2).registers == [0, 1000]
    finally:
        s.close()


def test_the_pending_high_word_is_the_devices_not_the_connections(sim):
    """The documented rule (docs/registers.md): a high word written alone waits up to 30 s
    for a low word from any client, so two clients writing halves at once combine."""
    other = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=2)
    assert other.connect()
    try:
        assert not sim.client.write_register(48, 1).isError()  # A: high word 1
        assert sim.device.registers.scaling == 0x10000 + 1000  # valid with the old low word
        assert not other.write_register(49, 0x10).isError()  # B: a low word
        assert sim.device.registers.scaling == 0x10010  # A's high word, B's low word
        assert not other.write_register(49, 2000).isError()  # no high word pending now
        assert sim.device.registers.scaling == 0x10000 + 2000
    finally:
        other.close()
