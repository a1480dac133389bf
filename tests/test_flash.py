"""tools/flash.py against a folder laid out like CIRCUITPY and against real FAT images.

The FAT images are made by mkfs.fat and written by flash.py through mtools (no root, no
mounting); an independent read-back (mtools `mcopy -s` of the whole image) and `fsck.fat -n`
check the result. The firmware trees are tiny fakes so the tests stay fast; one test in
test_build_lib.py builds the real lib/. Everything is compiled by CircuitPython 10.2.1's own
mpy-cross, from ../shared/circuitpython/ (or the folder $HAN2X_CIRCUITPYTHON_DIR names).
"""

import errno
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import zipfile

import pytest

from tools import flash, mpycross

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CP_DIR = os.environ.get("HAN2X_CIRCUITPYTHON_DIR") or os.path.join(
    os.path.dirname(ROOT), "shared", "circuitpython")
MPY = os.path.join(CP_DIR, "mpy-cross-10.2.1-linux-x86_64")
BOOT_OUT = (b"Adafruit CircuitPython 10.2.1 on 2026-11-30; Adafruit Feather RP2040 with rp2040\r\n"
            b"Board ID:adafruit_feather_rp2040\r\nUUID:DE6270B0D7457B2E\r\n")
SETTINGS = (b'# my settings\r\ndhcp = false\r\nip = "10.0.0.7"\r\n'
            b'web_password = "s3cr\xc3\xa6t"\r\n')
SETTINGS_NEW = b'ip = "10.0.0.8"\n# han2x-end 15 12345678\n'
MKFS = shutil.which("mkfs.fat") or "/usr/sbin/mkfs.fat"
FSCK = shutil.which("fsck.fat") or "/usr/sbin/fsck.fat"
MENV = dict(os.environ, MTOOLS_SKIP_CHECK="1")


