#!/usr/bin/env python3
"""Install or update the HAN2X firmware on a board's CIRCUITPY drive.

Host-only tool (CPython 3.11, standard library; mtools only for --image).

    python tools/flash.py                     # find CIRCUITPY, install what changed
    python tools/flash.py --dry-run           # only list what would change
    python tools/flash.py --target /path      # a drive (or any folder) given by hand
    python tools/flash.py --mpy-cross FILE    # CircuitPython's mpy-cross given by hand
    python tools/flash.py --zip dist          # dist/han2x-VERSION.zip for drag-and-drop
    python tools/flash.py --uf2 cp.uf2        # put CircuitPython on an RPI-RP2 boot drive first

han2x_core/ and lib/ are shipped as .mpy, compiled by CircuitPython's own mpy-cross of the
board's version: from .py sources the firmware does not fit the board's heap. tools/mpycross.py
says where flash.py looks for it; with none, flash.py stops and says where to get it.

What it guarantees (docs/update.md says the same for users):
- Only our files are written: code.py, boot.py, safemode.py, han2x_core/ (.mpy files, plus
  __init__.py and the web assets in www/), lib/ and the manifest.
  The user's settings (settings.toml and any other settings* file) are never written,
  renamed or removed.
- Changed files are first written to a staging folder (.han2x-new/) on the drive and read
  back; only when all of them are there and correct are they moved into place (a rename on
  the same drive), with code.py last. A full drive, an unplugged cable or a file in use while
  staging leaves the running firmware untouched.
- Files we installed before (listed in .han2x-manifest on the drive) that this version no
  longer ships are removed; nothing else is.
"""

import argparse
import errno
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
sys.path.append(ROOT)
import tools._host  # noqa: E402,F401  (root and tests/ after the stdlib: docs/architecture.md)
from tools import build_lib, mpycross  # noqa: E402

MANIFEST = ".han2x-manifest"
STAGING = ".han2x-new"
PROBE = ".han2x-probe"
ROOT_FILES = ("code.py", "boot.py", "safemode.py")
REQUIRED = ("code.py", "han2x_core/__init__.py")
# Of han2x_core/ only the .py files ship, plus the web assets the web server reads from www/.
WWW = "han2x_core/www/"
BOARD_IDS = ("adafruit_feather_rp2040", "wiznet_w5500_evb_pico")
# Fixed time stamp in release zips, so the same tree always gives the same zip.
ZIP_TIME = (2020, 1, 1, 0, 0, 0)

# The CIRCUITPY ownership rule (boot.py, han2x_core/board_io.py, docs/settings.md): the board
# writes the drive, so web-page settings persist; the computer gets it for one start when
# the marker file usb_write.txt exists at power-up (boot.py then deletes it).
USB_WRITE_MARKER = "usb_write.txt"
READ_ONLY_HELP = (
    "The CIRCUITPY drive is read-only to this computer: the board owns it (boot.py's rule, "
    "so that settings saved on the web page persist). To open it for copying, for one start:\n"
    "  - on the device's web page, Settings, press \"Open the drive for a firmware update\"\n"
    "    (the board restarts; wait for the drive to come back), or\n"
    "  - in the serial console (115200 baud), press Ctrl-C, then type\n"
    "      import microcontroller; from han2x_core import board_io\n"
    "      board_io.request_usb_write(microcontroller)\n"
    "    (the board writes usb_write.txt and restarts), or\n"
    "  - start the board in safe mode (press reset, then again while the status LED blinks).\n"
    "Then run flash.py again, and press reset afterwards to give the drive back to the board. "
    "See docs/update.md, \"Make the drive writable\"."
)

EXIT_NO_DRIVE, EXIT_NOT_CP, EXIT_READ_ONLY, EXIT_FULL, EXIT_IN_USE, EXIT_IO = 2, 3, 4, 5, 6, 7
EXIT_NO_MPY_CROSS = 8
UNSAFE_PY = "--unsafe-py-sources"


class FlashError(Exception):
    """A failure with a message for the user and an exit code."""

    def __init__(self, message, code=EXIT_IO):
        super().__init__(message)
        self.code = code


def is_users_file(rel):
    """Files that belong to the user, never written or removed by us (settings and the like)."""
    name = rel.lower()
    if "/" in name:
        return False
    return (name.startswith(("settings", ".settings", "energy_state"))  # energystate.py
            or name in ("boot_out.txt", USB_WRITE_MARKER))


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def read_version(text):
    """__version__ from the text of han2x_core/__init__.py (never imported), or None."""
    m = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text or "", re.MULTILINE)
    return m.group(1) if m else None


# --------------------------------------------------------------------------------------------
# The deploy tree


