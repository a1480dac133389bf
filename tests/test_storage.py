"""storage.py on real files: atomic saves (power cut at every step), recovery, corrupt and
read-only drives."""

import errno
import os

import pytest

from han2x_core import settings as S
from han2x_core.settings_write import serialise
from han2x_core.storage import READ_ONLY_MESSAGE, OsFiles, SettingsStore, seal, unseal



def _whole(data):
    """files.write's data as one bytes object: the store hands over sealed pieces."""
    return data if isinstance(data, (bytes, bytearray)) else b"".join(data)

class PowerCut(Exception):
    """The board lost power: nothing after this runs."""


class CrashingFiles(OsFiles):
    """Real files, but the power fails at file-system operation number `crash_at`.

    Writes go out in 16-byte pieces, each one an operation, so a cut can leave a torn file.
    """

    def __init__(self, crash_at=None):
        super().__init__()
        self.crash_at = crash_at
        self.ops = 0
        self.log = []

    def _op(self, name):
        self.ops += 1
        self.log.append(name)
        if self.crash_at is not None and self.ops >= self.crash_at:
            raise PowerCut(name)

    def write(self, path, data):
        data = _whole(data)
        self._op("open " + os.path.basename(path))
        with open(path, "wb") as f:
            for i in range(0, len(data), 16):
                try:
                    self._op("write")
                except PowerCut:
                    f.flush()  # whatever reached the disk stays there, torn
                    raise
                f.write(data[i:i + 16])
            self._op("close")

    def remove(self, path):
        self._op("remove " + os.path.basename(path))
        super().remove(path)

    def rename(self, old, new):
        self._op("rename")
        super().rename(old, new)

    def sync(self):
        self._op("sync")


def _old_new():
    old = dict(S.DEFAULTS, modbus_port=1502, ip="10.0.0.7", gateway="10.0.0.1",
               netmask="255.255.255.0")
    new = dict(S.DEFAULTS, modbus_port=2502, dhcp=True, web_password="s3cret",
               scaling_factor=2000)
    return old, new


def test_first_start_gives_defaults_without_warning(tmp_path):
    store = SettingsStore(str(tmp_path / "settings.toml"))
    assert store.load() == (S.DEFAULTS, None)


def test_save_then_load(tmp_path):
    path = tmp_path / "settings.toml"
    old, new = _old_new()
    store = SettingsStore(str(path))
    store.save(new)
    assert SettingsStore(str(path)).load() == (new, None)
    assert not (tmp_path / "settings.toml.new").exists()
    text = path.read_text()
    assert "modbus_port = 2502" in text and text.rstrip().splitlines()[-1].startswith(
        "# han2x-end ")


def test_power_cut_at_every_step_leaves_old_or_new(tmp_path):
    old, new = _old_new()
    probe = CrashingFiles()
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    SettingsStore(str(probe_dir / "settings.toml")).save(old)
    probe.ops = 0
    SettingsStore(str(probe_dir / "settings.toml"), probe).save(new)
    total = probe.ops
    assert total > 10  # many write pieces + the syncs, remove and rename
    seen = set()
    for crash_at in range(1, total + 2):
        d = tmp_path / ("cut%d" % crash_at)
        d.mkdir()
        path = str(d / "settings.toml")
        SettingsStore(path).save(old)
        files = CrashingFiles(crash_at)
        try:
            SettingsStore(path, files).save(new)
            finished = True
        except PowerCut:
            finished = False
        got, warning = SettingsStore(path).load()  # power back on
        assert warning is None, (crash_at, files.log, warning)
        assert got in (old, new), (crash_at, files.log)
        if finished:
            assert got == new
        seen.add("new" if got == new else "old")
        # After recovery the drive is clean: one good file, no left-over.
        assert not os.path.exists(path + ".new"), (crash_at, files.log)
        assert SettingsStore(path).load() == (got, None)
        # ...and the next save works normally.
        SettingsStore(path).save(old)
        assert SettingsStore(path).load() == (old, None)
    assert seen == {"old", "new"}


def test_power_cut_during_first_ever_save_gives_defaults_or_new(tmp_path):
    old, new = _old_new()
    for crash_at in range(1, 40):
        d = tmp_path / ("c%d" % crash_at)
        d.mkdir()
        path = str(d / "settings.toml")
        try:
            SettingsStore(path, CrashingFiles(crash_at)).save(new)
        except PowerCut:
            pass
        got, warning = SettingsStore(path).load()
        assert warning is None and got in (S.DEFAULTS, new)