def make_source(base, version, modules=("app", "hdlc"), big=0):
    """A small firmware source tree (like the repo) with __pycache__ and tests to leave out."""
    src = os.path.join(base, "src-" + version)
    os.makedirs(os.path.join(src, "han2x_core", "__pycache__"))
    os.makedirs(os.path.join(src, "lib", "adafruit_fake"))
    os.makedirs(os.path.join(src, "tests"))
    files = {
        "code.py": 'print("han2x %s")\nimport han2x_core.app\n' % version,
        "boot.py": "# boot %s\n" % version,
        "han2x_core/__init__.py": '"""HAN2X."""\n\n__version__ = "%s"\n' % version,
        "han2x_core/__pycache__/app.cpython-311.pyc": "junk",
        "han2x_core/notes.txt": "not shipped (only .py and www/)",
        "han2x_core/www/style.css": "body{}",
        "han2x_core/www/.style.css.swp": "editor junk",
        "tests/test_x.py": "never shipped",
        "lib/requirements.txt": open(os.path.join(ROOT, "lib", "requirements.txt")).read(),
        "lib/README.md": "# lib\n",
        "lib/.han2x-lib.json": "{}",
        "lib/adafruit_fake/__init__.py": "",
        "lib/adafruit_fake/core.py": "X = 1\n",
        "lib/adafruit_single.py": "Y = 2\n",
        "settings.toml": "# a developer's own settings must not ship\n",
    }
    for m in modules:  # code, not only comments: the .mpy differs from version to version
        files["han2x_core/%s.py" % m] = "# %s\nVERSION = %r\n%s\n" % (m, version, "#" * 200)
    if big:
        files["han2x_core/blob.py"] = "BLOB = %r\n" % ("b" * big)
    for rel, text in files.items():
        path = os.path.join(src, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return src


def run(argv, mpy=False):
    """flash.py's main (with --mpy-cross MPY when mpy) -> (exit code, its output)."""
    lines = []
    rc = flash.main(argv + (["--mpy-cross", real_mpy_cross()] if mpy else []), out=lines.append)
    return rc, "\n".join(lines)


def snapshot(root):
    """{relative path: (bytes, mtime_ns)} of every file under root."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for n in files:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root).replace(os.sep, "/")] = (f.read(),
                                                                       os.stat(p).st_mtime_ns)
    return out


def contents(root):
    return {k: v[0] for k, v in snapshot(root).items()}


@pytest.fixture
def drive(tmp_path):
    d = tmp_path / "CIRCUITPY"
    d.mkdir()
    (d / "boot_out.txt").write_bytes(BOOT_OUT)
    (d / "settings.toml").write_bytes(SETTINGS)
    (d / "settings.toml.new").write_bytes(SETTINGS_NEW)
    (d / "my_notes.txt").write_bytes(b"user file")
    return str(d)


def real_mpy_cross():
    if not os.access(MPY, os.X_OK):
        pytest.fail("no CircuitPython mpy-cross at %s: set HAN2X_CIRCUITPYTHON_DIR to the folder "
                    "with mpy-cross-10.2.1-linux-x86_64 (../shared/circuitpython/README.md)" % MPY)
    return MPY


def flash_dir(src, target, *extra):
    return run(["--source", src, "--no-build", "--target", target] + list(extra), mpy=True)


def shipped(src, lib=None):
    """What flash.py installs from the source tree src: compiled by the real mpy-cross."""
    return mpycross.compile_tree(flash.collect_tree(src, lib), real_mpy_cross(),
                                 log=lambda s: None)


# ---------------------------------------------------------------------------- the tree


def test_tree_has_only_firmware_files(tmp_path):
    src = make_source(str(tmp_path), "0.1.0")
    tree = flash.collect_tree(src)
    assert sorted(tree) == [
        "boot.py", "code.py", "han2x_core/__init__.py", "han2x_core/app.py",
        "han2x_core/hdlc.py", "han2x_core/www/style.css", "lib/adafruit_fake/__init__.py",
        "lib/adafruit_fake/core.py",
        "lib/adafruit_single.py",
    ]
    assert flash.tree_version(tree) == "0.1.0"


def test_tree_of_this_repo_never_ships_tests_or_settings():
    tree = flash.collect_tree(ROOT, os.path.join(ROOT, "tests"))  # any lib dir will do
    for rel in tree:
        assert rel in flash.ROOT_FILES or rel.startswith(("han2x_core/", "lib/")), rel
        assert rel.endswith(".py") or rel.startswith(("han2x_core/www/", "lib/")), rel
        assert not flash.is_users_file(rel)
        assert "__pycache__" not in rel and not rel.endswith(".pyc")


def test_no_build_refuses_an_unbuilt_lib(tmp_path, drive):
    src = make_source(str(tmp_path), "0.1.0")
    os.unlink(os.path.join(src, "lib", ".han2x-lib.json"))
    before = snapshot(drive)
    rc, out = flash_dir(src, drive)
    assert rc != 0 and "not built" in out and "tools/build_lib.py" in out
    assert snapshot(drive) == before


def test_users_files_are_recognised():
    for rel in ("settings.toml", "settings.toml.new", "settings.bak", "SETTINGS.TOML",
                ".settings.tmp", "boot_out.txt", "energy_state.txt", "energy_state.txt.new"):
        assert flash.is_users_file(rel)
    for rel in ("code.py", "han2x_core/settings.py", "lib/settings.py"):
        assert not flash.is_users_file(rel)


def test_version_is_read_from_text_not_imported():
    assert flash.read_version('x = 1\n__version__ = "1.2.3"\n') == "1.2.3"
    assert flash.read_version("import board\n__version__ = '2.0.0rc1'") == "2.0.0rc1"
    assert flash.read_version("nothing") is None



def test_compiled_modules_carry_their_dotted_name_not_a_path(tmp_path):
    # A .mpy's file name for tracebacks is interned for good when it loads; the dotted
    # name is interned by the import anyway, a path would be one more name per module.
    tree = shipped(make_source(str(tmp_path), "0.1.0"))
    for rel, name in (("han2x_core/app.mpy", b"han2x_core.app"),
                      ("lib/adafruit_fake/core.mpy", b"adafruit_fake.core"),
                      ("lib/adafruit_fake/__init__.mpy", b"adafruit_fake"),
                      ("lib/adafruit_single.mpy", b"adafruit_single")):
        assert name in tree[rel], rel
        assert rel[:-4].encode() not in tree[rel] and b".py" not in tree[rel], rel


def test_compiled_modules_leave_out_line_numbers(tmp_path):
    """-O3: the shipped .mpy is mpy-cross's without the line-number table (smaller, so less
    heap on the board), not the default output."""
    import subprocess

    src = make_source(str(tmp_path), "0.1.0")
    py = os.path.join(src, "han2x_core", "lines.py")
    with open(py, "w") as f:
        f.write("def f(x):\n    y = x + 1\n\n    return y * 2\n")
    tree = shipped(src)
    out = {}
    for flags in ((), ("-O3",)):
        mpy = str(tmp_path / "lines.mpy")
        subprocess.run([real_mpy_cross()] + list(flags) + ["-o", mpy, "-s", "han2x_core.lines",
                                                           py], check=True)
        with open(mpy, "rb") as f:
            out[flags] = f.read()
    assert tree["han2x_core/lines.mpy"] == out[("-O3",)] != out[()]

# ---------------------------------------------------------------------------- folder drive


def test_fresh_install(tmp_path, drive):
    src = make_source(str(tmp_path), "0.1.0")
    rc, out = flash_dir(src, drive)
    assert rc == 0, out
    tree = shipped(src)
    assert "han2x_core/app.mpy" in tree and "lib/adafruit_fake/core.mpy" in tree
    got = contents(drive)
    for rel, data in tree.items():
        assert got[rel] == data
    assert got["settings.toml"] == SETTINGS and got["settings.toml.new"] == SETTINGS_NEW
    assert got["my_notes.txt"] == b"user file" and got["boot_out.txt"] == BOOT_OUT
    assert set(flash.parse_manifest(got[".han2x-manifest"])) == set(tree)
    assert not any(r.startswith((flash.STAGING, flash.PROBE)) for r in got)
    assert "none installed -> 0.1.0" in out and "All files verified" in out
    assert out.index("copy code.py") > out.index("copy lib/adafruit_single.mpy")


def test_update_removes_stale_files_and_keeps_settings(tmp_path, drive):
    rc, _ = flash_dir(make_source(str(tmp_path), "0.1.0", modules=("app", "old")), drive)
    assert rc == 0
    # a file the user put into our folder, not listed in the manifest: must stay
    with open(os.path.join(drive, "han2x_core", "mine.py"), "w") as f:
        f.write("# mine")
    src2 = make_source(str(tmp_path), "0.2.0", modules=("app", "new"))
    rc, out = flash_dir(src2, drive)
    assert rc == 0, out
    got = contents(drive)
    assert "han2x_core/old.mpy" not in got and "han2x_core/new.mpy" in got
    assert got["han2x_core/mine.py"] == b"# mine"
    assert "leave   han2x_core/mine.py (not installed by flash.py" in out
    assert got["settings.toml"] == SETTINGS and got["settings.toml.new"] == SETTINGS_NEW
    assert got["my_notes.txt"] == b"user file"
    assert b"0.2.0" in got["code.py"]
    assert "0.1.0 -> 0.2.0" in out and "remove han2x_core/old.mpy" in out
    assert set(flash.parse_manifest(got[".han2x-manifest"])) == set(shipped(src2))


def test_copies_only_what_changed(tmp_path, drive):
    src = make_source(str(tmp_path), "0.1.0")
    flash_dir(src, drive)
    before = snapshot(drive)
    rc, out = flash_dir(src, drive)
    assert rc == 0 and "Already up to date" in out
    assert snapshot(drive) == before
    with open(os.path.join(src, "han2x_core", "hdlc.py"), "a") as f:
        f.write("FIX = 1\n")
    rc, out = flash_dir(src, drive)
    assert rc == 0
    assert [line for line in out.splitlines() if "] copy " in line] == [
        "[1/1] copy han2x_core/hdlc.mpy (%s)" % flash._kib(len(shipped(src)[
            "han2x_core/hdlc.mpy"]))]
    after = snapshot(drive)
    assert after["code.py"] == before["code.py"]  # untouched: mtime too


def test_code_py_is_written_last(tmp_path, drive):
    flash_dir(make_source(str(tmp_path), "0.1.0"), drive)
    src2 = make_source(str(tmp_path), "0.2.0", modules=("app", "hdlc", "extra"))
    events = []

    class Recorder(flash.DirDrive):
        def write(self, rel, data):
            events.append(("write", rel))
            super().write(rel, data)

        def replace(self, src, dst):
            events.append(("replace", dst))
            super().replace(src, dst)

    flash.install(Recorder(drive), flash.collect_tree(src2), out=lambda s: None)
    placed = [rel for op, rel in events if op == "replace"]
    assert placed[-1] == "code.py" and placed.count("code.py") == 1
    # every file was staged and read back before the first one went into place
    first_replace = events.index(("replace", placed[0]))
    staged = [rel for op, rel in events[:first_replace] if op == "write"]
    assert set(flash.STAGING + "/" + r for r in placed) <= set(staged)
    assert not any(op == "write" and rel == "code.py" for op, rel in events)


def test_dry_run_changes_nothing(tmp_path, drive):
    flash_dir(make_source(str(tmp_path), "0.1.0", modules=("app", "old")), drive)
    before = snapshot(drive)
    rc, out = flash_dir(make_source(str(tmp_path), "0.2.0"), drive, "--dry-run")
    assert rc == 0
    assert snapshot(drive) == before
    assert "update  code.py" in out and "add     han2x_core/hdlc.mpy" in out
    assert "remove  han2x_core/old.mpy" in out and "Nothing was written" in out


class FailingDrive(flash.DirDrive):
    """A drive whose n-th write (or replace) fails with the given errno."""

    def __init__(self, root, fail_write=None, fail_replace=None, err=errno.ENOSPC):
        super().__init__(root)
        self.fail_write, self.fail_replace, self.err = fail_write, fail_replace, err
        self.writes = self.replaces = 0

    def write(self, rel, data):
        if rel != flash.PROBE:
            self.writes += 1
            if self.writes == self.fail_write:
                # like a real full drive: part of the file is there, then ENOSPC
                super().write(rel, data[: len(data) // 2])
                raise OSError(self.err, os.strerror(self.err))
        super().write(rel, data)

    def replace(self, src, dst):
        self.replaces += 1
        if self.replaces == self.fail_replace:
            raise OSError(self.err, os.strerror(self.err))
        super().replace(src, dst)


@pytest.mark.parametrize("fail_at", [1, 3, 5])
def test_full_drive_while_copying_leaves_previous_firmware(tmp_path, drive, fail_at):
    src1 = make_source(str(tmp_path), "0.1.0", modules=("app", "old"))
    flash_dir(src1, drive)
    before = contents(drive)
    src2 = make_source(str(tmp_path), "0.2.0", modules=("app", "hdlc", "x", "y"))
    tree2 = shipped(src2)
    with pytest.raises(flash.FlashError) as e:
        flash.install(FailingDrive(drive, fail_write=fail_at), tree2, out=lambda s: None)
    assert e.value.code == flash.EXIT_FULL
    assert "drive is full" in str(e.value) and "Nothing was changed" in str(e.value)
    assert contents(drive) == before  # code.py, han2x_core, lib, settings: all as before
    # once there is space, the same command finishes the job
    flash.install(flash.DirDrive(drive), tree2, out=lambda s: None)
    got = contents(drive)
    assert all(got[r] == d for r, d in tree2.items()) and "han2x_core/old.mpy" not in got


def test_interrupted_while_moving_into_place_keeps_old_code_py_and_recovers(tmp_path, drive):
    src1 = make_source(str(tmp_path), "0.1.0", modules=("app", "old"))
    flash_dir(src1, drive)
    old_code = contents(drive)["code.py"]
    tree2 = shipped(make_source(str(tmp_path), "0.2.0", modules=("app", "hdlc")))
    with pytest.raises(flash.FlashError) as e:
        flash.install(FailingDrive(drive, fail_replace=2, err=errno.EIO), tree2,
                      out=lambda s: None)
    assert "run flash.py again" in str(e.value)
    assert contents(drive)["code.py"] == old_code
    # the manifest still lists the old files, so the re-run removes them
    assert "han2x_core/old.mpy" in flash.parse_manifest(contents(drive)[".han2x-manifest"])
    lines = []
    flash.install(flash.DirDrive(drive), tree2, out=lines.append)
    got = contents(drive)
    assert all(got[r] == d for r, d in tree2.items())
    assert "han2x_core/old.mpy" not in got and not any(r.startswith(flash.STAGING) for r in got)
    assert got["settings.toml"] == SETTINGS


def test_space_is_checked_before_writing(tmp_path, drive):
    flash_dir(make_source(str(tmp_path), "0.1.0"), drive)
    before = snapshot(drive)

    class Tiny(flash.DirDrive):
        def free_bytes(self):
            return 1000

    tree = flash.collect_tree(make_source(str(tmp_path), "0.2.0", big=20000))
    with pytest.raises(flash.FlashError) as e:
        flash.install(Tiny(drive), tree, out=lambda s: None)
    assert e.value.code == flash.EXIT_FULL and "Nothing was changed" in str(e.value)
    assert snapshot(drive) == before


def test_in_place_mode_still_writes_code_py_last(tmp_path, drive):
    flash_dir(make_source(str(tmp_path), "0.1.0"), drive)
    src2 = make_source(str(tmp_path), "0.2.0", modules=("app", "hdlc", "z"))
    rc, out = flash_dir(src2, drive, "--in-place")
    assert rc == 0, out
    assert contents(drive)["code.py"] == flash.collect_tree(src2)["code.py"]
    assert contents(drive)["han2x_core/z.mpy"] == shipped(src2)["han2x_core/z.mpy"]
    assert out.splitlines()[-4].endswith("copy code.py (0.0 KiB)")


def test_read_only_drive_says_how_to_switch(tmp_path, drive):
    tree = flash.collect_tree(make_source(str(tmp_path), "0.1.0"))
    before = snapshot(drive)

    class ReadOnly(flash.DirDrive):
        def write(self, rel, data):
            raise OSError(errno.EROFS, "Read-only file system")

    with pytest.raises(flash.FlashError) as e:
        flash.install(ReadOnly(drive), tree, out=lambda s: None)
    assert e.value.code == flash.EXIT_READ_ONLY
    assert "read-only to this computer" in str(e.value) and "docs/update.md" in str(e.value)
    assert snapshot(drive) == before


@pytest.mark.parametrize("err,code,words", [
    (errno.EBUSY, flash.EXIT_IN_USE, "in use"),
    (errno.EACCES, flash.EXIT_IN_USE, "Permission denied"),
    (errno.EIO, flash.EXIT_IO, "stopped answering"),
])
def test_clear_errors(tmp_path, drive, err, code, words):
    flash_dir(make_source(str(tmp_path), "0.1.0"), drive)
    before = contents(drive)
    tree = flash.collect_tree(make_source(str(tmp_path), "0.2.0"))
    with pytest.raises(flash.FlashError) as e:
        flash.install(FailingDrive(drive, fail_write=2, err=err), tree, out=lambda s: None)
    assert e.value.code == code and words in str(e.value)
    assert contents(drive) == before


def test_windows_sharing_violation_is_in_use():
    e = OSError(errno.EACCES, "The process cannot access the file")
    e.winerror = 32
    assert flash._os_error(e, "code.py", "staging").code == flash.EXIT_IN_USE


def test_not_circuitpython_is_refused(tmp_path):
    src = make_source(str(tmp_path), "0.1.0")
    plain = tmp_path / "usbstick"
    plain.mkdir()
    (plain / "photo.jpg").write_bytes(b"\xff\xd8")
    rc, out = flash_dir(src, str(plain))
    assert rc == flash.EXIT_NOT_CP and "not a CircuitPython drive" in out
    assert sorted(os.listdir(plain)) == ["photo.jpg"]
    boot = tmp_path / "RPI-RP2"
    boot.mkdir()
    (boot / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\n"
                                       "Board-ID: RPI-RP2\n")
    rc, out = flash_dir(src, str(boot))
    assert rc == flash.EXIT_NOT_CP and "--uf2" in out


@pytest.mark.parametrize("line,warn", [
    (b"Adafruit CircuitPython 10.0.3 on 2025-10-17; Adafruit Feather RP2040 with rp2040", True),
    (b"Adafruit CircuitPython 10.2.1 on 2026-11-30; WIZnet W5500-EVB-Pico with rp2040", False),
    (b"Adafruit CircuitPython 10.3.0 on 2027-01-10; WIZnet W5500-EVB-Pico with rp2040", False),
])
def test_older_circuitpython_10_warns(tmp_path, drive, line, warn):
    with open(os.path.join(drive, "boot_out.txt"), "wb") as f:
        f.write(line + b"\r\nBoard ID:wiznet_w5500_evb_pico\r\n")
    rc, out = flash_dir(make_source(str(tmp_path), "0.1.0"), drive)
    assert rc == 0, out
    assert ("WARNING: the board runs CircuitPython" in out) == warn
    assert "supports 10.x from 10.2" in out or not warn
    assert contents(drive)["han2x_core/app.mpy"].startswith(b"C\x06")  # CircuitPython's .mpy


@pytest.mark.parametrize("line", [
    b"Adafruit CircuitPython 8.2.10 on 2024-02-14; Adafruit Feather RP2040 with rp2040",
    b"Adafruit CircuitPython 9.2.8 on 2025-05-28; WIZnet W5500-EVB-Pico with rp2040",
    b"Adafruit CircuitPython 11.0.0-alpha.1 on 2026-09-01; Raspberry Pi Pico with rp2040",
])
def test_another_circuitpython_major_line_is_refused(tmp_path, drive, line):
    """10.x .mpy files do not load on 9.x or 11.x, and the .py sources do not fit."""
    with open(os.path.join(drive, "boot_out.txt"), "wb") as f:
        f.write(line + b"\r\nBoard ID:wiznet_w5500_evb_pico\r\n")
    before = snapshot(drive)
    rc, out = flash_dir(make_source(str(tmp_path), "0.1.0"), drive)
    assert rc == flash.EXIT_NOT_CP, out
    assert "runs on CircuitPython 10.x from 10.2 only" in out and "Nothing was changed" in out
    assert "--uf2" in out
    assert snapshot(drive) == before


def test_parse_boot_out():
    info = flash.parse_boot_out(BOOT_OUT.decode())
    assert info == {"version": (10, 2, 1), "version_text": "10.2.1",
                    "board_id": "adafruit_feather_rp2040"}
    assert flash.parse_boot_out("garbage")["version"] is None


def test_unknown_board_warns(tmp_path, drive):
    with open(os.path.join(drive, "boot_out.txt"), "wb") as f:
        f.write(b"Adafruit CircuitPython 10.2.1 on x; Pico with rp2040\n"
                b"Board ID:raspberry_pi_pico\n")
    rc, out = flash_dir(make_source(str(tmp_path), "0.1.0"), drive)
    assert rc == 0 and "board raspberry_pi_pico is not one of the supported" in out


def test_code_txt_shadowing_code_py_warns(tmp_path, drive):
    with open(os.path.join(drive, "code.txt"), "w") as f:
        f.write("hello")
    rc, out = flash_dir(make_source(str(tmp_path), "0.1.0"), drive)
    assert rc == 0 and "code.txt on the drive runs instead of code.py" in out
    assert contents(drive)["code.txt"] == b"hello"  # not ours: left alone


def test_reminds_to_press_reset_when_the_computer_has_the_drive(tmp_path, drive):
    src = make_source(str(tmp_path), "0.1.0")
    flash_dir(src, drive)
    with open(os.path.join(drive, "boot_out.txt"), "ab") as f:  # what boot.py prints there
        f.write(b"CIRCUITPY: the computer writes the drive for this start; press reset to "
                b"give it back to the device\r\n")
    with open(os.path.join(drive, "usb_write.txt"), "w") as f:
        f.write("keep\n")
    with open(os.path.join(src, "han2x_core", "app.py"), "a") as f:
        f.write("FIX = 1\n")
    rc, out = flash_dir(src, drive)
    assert rc == 0 and "press RESET: the board takes the drive back" in out
    assert contents(drive)["usb_write.txt"] == b"keep\n"
    assert flash.is_users_file("usb_write.txt")


def test_no_drive_found(tmp_path, monkeypatch):
    monkeypatch.setattr(flash, "find_drives", lambda label="CIRCUITPY": [])
    rc, out = run(["--source", make_source(str(tmp_path), "0.1.0"), "--no-build"])
    assert rc == flash.EXIT_NO_DRIVE and "No CIRCUITPY drive found" in out
    monkeypatch.setattr(flash, "find_drives",
                        lambda label="CIRCUITPY": ["/media/u/RPI-RP2"] if label == "RPI-RP2"
                        else [])
    rc, out = run(["--source", make_source(str(tmp_path), "0.1.1"), "--no-build"])
    assert rc == flash.EXIT_NO_DRIVE and "--uf2" in out


def test_two_drives_need_a_choice(tmp_path, monkeypatch):
    monkeypatch.setattr(flash, "find_drives", lambda label="CIRCUITPY": ["/a", "/b"])
    rc, out = run(["--source", make_source(str(tmp_path), "0.1.0"), "--no-build"])
    assert rc == flash.EXIT_NO_DRIVE and "--target" in out


def test_find_drives_reads_linux_mounts(tmp_path, monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("linux only")
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n"
                      "/dev/sdb1 /media/pat/CIRCUITPY vfat rw,nosuid 0 0\n"
                      "/dev/sdc1 /run/media/kim/CIRCUITPY1 vfat rw 0 0\n"
                      "/dev/sdd1 /media/pat/My\\040Disk vfat rw 0 0\n")
    real_open = open

    def fake_open(path, *a, **k):
        return real_open(str(mounts) if path == "/proc/mounts" else path, *a, **k)

    monkeypatch.setattr("builtins.open", fake_open)
    assert flash.find_drives("CIRCUITPY") == ["/media/pat/CIRCUITPY", "/run/media/kim/CIRCUITPY1"]


def test_find_drives_on_macos_looks_in_volumes(monkeypatch):
    """sys.platform darwin: the folders in /Volumes named like the label (a second board
    mounts as "CIRCUITPY 1"). The file system calls are faked; the logic is ours."""
    volumes = ["Macintosh HD", "CIRCUITPY 1", "CIRCUITPY", "CIRCUITPYTHON", "RPI-RP2"]
    monkeypatch.setattr(flash.sys, "platform", "darwin")
    monkeypatch.setattr(flash.os.path, "isdir", lambda p: p == "/Volumes")
    monkeypatch.setattr(flash.os, "listdir", lambda p: list(volumes) if p == "/Volumes" else [])
    assert flash.find_drives("CIRCUITPY") == ["/Volumes/CIRCUITPY", "/Volumes/CIRCUITPY 1"]
    assert flash.find_drives("RPI-RP2") == ["/Volumes/RPI-RP2"]


def test_find_drives_on_windows_asks_each_drive_letter_for_its_label(monkeypatch):
    """sys.platform win32: GetLogicalDrives' bit mask, then GetVolumeInformationW per letter
    (a kernel32 stand-in that fills the label buffer as Windows does)."""
    import ctypes

    labels = {"C:\\": "WINDOWS", "E:\\": "CIRCUITPY", "F:\\": "", "G:\\": "circuitpy"}
    asked = []

    class Kernel32:
        def SetErrorMode(self, mode):
            self.mode = mode

        def GetLogicalDrives(self):
            return sum(1 << (ord(k[0]) - ord("A")) for k in labels)

        def GetVolumeInformationW(self, root, buf, size, *rest):
            asked.append(root.value)
            if root.value == "F:\\":
                return 0  # an empty card reader: no volume
            buf.value = labels[root.value]
            return 1

    class WinDLL:
        kernel32 = Kernel32()

    monkeypatch.setattr(ctypes, "windll", WinDLL(), raising=False)
    monkeypatch.setattr(flash.sys, "platform", "win32")
    assert flash.find_drives("CIRCUITPY") == ["E:\\", "G:\\"]
    assert asked == ["C:\\", "E:\\", "F:\\", "G:\\"]
    assert WinDLL.kernel32.mode == 1  # no "insert a disk" dialogs


# ---------------------------------------------------------------------------- zip


def test_zip_matches_the_installed_tree(tmp_path, drive):
    src = make_source(str(tmp_path), "0.1.0")
    z1, z2 = str(tmp_path / "a.zip"), str(tmp_path / "b.zip")
    rc, out = run(["--source", src, "--no-build", "--zip", z1, "--mpy-cross", MPY])
    assert rc == 0 and "0.1.0 for CircuitPython 10.x (.mpy)" in out, out
    run(["--source", src, "--no-build", "--zip", z2, "--mpy-cross", MPY])
    with open(z1, "rb") as f1, open(z2, "rb") as f2:
        assert f1.read() == f2.read()  # reproducible
    flash_dir(src, drive)
    on_drive = contents(drive)
    for rel in ("boot_out.txt", "settings.toml", "settings.toml.new", "my_notes.txt"):
        del on_drive[rel]
    with zipfile.ZipFile(z1) as z:
        in_zip = {n: z.read(n) for n in z.namelist()}
    assert in_zip == on_drive
    assert not any(flash.is_users_file(n) for n in in_zip)
    assert [n for n in in_zip if n.startswith("han2x_core/") and n.endswith(".py")] == [
        "han2x_core/__init__.py"]


@pytest.mark.parametrize("arg", ["dist", "dist/", "dist" + os.sep + "new"])
def test_zip_to_a_folder_is_named_by_the_version(tmp_path, monkeypatch, arg):
    """The README's `flash.py --zip dist` gives dist/han2x-VERSION.zip (no file named dist),
    whether or not the folder exists yet."""
    src = make_source(str(tmp_path), "0.1.0")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(mpycross.ENV_PATH, MPY)  # found as the user would set it up
    rc, out = run(["--source", src, "--no-build", "--zip", arg])
    want = os.path.join(arg.rstrip("/"), "han2x-0.1.0.zip")
    assert rc == 0 and os.path.isfile(tmp_path / want), out
    assert "Wrote %s" % want in out
    with zipfile.ZipFile(tmp_path / want) as z:
        assert z.read("han2x_core/app.mpy") == shipped(src)["han2x_core/app.mpy"]
    rc, out = run(["--source", src, "--no-build", "--zip", "out/HAN2X-custom.ZIP"])
    assert rc == 0 and os.path.isfile(tmp_path / "out" / "HAN2X-custom.ZIP"), out


# ---------------------------------------------------------------------------- UF2


def uf2(family=flash.RP2040_FAMILY, blocks=2):
    out = b""
    for i in range(blocks):
        head = struct.pack("<IIIIIIII", flash.UF2_MAGIC0, flash.UF2_MAGIC1, 0x2000,
                           0x10000000 + 256 * i, 256, i, blocks, family)
        out += head + bytes(476) + struct.pack("<I", flash.UF2_MAGIC_END)
    return out


def test_uf2_goes_onto_the_boot_drive(tmp_path):
    boot = tmp_path / "RPI-RP2"
    boot.mkdir()
    (boot / "INFO_UF2.TXT").write_text("Board-ID: RPI-RP2\n")
    (tmp_path / "cp.uf2").write_bytes(uf2())
    rc, out = run(["--uf2", str(tmp_path / "cp.uf2"), "--uf2-target", str(boot), "--uf2-only"])
    assert rc == 0, out
    assert (boot / "cp.uf2").read_bytes() == uf2()


def test_uf2_checks(tmp_path):
    boot = tmp_path / "RPI-RP2"
    boot.mkdir()
    bad = tmp_path / "x.uf2"
    bad.write_bytes(uf2(family=0xE48BFF59))  # RP2350
    rc, out = run(["--uf2", str(bad), "--uf2-target", str(boot), "--uf2-only"])
    assert rc != 0 and "INFO_UF2.TXT" in out
    (boot / "INFO_UF2.TXT").write_text("Board-ID: RPI-RP2\n")
    rc, out = run(["--uf2", str(bad), "--uf2-target", str(boot), "--uf2-only"])
    assert rc != 0 and "another chip" in out
    bad.write_bytes(b"hello" * 100)
    rc, out = run(["--uf2", str(bad), "--uf2-target", str(boot), "--uf2-only"])
    assert rc != 0 and "not a UF2" in out
    assert os.listdir(boot) == ["INFO_UF2.TXT"]


def test_blank_board_to_firmware_in_one_command(tmp_path, drive, monkeypatch):
    """--uf2: CircuitPython onto RPI-RP2, wait for CIRCUITPY to appear, install the firmware."""
    boot = tmp_path / "RPI-RP2"
    boot.mkdir()
    (boot / "INFO_UF2.TXT").write_text("Board-ID: RPI-RP2\n")
    (tmp_path / "cp.uf2").write_bytes(uf2())
    polls = []

    def fake_find(label="CIRCUITPY"):
        if label == "RPI-RP2":
            return [str(boot)]
        polls.append(1)
        return [drive] if len(polls) >= 3 else []  # the board takes a moment to restart

    monkeypatch.setattr(flash, "find_drives", fake_find)
    monkeypatch.setattr(flash.time, "sleep", lambda s: None)
    src = make_source(str(tmp_path), "0.1.0")
    rc, out = run(["--uf2", str(tmp_path / "cp.uf2"), "--source", src, "--no-build",
                   "--mpy-cross", MPY])
    assert rc == 0, out
    assert (boot / "cp.uf2").read_bytes() == uf2()
    assert contents(drive)["code.py"] == flash.collect_tree(src)["code.py"]
    assert "Installed HAN2X firmware 0.1.0" in out


# ---------------------------------------------------------------------------- real FAT image


def make_image(path, kib=1024):
    subprocess.run([MKFS, "-C", "-F", "12", "-n", "CIRCUITPY", "-S", "512", "-s", "1",
                    str(path), str(kib)], check=True, capture_output=True)
    for name, data in (("boot_out.txt", BOOT_OUT), ("settings.toml", SETTINGS),
                       ("settings.toml.new", SETTINGS_NEW)):
        tmp = str(path) + "." + name
        with open(tmp, "wb") as f:
            f.write(data)
        subprocess.run(["mcopy", "-i", str(path), tmp, "::/" + name], check=True, env=MENV)
        os.unlink(tmp)
    return str(path)


def image_contents(image, tmp_path):
    """Everything in the image, read back by mtools independently of flash.py."""
    out = tmp_path / ("readback-%d" % len(os.listdir(tmp_path)))
    out.mkdir()
    subprocess.run(["mcopy", "-s", "-n", "-i", image, "::/*", str(out)], check=True, env=MENV,
                   capture_output=True)
    subprocess.run(["mcopy", "-n", "-i", image, "::/.*", str(out)], env=MENV,
                   capture_output=True)  # mtools' * skips dot files
    return contents(str(out))


def pyfatfs_contents(image):
    """Everything in the image, read by a second FAT implementation (pyfatfs, pinned)."""
    from pyfatfs.PyFatFS import PyFatFS

    fs = PyFatFS(image, read_only=True)
    try:
        return {p.lstrip("/"): fs.readbytes(p) for p in fs.walk.files("/")}
    finally:
        fs.close()


def fsck_ok(image):
    proc = subprocess.run([FSCK, "-n", image], capture_output=True, text=True)
    return proc.returncode == 0, proc.stdout + proc.stderr


def sha_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_fat_image_fresh_install_update_and_dry_run(tmp_path):
    image = make_image(tmp_path / "circuitpy.img")
    src1 = make_source(str(tmp_path), "0.1.0", modules=("app", "old"))
    rc, out = run(["--source", src1, "--no-build", "--image", image], mpy=True)
    assert rc == 0, out
    got = image_contents(image, tmp_path)
    tree1 = shipped(src1)
    assert {r: got[r] for r in tree1} == tree1
    assert got["settings.toml"] == SETTINGS and got["settings.toml.new"] == SETTINGS_NEW
    assert fsck_ok(image)[0], fsck_ok(image)[1]

    # dry run: the image file does not change by a single byte
    src2 = make_source(str(tmp_path), "0.2.0", modules=("app", "new"))
    digest = sha_file(image)
    rc, out = run(["--source", src2, "--no-build", "--image", image, "--dry-run"],
                  mpy=True)
    assert rc == 0 and "remove  han2x_core/old.mpy" in out
    assert sha_file(image) == digest

    # a library the user added by hand: not ours, so it stays
    extra = tmp_path / "user_lib.py"
    extra.write_bytes(b"# added by the user\n")
    subprocess.run(["mcopy", "-i", image, str(extra), "::/lib/user_lib.py"], check=True, env=MENV)

    # update over the older version
    rc, out = run(["--source", src2, "--no-build", "--image", image], mpy=True)
    assert rc == 0, out
    assert "leave   lib/user_lib.py" in out
    got = image_contents(image, tmp_path)
    tree2 = shipped(src2)
    assert {r: got[r] for r in tree2} == tree2
    assert "han2x_core/old.mpy" not in got
    assert got["settings.toml"] == SETTINGS and got["settings.toml.new"] == SETTINGS_NEW
    assert got["boot_out.txt"] == BOOT_OUT
    assert got["lib/user_lib.py"] == b"# added by the user\n"
    assert not any(r.startswith((flash.STAGING, flash.PROBE)) for r in got)
    assert set(flash.parse_manifest(got[".han2x-manifest"])) == set(tree2)
    ok, report = fsck_ok(image)
    assert ok, report
    other = pyfatfs_contents(image)  # a second, independent FAT reader agrees
    # (pyfatfs ignores the lower-case flag of short 8.3 names)
    assert {k.lower(): v for k, v in other.items()} == {k.lower(): v for k, v in got.items()}


def test_fat_image_really_full_keeps_previous_code_py(tmp_path):
    # 200 KiB FAT12: 0.1.0 fits; 0.2.0 brings a 120 KiB module that cannot be staged.
    image = make_image(tmp_path / "small.img", kib=200)
    src1 = make_source(str(tmp_path), "0.1.0", big=60000)
    assert run(["--source", src1, "--no-build", "--image", image], mpy=True)[0] == 0
    before = image_contents(image, tmp_path)
    tree2 = flash.collect_tree(make_source(str(tmp_path), "0.2.0", big=120000))

    # the pre-check refuses without writing a byte
    digest = sha_file(image)
    with pytest.raises(flash.FlashError) as e:
        flash.install(flash.ImageDrive(image), tree2, out=lambda s: None)
    assert e.value.code == flash.EXIT_FULL and sha_file(image) == digest

    # without the pre-check, mtools hits the real "Disk full" part-way through staging
    with pytest.raises(flash.FlashError) as e:
        flash.install(flash.ImageDrive(image), tree2, out=lambda s: None, check_space=False)
    assert e.value.code == flash.EXIT_FULL and "Nothing was changed" in str(e.value)
    after = image_contents(image, tmp_path)
    assert after == before  # old code.py, old modules, settings: all as they were
    assert b"0.1.0" in after["code.py"]
    ok, report = fsck_ok(image)
    assert ok, report


def test_zip_copied_by_hand_into_fat_image_equals_flash_result(tmp_path):
    """The drag-and-drop path: unzip, copy everything onto the drive (mcopy here)."""
    src = make_source(str(tmp_path), "0.1.0")
    zpath = str(tmp_path / "han2x.zip")
    assert run(["--source", src, "--no-build", "--zip", zpath], mpy=True)[0] == 0
    unpacked = tmp_path / "unzipped"
    with zipfile.ZipFile(zpath) as z:
        z.extractall(unpacked)
    image = make_image(tmp_path / "hand.img")
    names = [str(unpacked / n) for n in sorted(os.listdir(unpacked))]
    subprocess.run(["mcopy", "-s", "-i", image] + names + ["::/"], check=True, env=MENV)
    rc, out = run(["--source", src, "--no-build", "--image", image, "--dry-run"],
                  mpy=True)
    assert rc == 0 and "0 to copy, 9 unchanged, 0 to remove" in out
    got = image_contents(image, tmp_path)
    assert got["settings.toml"] == SETTINGS
    assert fsck_ok(image)[0]


@pytest.fixture(scope="module")
def real_lib(tmp_path_factory):
    """lib/ built from the real pins (offline, from the download cache), in a temporary folder."""
    from tools import build_lib

    lib = tmp_path_factory.mktemp("reallib")
    reqs = os.path.join(ROOT, "lib", "requirements.txt")
    shutil.copy(reqs, str(lib / "requirements.txt"))
    cache = os.path.join(ROOT, "build", "lib-cache")
    # Offline: `make test` fills the cache first; a wrong pin or hash fails here, loudly.
    build_lib.build(str(lib), str(lib / "requirements.txt"), cache, offline=True,
                    log=lambda s: None)
    return str(lib)


def test_real_firmware_fits_a_1mb_drive_and_updates_staged(tmp_path, real_lib):
    """The whole real firmware (han2x_core + pinned lib/) onto a 1 MiB FAT12 image, the size of
    CIRCUITPY on the W5500-EVB-Pico (2 MB flash), then an update that changes every
    han2x_core file: it must still fit through the staging folder."""
    src = tmp_path / "repo"
    shutil.copytree(os.path.join(ROOT, "han2x_core"), str(src / "han2x_core"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in flash.ROOT_FILES:
        if os.path.isfile(os.path.join(ROOT, name)):
            shutil.copy(os.path.join(ROOT, name), str(src / name))
    assert (src / "code.py").exists()
    (src / "lib").mkdir()
    shutil.copy(os.path.join(ROOT, "lib", "requirements.txt"), str(src / "lib"))
    image = make_image(tmp_path / "evb-pico.img", kib=1024)
    rc, out = run(["--source", str(src), "--lib", real_lib, "--no-build", "--image", image],
                  mpy=True)
    assert rc == 0, out
    tree = shipped(str(src), real_lib)
    got = image_contents(image, tmp_path)
    assert {r: got[r] for r in tree} == tree
    assert "lib/adafruit_wiznet5k/adafruit_wiznet5k.mpy" in got
    for dirpath, _dirs, files in os.walk(str(src / "han2x_core")):
        for n in files:
            if n.endswith(".py"):
                with open(os.path.join(dirpath, n), "a") as f:
                    f.write("NEXT_VERSION = 1\n")
    rc, out = run(["--source", str(src), "--lib", real_lib, "--no-build", "--image", image],
                  mpy=True)
    assert rc == 0, out
    got = image_contents(image, tmp_path)
    assert got["han2x_core/__init__.py"].endswith(b"NEXT_VERSION = 1\n")
    assert "%d copied" % sum(r.startswith("han2x_core/") and not r.startswith(flash.WWW)
                             for r in tree) in out
    assert got["settings.toml"] == SETTINGS
    ok, report = fsck_ok(image)
    assert ok, report


def _imports(source):
    """Top-level module names a file imports, leaving out optional imports
    (inside a try that catches ImportError)."""
    import ast

    tree = ast.parse(source)
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                h.type is None or "ImportError" in ast.dump(h.type) for h in node.handlers):
            for sub in node.body:
                optional.update(id(n) for n in ast.walk(sub))
    names = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_every_library_the_firmware_imports_is_in_lib(real_lib):
    """Each adafruit_* import of the firmware, and each import inside lib/ itself, resolves
    to a module that the pinned lib/ ships (optional try/except imports aside)."""
    src_files = [os.path.join(ROOT, n) for n in flash.ROOT_FILES
                 if os.path.isfile(os.path.join(ROOT, n))]
    for dirpath, _dirs, files in os.walk(os.path.join(ROOT, "han2x_core")):
        src_files += [os.path.join(dirpath, n) for n in files if n.endswith(".py")]
    shipped = {n[:-3] if n.endswith(".py") else n for n in os.listdir(real_lib)
               if not n.startswith(".") and n not in ("README.md", "requirements.txt")}
    wanted = {}
    for path in src_files:
        with open(path, encoding="utf-8") as f:
            for name in _imports(f.read()):
                if name.startswith("adafruit_"):
                    wanted.setdefault(name, path)
    for dirpath, _dirs, files in os.walk(real_lib):
        for n in files:
            if n.endswith(".py"):
                with open(os.path.join(dirpath, n), encoding="utf-8") as f:
                    for name in _imports(f.read()):
                        if name.startswith(("adafruit_", "circuitpython_")):
                            wanted.setdefault(name, os.path.join(dirpath, n))
    missing = {name: path for name, path in wanted.items() if name not in shipped}
    assert not missing, "imported but not in lib/requirements.txt: %s" % missing
    unused = shipped - set(wanted)  # dead weight on a 1 MB drive
    assert not unused, "in lib/requirements.txt but imported by nothing: %s" % unused
    assert "adafruit_wiznet5k" in wanted
    assert "adafruit_pioasm" not in wanted  # the PIO words ship pre-assembled (han_uart.py)


# ------------------------------------------------------------------- .mpy by default


def cp_mpy_cross(tmp_path, banner="CircuitPython 10.2.1 on 2026-11-30; mpy-cross emitting mpy "
                 "v6.3", real=None, name="cp-mpy-cross"):
    """A program that says it is CircuitPython's mpy-cross (banner). With real it runs that
    compiler; else it writes a marker and the source."""
    script = tmp_path / name
    body = ("os.execv(%r, [%r] + sys.argv[1:])\n" % (real, real) if real else
            "out = sys.argv[sys.argv.index('-o') + 1]\n"
            "open(out, 'wb').write(b'C\\x06' + open(sys.argv[-1], 'rb').read())\n")
    script.write_text("#!%s\nimport os, sys\nif sys.argv[1] == '--version':\n"
                      "    print(%r); sys.exit(0)\n%s" % (sys.executable, banner, body))
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def bare_env(tmp_path, monkeypatch):
    """No mpy-cross anywhere flash.py looks: PATH holds only MicroPython's mpy-cross (from
    PyPI, as in .venv/bin), which is not CircuitPython's."""
    path_dir = tmp_path / "bin"
    path_dir.mkdir()
    micropython = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    assert os.path.exists(micropython), "MicroPython's mpy-cross is in requirements-dev.txt"
    os.symlink(micropython, str(path_dir / "mpy-cross"))
    tools = [os.path.dirname(shutil.which(t)) for t in ("mcopy",) if shutil.which(t)]
    monkeypatch.setenv("PATH", os.pathsep.join([str(path_dir)] + tools))  # mtools stay
    monkeypatch.delenv(mpycross.ENV_PATH, raising=False)
    monkeypatch.delenv(mpycross.ENV_DIR, raising=False)
    return path_dir