def collect_tree(source=ROOT, lib_dir=None):
    """{relative path: bytes} of everything that goes onto the drive (no settings, no tests)."""
    lib_dir = lib_dir or os.path.join(source, "lib")
    tree = {}
    for name in ROOT_FILES:
        path = os.path.join(source, name)
        if os.path.isfile(path):
            tree[name] = _read(path)
    core = os.path.join(source, "han2x_core")
    for dirpath, dirs, files in os.walk(core):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            rel = _rel(path, source)
            if name.endswith(".py") or (rel.startswith(WWW) and _is_asset(name)):
                tree[rel] = _read(path)
    for dirpath, dirs, files in os.walk(lib_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            rel = _rel(os.path.join(dirpath, name), lib_dir)
            if rel in build_lib.LIB_KEEP or name.startswith(".") or name.endswith(".pyc"):
                continue
            tree["lib/" + rel] = _read(os.path.join(dirpath, name))
    for rel in REQUIRED:
        if rel not in tree:
            raise FlashError("%s is missing in %s: not a HAN2X source tree" % (rel, source))
    bad = [rel for rel in tree if is_users_file(rel)]
    if bad:  # cannot happen with the rules above; a guard for future edits
        raise FlashError("refusing to ship user files: %s" % ", ".join(bad))
    return dict(sorted(tree.items()))


def _is_asset(name):
    return not name.startswith(".") and not name.endswith(("~", ".swp", ".pyc", ".orig"))


def _rel(path, base):
    return os.path.relpath(path, base).replace(os.sep, "/")


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def tree_version(tree):
    return read_version(tree.get("han2x_core/__init__.py", b"").decode("utf-8", "replace"))


def manifest_bytes(tree, version):
    lines = ["# han2x-manifest 1: files installed by tools/flash.py (do not edit)",
             "# version %s" % (version or "unknown")]
    for rel in sorted(tree):
        lines.append("%s %d %s" % (sha256(tree[rel]), len(tree[rel]), rel))
    return ("\n".join(lines) + "\n").encode()


def parse_manifest(data):
    """{relative path: sha256} from a manifest's bytes (empty for None or garbage)."""
    out = {}
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        if line.startswith("#"):
            continue
        parts = line.split(" ", 2)
        if len(parts) == 3 and len(parts[0]) == 64:
            out[parts[2]] = parts[0]
    return out


def build_zip(tree, path, version=None):
    """Write a zip laid out exactly as the drive should look (plus the manifest)."""
    files = dict(tree)
    files[MANIFEST] = manifest_bytes(tree, version or tree_version(tree))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for rel in sorted(files):
            info = zipfile.ZipInfo(rel, ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, files[rel])
    os.replace(tmp, path)
    return sorted(files)


# --------------------------------------------------------------------------------------------
# Drives: a mounted folder, or a FAT image through mtools (tests, factory images)


def _drop_cache(f):
    """Forget the file's cached pages (Linux), so a read-back comes from the drive itself."""
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


class DirDrive:
    """The CIRCUITPY drive as a mounted folder (or any folder laid out like one)."""

    def __init__(self, root):
        self.root = root

    def __str__(self):
        return self.root

    def _path(self, rel):
        return os.path.join(self.root, *rel.split("/"))

    def exists(self, rel):
        return os.path.isfile(self._path(rel))

    def list_files(self, folder):
        """Relative paths of all files under folder (empty if there is none)."""
        out = []
        for dirpath, _dirs, files in os.walk(self._path(folder)):
            out += [_rel(os.path.join(dirpath, n), self.root) for n in files]
        return sorted(out)

    def read(self, rel):
        try:
            with open(self._path(rel), "rb") as f:
                _drop_cache(f)
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def write(self, rel, data):
        path = self._path(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            _drop_cache(f)

    def replace(self, src, dst):
        path = self._path(dst)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(self._path(src), path)

    def remove(self, rel):
        os.remove(self._path(rel))

    def remove_tree(self, rel):
        if os.path.isdir(self._path(rel)):
            shutil.rmtree(self._path(rel))

    def rmdir_if_empty(self, rel):
        try:
            os.rmdir(self._path(rel))
            return True
        except OSError:
            return False

    def free_bytes(self):
        return shutil.disk_usage(self.root).free

    def cluster_bytes(self):
        try:
            return os.statvfs(self.root).f_bsize or 512
        except (AttributeError, OSError):
            return 512  # Windows: CIRCUITPY is FAT12/16 with 512-byte clusters

    def sync(self):
        if hasattr(os, "sync"):
            os.sync()


class ImageDrive:
    """A FAT image file (e.g. from mkfs.fat) edited with mtools: no root, no mounting."""

    def __init__(self, image):
        if not shutil.which("mcopy"):
            raise FlashError("--image needs mtools (Debian: apt install mtools)")
        self.image = image
        self.env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        self._files = None
        self._dirs = None

    def __str__(self):
        return "%s (FAT image)" % self.image

    def _run(self, *args, data=None):
        cmd = [args[0], "-i", self.image] + list(args[1:])
        proc = subprocess.run(cmd, input=data, capture_output=True, env=self.env)
        if proc.returncode != 0:
            msg = proc.stderr.decode("utf-8", "replace").strip()
            if "disk full" in msg.lower():
                raise OSError(errno.ENOSPC, "No space left on device")
            if "read-only" in msg.lower() or "permission denied" in msg.lower():
                raise OSError(errno.EROFS, msg)
            raise OSError(errno.EIO, "%s: %s" % (args[0], msg))
        return proc.stdout

    def _scan(self):
        if self._files is None:
            out = self._run("mdir", "-/", "-b", "-a", "::/").decode("utf-8", "replace")
            self._files, self._dirs = {}, {""}
            for line in out.splitlines():
                if not line.startswith("::/"):
                    continue
                rel = line[3:]
                if rel.endswith("/"):
                    self._dirs.add(rel[:-1].lower())
                elif rel:
                    self._files[rel.lower()] = rel
        return self._files, self._dirs

    def _changed(self):
        self._files = self._dirs = None

    def exists(self, rel):
        return rel.lower() in self._scan()[0]

    def list_files(self, folder):
        prefix = folder.lower().rstrip("/") + "/"
        return sorted(r for k, r in self._scan()[0].items() if k.startswith(prefix))

    def read(self, rel):
        files = self._scan()[0]
        if rel.lower() not in files:
            return None
        return self._run("mcopy", "-n", "::/" + files[rel.lower()], "-")

    def _mkdirs(self, rel):
        dirs = self._scan()[1]
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d.lower() not in dirs:
                self._run("mmd", "::/" + d)
                dirs.add(d.lower())

    def write(self, rel, data):
        self._mkdirs(rel)
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(data)
        try:
            self._run("mcopy", "-o", f.name, "::/" + rel)
        finally:
            os.unlink(f.name)
            self._changed()

    def replace(self, src, dst):
        self._mkdirs(dst)
        try:
            self._run("mmove", "-D", "o", "::/" + src, "::/" + dst)
        finally:
            self._changed()

    def remove(self, rel):
        try:
            self._run("mdel", "::/" + rel)
        finally:
            self._changed()

    def remove_tree(self, rel):
        if rel.lower() in self._scan()[1]:
            try:
                self._run("mdeltree", "::/" + rel)
            finally:
                self._changed()

    def rmdir_if_empty(self, rel):
        try:
            self._run("mrd", "::/" + rel)
            return True
        except OSError:
            return False
        finally:
            self._changed()

    def free_bytes(self):
        out = self._run("mdir", "::/").decode("utf-8", "replace")
        m = re.search(r"([\d ]+) bytes free", out)
        return int(m.group(1).replace(" ", "")) if m else 0

    def cluster_bytes(self):
        out = self._run("minfo").decode("utf-8", "replace")
        sector = re.search(r"sector size: (\d+)", out)
        cluster = re.search(r"cluster size: (\d+)", out)
        if sector and cluster:
            return int(sector.group(1)) * int(cluster.group(1))
        return 512

    def sync(self):
        pass


# --------------------------------------------------------------------------------------------
# Finding drives and checking the board


def _label_re(label):
    # a second board's drive: CIRCUITPY1 (Linux udisks), "CIRCUITPY 1" (macOS)
    return re.compile(re.escape(label) + r"( ?\d+)?$")


def find_drives(label="CIRCUITPY"):
    """Mounted drives whose volume label is label (Linux, macOS, Windows), best first."""
    found = []
    pattern = _label_re(label)
    if sys.platform.startswith("win"):
        found += _windows_drives(label)
    elif sys.platform == "darwin":
        if os.path.isdir("/Volumes"):
            found += sorted(os.path.join("/Volumes", n) for n in os.listdir("/Volumes")
                            if pattern.match(n))
    else:
        user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
        for base in ("/media/%s" % user, "/run/media/%s" % user, "/media", "/mnt"):
            path = os.path.join(base, label)
            if os.path.isdir(path) and os.path.ismount(path):
                found.append(path)
        try:
            with open("/proc/mounts", encoding="utf-8") as f:
                for line in f:
                    fields = line.split()
                    if len(fields) > 1:
                        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)),
                                       fields[1])
                        if pattern.match(os.path.basename(mount)):
                            found.append(mount)
        except OSError:
            pass
    out = []
    for path in found:
        if path not in out:
            out.append(path)
    return out


