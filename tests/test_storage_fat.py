"""storage.py on a real FAT file system (CIRCUITPY is FAT): the save scheme on an image
made by mkfs.fat and changed only by mtools (mcopy, mdel, mren), a power cut after every
file-system operation (a half-written file included), then fsck.fat on the result."""

import os
import shutil
import subprocess

import pytest

from han2x_core import settings as S
from han2x_core.storage import SettingsStore

MKFS = shutil.which("mkfs.fat") or "/usr/sbin/mkfs.fat"
FSCK = shutil.which("fsck.fat") or "/usr/sbin/fsck.fat"
MTOOLS = shutil.which("mcopy")



def test_fat_tools_are_installed():
    """dosfstools and mtools come from `make setup`; without them these tests must fail."""
    assert os.path.exists(MKFS) and MTOOLS, "run make setup (installs dosfstools, mtools)"


class PowerCut(Exception):
    pass


class FatFiles:
    """SettingsStore's file calls on a FAT image through mtools; the power fails at
    operation number `crash_at` (each piece of a write counts: a cut leaves it torn)."""

    def __init__(self, image, tmp, crash_at=None):
        self.image = image
        self.tmp = str(tmp)
        self.crash_at = crash_at
        self.ops = 0

    def _op(self):
        self.ops += 1
        if self.crash_at is not None and self.ops >= self.crash_at:
            raise PowerCut()

    def _m(self, *args):
        return subprocess.run(list(args[:1]) + ["-i", self.image] + list(args[1:]),
                              capture_output=True, stdin=subprocess.DEVNULL)

    def read(self, path):
        r = self._m("mtype", "::" + path)
        return r.stdout if r.returncode == 0 else None

    def _put(self, path, data):
        host = os.path.join(self.tmp, "piece")
        with open(host, "wb") as f:
            f.write(data)
        assert self._m("mcopy", "-o", host, "::" + path).returncode == 0

    def write(self, path, data):
        if not isinstance(data, (bytes, bytearray)):  # the store's sealed pieces
            data = b"".join(data)
        self._op()
        self._put(path, b"")  # created, empty
        try:
            self._op()
        except PowerCut:
            self._put(path, data[: len(data) // 2])  # half of it reached the flash
            raise
        self._put(path, data)
        self._op()

    def exists(self, path):
        return self.read(path) is not None

    def remove(self, path):
        self._op()
        if self._m("mdel", "::" + path).returncode:
            raise OSError(2, "no such file")

    def rename(self, old, new):
        self._op()
        if self._m("mren", "::" + old, "::" + new).returncode:
            raise OSError(17, "exists")  # FAT has no atomic replace

    def sync(self):
        self._op()


def _image(tmp_path, name):
    path = str(tmp_path / name)
    subprocess.run([MKFS, "-C", "-F", "12", "-n", "CIRCUITPY", path, "512"], check=True,
                   capture_output=True)
    return path


def _fsck(image):
    r = subprocess.run([FSCK, "-n", image], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_rename_onto_an_existing_file_fails_on_fat(tmp_path):
    """Why the scheme removes the old file first: FAT has no atomic replace."""
    files = FatFiles(_image(tmp_path, "a.img"), tmp_path)
    files._put("/a", b"1")
    files._put("/b", b"2")
    with pytest.raises(OSError):
        files.rename("/a", "/b")


def test_power_cut_at_every_step_on_fat(tmp_path):
    old = dict(S.DEFAULTS, modbus_port=1502)
    new = dict(S.DEFAULTS, modbus_port=2502, dhcp=True)
    probe = FatFiles(_image(tmp_path, "probe.img"), tmp_path)
    SettingsStore("/settings.toml", probe).save(old)
    probe.ops = 0
    SettingsStore("/settings.toml", probe).save(new)
    total = probe.ops
    seen = set()
    for crash_at in range(1, total + 1):
        image = _image(tmp_path, "cut%d.img" % crash_at)
        files = FatFiles(image, tmp_path)
        SettingsStore("/settings.toml", files).save(old)
        files.ops, files.crash_at = 0, crash_at
        try:
            SettingsStore("/settings.toml", files).save(new)
        except PowerCut:
            pass
        files = FatFiles(image, tmp_path)  # power back on
        got, warning = SettingsStore("/settings.toml", files).load()
        assert warning is None and got in (old, new), crash_at
        seen.add(got == new)
        assert not files.exists("/settings.toml.new")
        _fsck(image)
    assert seen == {True, False}