def test_without_mpy_cross_nothing_is_installed_and_the_message_says_what_to_do(
        tmp_path, drive, bare_env):
    src = make_source(str(tmp_path), "0.1.0")
    before = snapshot(drive)
    rc, out = run(["--source", src, "--no-build", "--target", drive])
    assert rc == flash.EXIT_NO_MPY_CROSS, out
    assert snapshot(drive) == before
    assert "No mpy-cross for CircuitPython 10 found" in out
    assert "does not fit the board's memory" in out and "Nothing was changed" in out
    assert ("https://adafruit-circuit-python.s3.amazonaws.com/index.html?prefix=bin/mpy-cross/"
            in out)
    if sys.platform.startswith("linux") and os.uname().machine == "x86_64":
        assert "mpy-cross-linux-amd64-10.2.1.static" in out  # the board's own version
    assert "--mpy-cross FILE" in out and "HAN2X_MPY_CROSS" in out
    assert "%s (not CircuitPython's mpy-cross)" % (bare_env / "mpy-cross") in out
    # the same on a real FAT image: not a byte changes
    image = make_image(tmp_path / "img")
    digest = sha_file(image)
    rc, out = run(["--source", src, "--no-build", "--image", image])
    assert rc == flash.EXIT_NO_MPY_CROSS and sha_file(image) == digest
    # and no zip either
    rc, out = run(["--source", src, "--no-build", "--zip", str(tmp_path / "dist")])
    assert rc == flash.EXIT_NO_MPY_CROSS and not os.path.exists(tmp_path / "dist")