def _windows_drives(label):
    import ctypes
    import string

    kernel32 = ctypes.windll.kernel32
    kernel32.SetErrorMode(1)  # no "insert a disk" dialogs for empty card readers
    mask = kernel32.GetLogicalDrives()
    out = []
    for i, letter in enumerate(string.ascii_uppercase):
        if mask >> i & 1:
            root = letter + ":\\"
            buf = ctypes.create_unicode_buffer(261)
            if kernel32.GetVolumeInformationW(ctypes.c_wchar_p(root), buf, 261,
                                              None, None, None, None, 0):
                if _label_re(label).match(buf.value.upper()):
                    out.append(root)
    return out


def parse_boot_out(text):
    """boot_out.txt -> {"version": (9, 2, 1) or None, "version_text", "board_id"}."""
    m = re.search(r"CircuitPython\s+(\d+\.\d+\.\d+\S*)", text)
    board = re.search(r"Board ID:\s*(\S+)", text)
    return {
        "version_text": m.group(1).rstrip(";") if m else None,
        "version": build_lib.parse_version(m.group(1)) if m else None,
        "board_id": board.group(1) if board else None,
    }


def version_supported(version, supported):
    """True when version (a tuple) is in a supported major line at or above its minimum."""
    if not version:
        return False
    return any(version[0] == major and version[:2] >= (major, minor)
               for major, minor in supported)