def test_hand_edited_file_wins_over_stale_new(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text("modbus_port = 1503\n")
    old, new = _old_new()
    (tmp_path / "settings.toml.new").write_bytes(seal(serialise(new)))
    got, warning = SettingsStore(str(path)).load()
    assert got["modbus_port"] == 1503 and warning is None
    assert not (tmp_path / "settings.toml.new").exists()


def test_hand_edit_of_a_sealed_file_is_accepted(tmp_path):
    path = tmp_path / "settings.toml"
    old, new = _old_new()
    SettingsStore(str(path)).save(new)
    path.write_text(path.read_text().replace("modbus_port = 2502", "modbus_port = 602"))
    got, warning = SettingsStore(str(path)).load()
    assert got == dict(new, modbus_port=602) and warning is None


@pytest.mark.parametrize("content", [
    b"\xff\xfe\x00garbage\x80\x81",
    b"\x00" * 512,
    b"modbus_port = \n[[[\n",
    b'ip = "999.1.1.1"\nmodbus_port = 70000\n',
])
def test_corrupt_file_gives_defaults_and_a_warning(tmp_path, content):
    path = tmp_path / "settings.toml"
    path.write_bytes(content)
    got, warning = SettingsStore(str(path)).load()
    assert got == S.DEFAULTS
    assert warning and warning.startswith("Settings file")


def test_partly_bad_file_keeps_the_good_fields(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('modbus_port = 70000\nweb_port = 8080\nfoo = "bar"\n')
    got, warning = SettingsStore(str(path)).load()
    assert got == dict(S.DEFAULTS, web_port=8080)
    assert "modbus_port" in warning and "foo" in warning


def test_unreadable_file_gives_defaults(tmp_path):
    path = tmp_path / "settings.toml"
    path.mkdir()  # a directory where the file should be: open() fails
    got, warning = SettingsStore(str(path)).load()
    assert got == S.DEFAULTS and "could not be read" in warning


def test_circuitpython_keys_survive_a_save(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('CIRCUITPY_PYSTACK_SIZE = 2048\nmodbus_port = 1502\n')
    store = SettingsStore(str(path))
    got, warning = store.load()
    assert warning is None
    store.save(dict(got, web_port=81))
    assert "CIRCUITPY_PYSTACK_SIZE = 2048" in path.read_text()


def test_torn_new_file_is_discarded():
    old, new = _old_new()
    data = seal(serialise(new))
    assert unseal(data) == serialise(new)
    for cut in range(len(data) - 1):
        assert unseal(data[:cut]) is None
    flipped = bytearray(data)
    flipped[10] ^= 1
    assert unseal(bytes(flipped)) is None


class ReadOnlyFiles(OsFiles):
    """What CircuitPython does when the USB host owns CIRCUITPY."""

    def write(self, path, data):
        raise OSError(errno.EROFS, "Read-only filesystem")


def test_read_only_drive_says_how_to_fix_it(tmp_path):
    path = tmp_path / "settings.toml"
    old, new = _old_new()
    SettingsStore(str(path)).save(old)
    with pytest.raises(OSError) as info:
        SettingsStore(str(path), ReadOnlyFiles()).save(new)
    assert str(info.value) == READ_ONLY_MESSAGE
    assert "reset" in READ_ONLY_MESSAGE and "USB" in READ_ONLY_MESSAGE
    assert SettingsStore(str(path)).load() == (old, None)


class Regs:
    """The registers as App sees them, for the save_settings tests."""

    def tick(self, now_ms):
        pass

    def configure(self, settings):
        self.settings = settings


def test_app_save_settings_reports_read_only(tmp_path):
    from han2x_core.app import App

    path = tmp_path / "settings.toml"
    store = SettingsStore(str(path), ReadOnlyFiles())
    app = App(None, Regs(), 0, settings=dict(S.DEFAULTS), store=store)
    errors = app.save_settings({"modbus_port": "1502"})
    assert errors == {"_store": READ_ONLY_MESSAGE}
    assert app.settings_warning == READ_ONLY_MESSAGE
    app.store = SettingsStore(str(path))
    assert app.save_settings({"modbus_port": "1502"}) == {}
    assert SettingsStore(str(path)).load()[0]["modbus_port"] == 1502


def test_app_save_settings_reports_memory_short_and_keeps_the_old_file(tmp_path):
    """A save that runs out of memory half-way (the board's heap): reported like a write
    that failed, settings not applied, the old file intact, the next save works."""
    from han2x_core.app import App

    class ShortOfMemory(OsFiles):
        def write(self, path, data):
            raise MemoryError("memory allocation failed, allocating 2048 bytes")

    path = tmp_path / "settings.toml"
    SettingsStore(str(path)).save(dict(S.DEFAULTS))
    before = path.read_bytes()
    app = App(None, Regs(), 0, settings=dict(S.DEFAULTS),
              store=SettingsStore(str(path), ShortOfMemory()))
    errors = app.save_settings({"modbus_port": "1502"})
    assert errors == {"_store": "could not save: MemoryError: memory allocation failed, "
                                "allocating 2048 bytes"}
    assert app.settings["modbus_port"] == S.DEFAULTS["modbus_port"]  # not applied
    assert path.read_bytes() == before
    app.store = SettingsStore(str(path))
    assert app.save_settings({"modbus_port": "1502"}) == {}
    assert app.settings_warning is None