def test_mpy_cross_is_found_on_path_by_its_version(tmp_path, drive, bare_env, monkeypatch):
    """Adafruit's file name on PATH; a 9.x one earlier on PATH is passed over."""
    src = make_source(str(tmp_path), "0.1.0")
    os.symlink(MPY, str(bare_env / "mpy-cross-linux-amd64-10.2.1.static"))
    nine = tmp_path / "nine"
    nine.mkdir()
    cp_mpy_cross(nine, "CircuitPython 9.2.8 on 2025-05-28; mpy-cross emitting mpy v6.1",
                 name="mpy-cross")
    monkeypatch.setenv("PATH", str(nine) + os.pathsep + os.environ["PATH"])
    rc, out = run(["--source", src, "--no-build", "--target", drive])
    assert rc == 0, out
    assert "mpy-cross: %s (CircuitPython 10.2)" % (bare_env / "mpy-cross-linux-amd64-10.2.1.static"
                                                   ) in out
    assert contents(drive)["han2x_core/app.mpy"] == shipped(src)["han2x_core/app.mpy"]


def test_mpy_cross_from_the_environment(tmp_path, drive, bare_env, monkeypatch):
    src = make_source(str(tmp_path), "0.1.0")
    monkeypatch.setenv(mpycross.ENV_DIR, CP_DIR)  # the folder with CircuitPython's own files
    rc, out = run(["--source", src, "--no-build", "--target", drive])
    assert rc == 0 and "mpy-cross: %s" % MPY in out, out
    other = cp_mpy_cross(tmp_path, real=MPY, name="chosen")
    monkeypatch.setenv(mpycross.ENV_PATH, other)  # the file itself: first
    with open(os.path.join(src, "han2x_core", "app.py"), "a") as f:
        f.write("FIX = 1\n")
    rc, out = run(["--source", src, "--no-build", "--target", drive])
    assert rc == 0 and "mpy-cross: %s (CircuitPython 10.2)" % other in out, out
    monkeypatch.setenv(mpycross.ENV_PATH, sys.executable)  # a wrong one is not passed over
    before = snapshot(drive)
    rc, out = run(["--source", src, "--no-build", "--target", drive])
    assert rc == flash.EXIT_IO and "not CircuitPython's mpy-cross" in out
    assert "HAN2X_MPY_CROSS" in out and snapshot(drive) == before