def _wanted(supported):
    return ", ".join("%d.x from %d.%d" % (a, a, b) for a, b in supported)


def check_board(drive, supported, out, refuse_other_major=True):
    """Refuse what is not CircuitPython, and (unless told otherwise) a CircuitPython major
    line the firmware does not support; warn for an older minor version or another board."""
    if drive.exists("INFO_UF2.TXT") and not drive.exists("boot_out.txt"):
        raise FlashError(
            "%s is the RP2040 boot drive (RPI-RP2), not CIRCUITPY. Install CircuitPython "
            "first: python tools/flash.py --uf2 circuitpython.uf2 (see docs/install.md)."
            % drive, EXIT_NOT_CP)
    data = drive.read("boot_out.txt")
    if data is None:
        raise FlashError(
            "%s has no boot_out.txt, so it is not a CircuitPython drive. Refusing to write "
            "to it. (Install CircuitPython first, see docs/install.md, or give the right "
            "--target.)" % drive, EXIT_NOT_CP)
    info = parse_boot_out(data.decode("utf-8", "replace"))
    wanted = _wanted(supported)
    version = info["version"]
    if version and refuse_other_major and version[0] not in [s[0] for s in supported]:
        raise FlashError(
            "The board runs CircuitPython %s; this firmware runs on CircuitPython %s only (its "
            ".mpy files load only on that major version). Nothing was changed. Install "
            "CircuitPython %d.%d or newer %d.x for your board first: python tools/flash.py "
            "--uf2 FILE.uf2 (docs/install.md)." % (
                info["version_text"], wanted, max(supported)[0], max(supported)[1],
                max(supported)[0]), EXIT_NOT_CP)
    if not version_supported(version, supported):
        out("WARNING: the board runs CircuitPython %s; this firmware supports %s. "
            "Install a supported CircuitPython (docs/install.md) if the board misbehaves."
            % (info["version_text"] or "(unknown version)", wanted))
    for shadow in ("code.txt",):
        if drive.exists(shadow):
            out("WARNING: %s on the drive runs instead of code.py (CircuitPython looks for "
                "code.txt first). Rename or delete it, or the firmware will not start."
                % shadow)
    if info["board_id"] and info["board_id"] not in BOARD_IDS:
        out("WARNING: board %s is not one of the supported boards (%s)."
            % (info["board_id"], ", ".join(BOARD_IDS)))
    return info


# --------------------------------------------------------------------------------------------
# Plan and install


class Plan:
    def __init__(self):
        self.copy = []       # changed or new files, code.py last
        self.same = []       # already identical on the drive
        self.remove = []     # ours before, not shipped any more
        self.foreign = []    # in han2x_core/ or lib/, but not ours by the manifest: left alone
        self.old_manifest = {}
        self.old_version = None


def make_plan(drive, tree):
    """Compare the tree with the drive (by content) and list what to copy and remove."""
    plan = Plan()
    plan.old_manifest = parse_manifest(drive.read(MANIFEST))
    old_init = drive.read("han2x_core/__init__.py")
    plan.old_version = read_version(old_init.decode("utf-8", "replace")) if old_init else None
    for rel in tree:
        (plan.same if drive.read(rel) == tree[rel] else plan.copy).append(rel)
    if "code.py" in plan.copy:  # CircuitPython restarts on writes: code.py goes last
        plan.copy.remove("code.py")
        plan.copy.append("code.py")
    for rel in sorted(plan.old_manifest):
        if rel not in tree and not is_users_file(rel) and drive.exists(rel):
            plan.remove.append(rel)
    for folder in ("han2x_core", "lib"):
        for rel in drive.list_files(folder):
            if rel not in tree and rel not in plan.old_manifest:
                plan.foreign.append(rel)
    return plan


def _kib(n):
    return "%.1f KiB" % (n / 1024.0)