def test_mpy_files_replace_an_older_py_install_and_remove_the_shadowing_py(tmp_path, drive):
    src = make_source(str(tmp_path), "0.1.0")
    rc, out = run(["--source", src, "--no-build", "--target", drive, flash.UNSAFE_PY])
    assert rc == 0 and "WARNING: %s" % flash.UNSAFE_PY in out and "do not fit" in out
    assert "han2x_core/app.py" in contents(drive) and "lib/adafruit_single.py" in contents(drive)
    events = []

    class Recorder(flash.DirDrive):
        def replace(self, a, b):
            events.append(("place", b))
            super().replace(a, b)

        def remove(self, rel):
            events.append(("remove", rel))
            super().remove(rel)

    src2 = make_source(str(tmp_path), "0.2.0")
    tree = shipped(src2)
    assert "han2x_core/app.mpy" in tree and "han2x_core/app.py" not in tree
    assert tree["han2x_core/hdlc.mpy"].startswith(b"C\x06") and b"0.2.0" in tree[
        "han2x_core/hdlc.mpy"]
    assert "han2x_core/__init__.py" in tree and "han2x_core/www/style.css" in tree
    assert "lib/adafruit_single.mpy" in tree and "lib/adafruit_fake/core.mpy" in tree
    flash.install(Recorder(drive), tree, out=lambda s: None)
    got = contents(drive)
    assert not [r for r in got if r.startswith(("han2x_core/", "lib/")) and r.endswith(".py")
                and r != "han2x_core/__init__.py"]
    assert got["han2x_core/app.mpy"] == tree["han2x_core/app.mpy"]
    assert got["settings.toml"] == SETTINGS and got["my_notes.txt"] == b"user file"
    # CircuitPython imports x.py before x.mpy: each old .py goes before code.py is placed
    code_at = events.index(("place", "code.py"))
    for rel in ("han2x_core/app", "han2x_core/hdlc", "lib/adafruit_single"):
        assert events.index(("remove", rel + ".py")) < code_at
        assert events.index(("place", rel + ".mpy")) < events.index(("remove", rel + ".py"))
    assert set(flash.parse_manifest(got[".han2x-manifest"])) == set(tree)
    # and back to sources (developers): the .mpy files are ours, so they go
    rc, out = run(["--source", src2, "--no-build", "--target", drive, flash.UNSAFE_PY])
    got = contents(drive)
    assert rc == 0 and "han2x_core/app.py" in got and "han2x_core/app.mpy" not in got, out
    with pytest.raises(SystemExit):  # argparse: the two exclude each other
        run(["--source", src2, "--no-build", "--target", drive, flash.UNSAFE_PY,
             "--mpy-cross", MPY])


def test_mpy_cross_for_another_circuitpython_than_the_board_is_refused(tmp_path, drive):
    src = make_source(str(tmp_path), "0.1.0")
    mpy9 = cp_mpy_cross(tmp_path, "CircuitPython 9.2.8 on 2025-05-28; mpy-cross emitting mpy v6.1")
    before = snapshot(drive)
    rc, out = run(["--source", src, "--no-build", "--target", drive, "--mpy-cross", mpy9])
    assert rc == flash.EXIT_NOT_CP and "mpy-cross for CircuitPython 9.2" in out, out
    assert "the board runs CircuitPython 10.2.1" in out and snapshot(drive) == before
    rc, out = run(["--source", src, "--no-build", "--zip", str(tmp_path / "z"),
                   "--mpy-cross", mpy9])
    assert rc == flash.EXIT_NOT_CP and not os.path.exists(tmp_path / "z"), out
    rc, out = run(["--source", src, "--no-build", "--target", drive,
                   "--mpy-cross", sys.executable])  # not an mpy-cross at all
    assert rc == flash.EXIT_IO and "not CircuitPython's mpy-cross" in out
    assert snapshot(drive) == before


def test_lib_built_as_mpy_for_another_major_is_refused(tmp_path, drive):
    src = make_source(str(tmp_path), "0.1.0")
    with open(os.path.join(src, "lib", ".han2x-lib.json"), "w") as f:
        f.write('{"mpy_major": 9}')
    before = snapshot(drive)
    rc, out = flash_dir(src, drive)
    assert rc == flash.EXIT_NOT_CP and "is .mpy for CircuitPython 9" in out, out
    assert snapshot(drive) == before