# How far an install got when it failed: what the user still has on the drive.
_KEPT = {
    "staging": "Nothing was changed in the running firmware (code.py and its files are the "
               "previous version).",
    "placing": "code.py is still the previous version; run flash.py again to finish.",
    "cleanup": "The new firmware is in place; run flash.py again to finish the clean-up.",
}


def _os_error(e, rel, phase):
    """Turn an OSError while writing rel into a FlashError the user can act on."""
    code = e.errno
    kept = _KEPT[phase]
    winerr = getattr(e, "winerror", None)
    if code == errno.ENOSPC:
        return FlashError("The drive is full (while writing %s). %s Free some space (delete "
                          "files you added yourself, never settings.toml) and run again."
                          % (rel, kept), EXIT_FULL)
    if code == errno.EROFS:
        return FlashError(READ_ONLY_HELP, EXIT_READ_ONLY)
    if code in (errno.EBUSY, errno.ETXTBSY) or winerr in (32, 33):
        return FlashError("%s is in use by another program (an editor or a file manager?). "
                          "Close it and run again. %s" % (rel, kept), EXIT_IN_USE)
    if code in (errno.EACCES, errno.EPERM):
        return FlashError("Permission denied writing %s: the file is open in another program, "
                          "or the drive is read-only to this computer.\n%s\n%s"
                          % (rel, READ_ONLY_HELP, kept), EXIT_IN_USE)
    if code in (errno.ENOENT, errno.ENODEV, errno.EIO, errno.ENXIO):
        return FlashError("The drive stopped answering while writing %s (unplugged or reset?): "
                          "%s. Plug it in again and run flash.py again. %s" % (rel, e, kept))
    return FlashError("Writing %s failed: %s. %s" % (rel, e, kept))


def _probe_writable(drive):
    try:
        drive.write(PROBE, b"han2x")
        drive.remove(PROBE)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise FlashError(READ_ONLY_HELP, EXIT_READ_ONLY) from e
        raise _os_error(e, PROBE, "staging") from e