def test_compiled_han2x_core_really_runs_on_micropython(tmp_path, drive, real_lib):
    """The real firmware through flash.py --mpy-cross, compiled for real (MicroPython's
    mpy-cross standing in for CircuitPython's, the unix VM for the board): every han2x_core
    module loads from .mpy, a captured frame decodes, and the web server finds www/."""
    bindir = os.path.dirname(sys.executable)
    real, vm = os.path.join(bindir, "mpy-cross"), os.path.join(bindir, "micropython")
    if not (os.path.exists(real) and os.path.exists(vm)):
        pytest.fail("no mpy-cross/micropython next to %s: run `make setup`" % sys.executable)
    mpy = cp_mpy_cross(tmp_path, real=real)  # says CircuitPython 10.2.1, as the board
    rc, out = run(["--lib", real_lib, "--no-build", "--target", drive, "--mpy-cross", mpy])
    assert rc == 0, out
    core = os.listdir(os.path.join(drive, "han2x_core"))
    assert "__init__.py" in core and "meters.mpy" in core
    assert [n for n in core if n.endswith(".py")] == ["__init__.py"]
    with open(os.path.join(ROOT, "tests", "data", "frames.json")) as f:
        frame = next(fr for fr in __import__("json").load(f)
                     if fr["list"] == "3" and fr["meter"].startswith("Kamstrup"))
    script = (
        "import os, sys\nsys.path.insert(0, '.')\n"
        "from han2x_core import decode_frame\n"
        "r = decode_frame(bytes.fromhex(%r))\n"
        "print('decoded', r['meter'], r['list'], r['active_power_import_w'])\n"
        "from han2x_core.webroutes import Routes\n"
        "class App:\n    settings = {}\n"
        "w = Routes(None, App(), None).www\n"
        "print('www', w, os.stat(w + '/app.js')[6] > 0)\n"
        "n = 0\n"
        "for name in sorted(os.listdir('han2x_core')):\n"
        "    if name.endswith('.mpy'):\n"
        "        __import__('han2x_core.' + name[:-4]); n += 1\n"
        "print('loaded', n)\n" % frame["hex"])
    proc = subprocess.run([vm, "-X", "heapsize=512k", "-c", script], cwd=drive,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "decoded kamstrup 3 %d" % frame["expected"]["active_power_import_w"]
    assert lines[1] == "www ./han2x_core/www True"  # __file__ of the .mpy, as on the board
    assert lines[2] == "loaded %d" % sum(n.endswith(".mpy") for n in core)