def _space_needed(plan, tree, cluster, staged):
    def clusters(n):
        return max(1, -(-n // cluster)) * cluster
    sizes = [clusters(len(tree[rel])) for rel in plan.copy]
    dirs = {rel.rsplit("/", 1)[0] for rel in plan.copy if "/" in rel}
    meta = clusters(len(manifest_bytes(tree, None))) + (len(dirs) + 1) * cluster
    return (sum(sizes) if staged else max(sizes or [0])) + meta


def install(drive, tree, out=print, dry_run=False, in_place=False, check_space=True):
    """Bring drive up to tree. Returns the Plan. Raises FlashError with a clear message."""
    version = tree_version(tree)
    plan = make_plan(drive, tree)
    out("Firmware %s -> %s (%s)" % (plan.old_version or "none installed", version, drive))
    for rel in plan.foreign:
        out("  leave   %s (not installed by flash.py%s; remove it yourself if it is an old "
            "firmware file)" % (rel, "" if plan.old_manifest else ": no %s on the drive"
                                % MANIFEST))
    if dry_run:
        for rel in plan.copy:
            out("  %-7s %s (%s)" % ("update" if drive.exists(rel) else "add", rel,
                                    _kib(len(tree[rel]))))
        for rel in plan.remove:
            out("  remove  %s (no longer shipped)" % rel)
        out("Dry run: %d to copy, %d unchanged, %d to remove. Nothing was written."
            % (len(plan.copy), len(plan.same), len(plan.remove)))
        return plan
    if not plan.copy and not plan.remove:
        if parse_manifest(drive.read(MANIFEST)) != {r: sha256(d) for r, d in tree.items()}:
            try:
                _write_manifest(drive, tree, version)
            except OSError as e:
                out("Note: could not update %s (%s)." % (MANIFEST, e))
        out("Already up to date: %d files checked, nothing to copy." % len(plan.same))
        return plan

    try:  # left-overs of an interrupted run (ours; not part of the running firmware)
        drive.remove_tree(STAGING)
    except OSError as e:
        raise _os_error(e, STAGING, "staging") from e
    if check_space:  # before any other write, so a refusal changes nothing at all
        need = _space_needed(plan, tree, drive.cluster_bytes(), not in_place)
        free = drive.free_bytes()
        if need > free:
            raise FlashError(
                "The drive is full: this update needs about %s free, the drive has %s. "
                "Nothing was changed. Delete files you added yourself (never settings.toml)%s, "
                "then run again." % (_kib(need), _kib(free), "" if in_place else
                                     ", or use --in-place (less safe, needs less space)"),
                EXIT_FULL)

    _probe_writable(drive)
    total = len(plan.copy)
    if in_place:
        try:
            _write_manifest(drive, tree, version, extra=plan.old_manifest)
        except OSError as e:
            raise _os_error(e, MANIFEST, "staging") from e
    for i, rel in enumerate(plan.copy, 1):
        staged = STAGING + "/" + rel
        out("[%d/%d] copy %s (%s)" % (i, total, rel, _kib(len(tree[rel]))))
        try:
            drive.write(staged, tree[rel])
            if drive.read(staged) != tree[rel]:
                raise FlashError("Verify failed: %s reads back different from what was "
                                 "written. The drive may be failing." % rel)
            if in_place:
                drive.replace(staged, rel)
                _verify(drive, rel, tree[rel])
                _unshadow(drive, plan, rel, out)
        except OSError as e:
            _cleanup(drive)
            raise _os_error(e, rel, "placing" if in_place else "staging") from e
        except FlashError:
            _cleanup(drive)
            raise
    drive.sync()

    if not in_place:
        # Everything is on the drive and verified: from here only renames, code.py last.
        current = MANIFEST
        try:
            _write_manifest(drive, tree, version, extra=plan.old_manifest)
            for current in plan.copy:
                drive.replace(STAGING + "/" + current, current)
                _verify(drive, current, tree[current])
                _unshadow(drive, plan, current, out)
        except OSError as e:
            raise _os_error(e, current, "placing") from e

    rel = MANIFEST
    try:
        for rel in plan.remove:
            out("remove %s (no longer shipped)" % rel)
            try:
                drive.remove(rel)
            except FileNotFoundError:
                pass
            _prune_dirs(drive, rel)
        rel = MANIFEST
        _write_manifest(drive, tree, version)
    except OSError as e:
        raise _os_error(e, rel, "cleanup") from e
    _cleanup(drive)
    drive.sync()
    out("Installed HAN2X firmware %s: %d copied, %d unchanged, %d removed. All files verified."
        % (version, len(plan.copy), len(plan.same), len(plan.remove)))
    out("The board restarts by itself a moment after the copy.")
    boot_out = (drive.read("boot_out.txt") or b"").decode("utf-8", "replace")
    why = []
    if any(r in plan.copy for r in ("boot.py", "safemode.py")):
        why.append("the new boot.py/safemode.py run only after a reset")
    if "the computer writes the drive" in boot_out:
        why.append("the board takes the drive back, so settings saved on the web page persist")
    if why:
        out("When you are done, press RESET: %s." % "; ".join(why))
    return plan


def _unshadow(drive, plan, rel, out):
    """Just placed x.mpy where our old x.py stays behind: remove x.py now, before code.py is
    placed, because CircuitPython imports x.py before x.mpy (the new code.py would run with
    the old module)."""
    shadow = rel[:-4] + ".py" if rel.endswith(".mpy") else None
    if shadow in plan.remove:
        out("remove %s (now %s)" % (shadow, rel))
        try:
            drive.remove(shadow)
        except FileNotFoundError:
            pass
        plan.remove.remove(shadow)


def _verify(drive, rel, data):
    if drive.read(rel) != data:
        raise FlashError("Verify failed: %s on the drive differs from the firmware. Run "
                         "flash.py again; if it fails again the drive may be failing." % rel)


def _write_manifest(drive, tree, version, extra=None):
    """Write the manifest. With extra (the old manifest), old files stay listed too, so a
    re-run after an interruption still knows they are ours."""
    data = manifest_bytes(tree, version)
    for rel in sorted(extra or ()):
        if rel not in tree and not is_users_file(rel):
            data += ("%s 0 %s\n" % (extra[rel], rel)).encode()
    drive.write(MANIFEST, data)


def _prune_dirs(drive, rel):
    parts = rel.split("/")[:-1]
    while parts:
        if not drive.rmdir_if_empty("/".join(parts)):
            return
        parts.pop()


def _cleanup(drive):
    try:
        drive.remove_tree(STAGING)
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# CircuitPython itself: a UF2 onto the RPI-RP2 boot drive

UF2_MAGIC0, UF2_MAGIC1, UF2_MAGIC_END = 0x0A324655, 0x9E5D5157, 0x0AB16F30
RP2040_FAMILY = 0xE48BFF56


def check_uf2(data):
    """Raise FlashError unless data is a UF2 image for the RP2040."""
    import struct

    if not data or len(data) % 512:
        raise FlashError("not a UF2 file (size is not a multiple of 512 bytes)")
    families = set()
    for off in range(0, len(data), 512):
        m0, m1, flags = struct.unpack_from("<III", data, off)
        family = struct.unpack_from("<I", data, off + 28)[0]
        end = struct.unpack_from("<I", data, off + 508)[0]
        if (m0, m1, end) != (UF2_MAGIC0, UF2_MAGIC1, UF2_MAGIC_END):
            raise FlashError("not a UF2 file (bad block at offset %d)" % off)
        if flags & 0x2000:
            families.add(family)
    if families and RP2040_FAMILY not in families:
        raise FlashError("this UF2 is for another chip (family %s), not the RP2040: download "
                         "CircuitPython for your board (docs/install.md)"
                         % ", ".join("0x%08x" % f for f in sorted(families)))


def install_uf2(uf2_path, boot_drive, out=print):
    """Copy a CircuitPython UF2 onto an RPI-RP2 boot drive (the board reboots afterwards)."""
    if not os.path.isfile(os.path.join(boot_drive, "INFO_UF2.TXT")):
        raise FlashError("%s has no INFO_UF2.TXT: not an RP2040 boot drive (RPI-RP2). Hold "
                         "BOOTSEL while plugging in the board." % boot_drive, EXIT_NO_DRIVE)
    data = _read(uf2_path)
    check_uf2(data)
    out("Installing %s (%s) on %s ..." % (os.path.basename(uf2_path), _kib(len(data)),
                                          boot_drive))
    dest = os.path.join(boot_drive, os.path.basename(uf2_path))
    written = 0
    try:
        with open(dest, "wb") as f:
            for off in range(0, len(data), 65536):
                f.write(data[off:off + 65536])
                written = off + len(data[off:off + 65536])
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        # The board reboots as soon as it has the last block, so the drive may vanish
        # before the host has closed the file. Only an error before that is a failure.
        if written < len(data):
            raise FlashError("Copying the UF2 failed: %s" % e) from e
    out("CircuitPython is installing; the board restarts and shows a CIRCUITPY drive.")


def wait_for_drive(label, timeout, out=print):
    out("Waiting up to %d s for the %s drive ..." % (timeout, label))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        drives = find_drives(label)
        if drives:
            time.sleep(1.0)  # let the OS finish mounting
            return drives[0]
        time.sleep(0.5)
    return None


# --------------------------------------------------------------------------------------------


def _pick_drive(args, out):
    if args.image:
        return ImageDrive(args.image)
    if args.target:
        if not os.path.isdir(args.target):
            raise FlashError("%s is not a folder or drive" % args.target, EXIT_NO_DRIVE)
        return DirDrive(args.target)
    drives = find_drives("CIRCUITPY")
    if not drives:
        boot = find_drives("RPI-RP2")
        hint = (" The board is in its boot loader (RPI-RP2 at %s): install CircuitPython first "
                "with --uf2 FILE (docs/install.md)." % boot[0]) if boot else (
            " Plug the board in with a data USB cable and wait for the drive, or give "
            "--target DRIVE.")
        raise FlashError("No CIRCUITPY drive found." + hint, EXIT_NO_DRIVE)
    if len(drives) > 1:
        raise FlashError("More than one CIRCUITPY drive: %s. Choose one with --target."
                         % ", ".join(drives), EXIT_NO_DRIVE)
    out("Found CIRCUITPY at %s" % drives[0])
    return DirDrive(drives[0])


def main(argv=None, out=print):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", help="the CIRCUITPY drive or a folder (default: find it)")
    ap.add_argument("--image", help="a FAT image file to write with mtools instead of a drive")
    ap.add_argument("--dry-run", action="store_true", help="list what would change, write nothing")
    ap.add_argument("--zip", metavar="OUT",
                    help="build a release zip instead of flashing: OUT.zip, or a folder for "
                    "OUT/han2x-VERSION.zip")
    ap.add_argument("--uf2", metavar="FILE", help="install this CircuitPython UF2 first")
    ap.add_argument("--uf2-target", help="the RPI-RP2 boot drive (default: find it)")
    ap.add_argument("--uf2-only", action="store_true", help="with --uf2: stop after CircuitPython")
    ap.add_argument("--wait", type=int, default=60,
                    help="seconds to wait for CIRCUITPY after --uf2 (default: %(default)s)")
    ap.add_argument("--source", default=ROOT, help="firmware source tree (default: this repo)")
    ap.add_argument("--lib", help="built lib folder (default: SOURCE/lib)")
    ap.add_argument("--no-build", action="store_true", help="use lib/ as it is (no rebuild)")
    ap.add_argument("--offline", action="store_true", help="build lib/ from the cache only")
    ap.add_argument("--mpy-cross", metavar="FILE",
                    help="CircuitPython's mpy-cross of the board's version (default: $%s, "
                    "else mpy-cross* in $%s or on PATH)" % (mpycross.ENV_PATH, mpycross.ENV_DIR))
    ap.add_argument(UNSAFE_PY, action="store_true",
                    help="developers only: ship .py sources, which do NOT fit the board's "
                    "heap (MemoryError at start)")
    ap.add_argument("--in-place", action="store_true",
                    help="replace files one by one (needs less free space, less safe)")
    args = ap.parse_args(argv)
    if args.unsafe_py_sources and args.mpy_cross:
        ap.error("--mpy-cross and %s exclude each other" % UNSAFE_PY)
    try:
        return _main(args, out)
    except FlashError as e:
        out("flash.py: error: %s" % e)
        return e.code
    except mpycross.NotFound as e:
        out("flash.py: error: %s" % e)
        return EXIT_NO_MPY_CROSS
    except build_lib.BuildError as e:
        out("flash.py: cannot build lib/: %s" % e)
        return EXIT_IO
    except KeyboardInterrupt:
        out("flash.py: interrupted. code.py is the previous version unless the summary said "
            "otherwise; run flash.py again to finish.")
        return 130


def _main(args, out):
    lib_dir = args.lib or os.path.join(args.source, "lib")
    requirements = os.path.join(args.source, "lib", "requirements.txt")
    pins, supported = build_lib.parse_requirements(requirements)
    if args.uf2:
        boot = args.uf2_target
        if not boot:
            found = find_drives("RPI-RP2")
            if not found:
                raise FlashError("No RPI-RP2 boot drive found. Hold BOOTSEL (or BOOT) while "
                                 "plugging in the board, then run again.", EXIT_NO_DRIVE)
            boot = found[0]
        install_uf2(args.uf2, boot, out)
        if args.uf2_only:
            return 0
        if not (args.target or args.image):
            if not wait_for_drive("CIRCUITPY", args.wait, out):
                raise FlashError("CIRCUITPY did not appear within %d s. When it does, run "
                                 "python tools/flash.py" % args.wait, EXIT_NO_DRIVE)
    drive = info = None
    board = (max(supported)[0], None)  # a zip is for the newest supported major line
    if not args.zip:
        drive = _pick_drive(args, out)
        info = check_board(drive, supported, out, refuse_other_major=not args.unsafe_py_sources)
        board = (info["version"] or board)[:2]
    board_text = (info or {}).get("version_text") or "%d.x" % board[0]
    mpy = None
    if not args.unsafe_py_sources:  # first, so that a missing mpy-cross changes nothing
        mpy, mpy_version = mpycross.find(board[0], board[1], args.mpy_cross,
                                         release=(info or {}).get("version_text"))
        if mpy_version[0] != board[0]:
            raise FlashError(
                "%s is mpy-cross for CircuitPython %d.%d, but %s CircuitPython %s: its .mpy "
                "files would not load. Nothing was changed. Use the mpy-cross of that version "
                "(%s)." % (mpy, mpy_version[0], mpy_version[1],
                           "the board runs" if info else "this firmware is for", board_text,
                           mpycross.INDEX), EXIT_NOT_CP)
        out("mpy-cross: %s (CircuitPython %d.%d)" % ((mpy,) + mpy_version))
    if not args.no_build:
        build_lib.ensure(lib_dir, requirements, offline=args.offline, log=out)
    elif build_lib.read_stamp(lib_dir) is None:
        raise FlashError("%s is not built (no %s): run tools/build_lib.py, or leave out "
                         "--no-build" % (lib_dir, build_lib.STAMP))
    elif not build_lib.is_current(lib_dir, requirements,
                                  build_lib.read_stamp(lib_dir).get("mpy_major")):
        out("WARNING: %s does not match lib/requirements.txt (built from other pins?)" % lib_dir)
    tree = collect_tree(args.source, lib_dir)
    lib_major = (build_lib.read_stamp(lib_dir) or {}).get("mpy_major")  # lib/ built as .mpy
    if lib_major and lib_major != board[0]:
        raise FlashError("%s is .mpy for CircuitPython %d but the board runs %s: build it "
                         "again (leave out --no-build)." % (lib_dir, lib_major, board_text),
                         EXIT_NOT_CP)
    if mpy:
        tree = mpycross.compile_tree(tree, mpy, log=out)
    else:
        out("WARNING: %s: shipping .py sources. They do not fit the board's heap (on "
            "CircuitPython 10.2.1 the firmware stops with MemoryError importing the W5500 "
            "driver); for developers' experiments only." % UNSAFE_PY)
    version = tree_version(tree)
    if args.zip:
        path = args.zip
        if not path.lower().endswith(".zip"):  # a folder (made if need be)
            path = os.path.join(path, "han2x-%s%s.zip" % (version, "" if mpy else "-py-unsafe"))
        names = build_zip(tree, path, version)
        out("Wrote %s: HAN2X firmware %s for CircuitPython %s (%s), %d files, laid out as the "
            "CIRCUITPY drive (no settings). Copy its contents onto the drive as "
            "docs/update.md says." % (path, version, "%d.x" % board[0],
                                       ".mpy" if mpy else ".py sources", len(names)))
        return 0
    out("Board: CircuitPython %s, %s" % (info["version_text"] or "?", info["board_id"] or "?"))
    install(drive, tree, out=out, dry_run=args.dry_run, in_place=args.in_place)
    return 0


if __name__ == "__main__":
    sys.exit(main())
