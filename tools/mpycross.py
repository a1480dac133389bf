"""Finding CircuitPython's mpy-cross for the board, and compiling the deploy tree with it.

Host-only (CPython 3.11, standard library). flash.py ships .mpy files by default: from .py
sources the firmware does not fit the board's heap (on CircuitPython 10.2.1 it stops with
MemoryError importing the W5500 driver, docs/benchmarks.md), and a .mpy file loads only on the
CircuitPython major version whose mpy-cross made it.

Where flash.py looks, first match wins (docs/install.md says the same for users):
  1. --mpy-cross PATH
  2. the environment variable HAN2X_MPY_CROSS=PATH
  3. files named mpy-cross* in the folder HAN2X_CIRCUITPYTHON_DIR (the folder that holds
     CircuitPython's official files: UF2 images and mpy-cross), then in the folders on PATH.
     Each candidate is asked for its --version; only CircuitPython's own mpy-cross of the
     board's major version counts (the same minor version first, then the newest).
"""

import os
import platform
import sys

from tools import build_lib

ENV_PATH = "HAN2X_MPY_CROSS"
ENV_DIR = "HAN2X_CIRCUITPYTHON_DIR"
INDEX = "https://adafruit-circuit-python.s3.amazonaws.com/index.html?prefix=bin/mpy-cross/"


class NotFound(Exception):
    """No usable mpy-cross; the message says what to do."""


def _candidates(environ):
    folders = []
    if environ.get(ENV_DIR):
        folders.append(environ[ENV_DIR])
    folders += [d for d in environ.get("PATH", "").split(os.pathsep) if d]
    seen = set()
    for folder in folders:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            real = os.path.realpath(path)
            if (name.lower().startswith("mpy-cross") and real not in seen
                    and os.path.isfile(path) and os.access(path, os.X_OK)):
                seen.add(real)
                yield path


def find(major, minor=None, given=None, environ=None, release=None):
    """(path, (major, minor)) of the mpy-cross to use for a board running CircuitPython
    major.minor (release: its version text, e.g. "10.2.1", for the message). given
    (--mpy-cross) or $HAN2X_MPY_CROSS is taken as it is (flash.py checks its version against
    the board); otherwise the search above. NotFound when none fits."""
    environ = os.environ if environ is None else environ
    explicit = given or environ.get(ENV_PATH)
    if explicit:
        try:
            return explicit, build_lib.mpy_cross_version(explicit)
        except build_lib.BuildError as e:
            where = "" if given else " (from %s)" % ENV_PATH
            raise build_lib.BuildError(str(e) + where) from e
    usable, rejected = [], []
    for path in _candidates(environ):
        try:
            version = build_lib.mpy_cross_version(path)
        except build_lib.BuildError:
            rejected.append("%s (not CircuitPython's mpy-cross)" % path)
            continue
        if version[0] == major:
            usable.append((version[1] == minor, version[1], path, version))
        else:
            rejected.append("%s (CircuitPython %d.%d)" % ((path,) + version))
    if usable:
        best = max(usable)
        return best[2], best[3]
    raise NotFound(_not_found_text(major, minor, release, rejected))


def _platform_folder():
    """The folder of Adafruit's mpy-cross downloads for this computer, and a file name
    pattern there ({v} = the CircuitPython version)."""
    machine = platform.machine().lower()
    if sys.platform.startswith("win"):
        return "windows", "mpy-cross-windows-{v}.static.exe"
    if sys.platform == "darwin":
        return "macos", None
    if machine in ("aarch64", "arm64"):
        return "linux-arm64", None
    return "linux-amd64", "mpy-cross-linux-amd64-{v}.static"


def _not_found_text(major, minor, release, rejected):
    version = release or ("%d.%d" % (major, minor) if minor is not None else "%d.x" % major)
    folder, pattern = _platform_folder()
    lines = [
        "No mpy-cross for CircuitPython %d found. flash.py installs the firmware as .mpy files "
        "compiled by CircuitPython's own mpy-cross of the board's version (CircuitPython %s): "
        "from .py sources the firmware does not fit the board's memory (MemoryError at start; "
        "the device would restart again and again). Nothing was changed." % (major, version),
        "What to do:",
        "  1. Download mpy-cross of CircuitPython %s for this computer from Adafruit's "
        "folder" % version,
        "       %s%s/" % (INDEX, folder),
    ]
    if pattern and release:
        lines.append("     (the file %s)." % pattern.format(v=release))
    else:
        lines.append("     (the file with %s in its name, or the newest %d.x)." % (version, major))
    lines += [
        "  2. Make it executable (Linux, macOS: chmod +x FILE).",
        "  3. Run flash.py again with --mpy-cross FILE (or put the file, named mpy-cross..., "
        "in a folder on your PATH, or set %s=FILE)." % ENV_PATH,
    ]
    if rejected:
        lines.append("Found, but not usable for this board: %s." % "; ".join(rejected))
    return "\n".join(lines)


def compile_tree(tree, mpy_cross, log=print):
    """The deploy tree ({relative path: bytes}) with every module under han2x_core/ and lib/
    compiled to .mpy, except han2x_core/__init__.py, which stays source (flash.py reads the
    version from its text). Files that are .mpy already (a lib/ built by build_lib.py
    --mpy-cross) stay as they are. BuildError when mpy-cross fails on a module."""
    import tempfile

    sources = {rel: data for rel, data in tree.items()
               if rel.startswith(("han2x_core/", "lib/")) and rel.endswith(".py")
               and rel != "han2x_core/__init__.py"}
    out = {rel: data for rel, data in tree.items() if rel not in sources}
    with tempfile.TemporaryDirectory(prefix="han2x-mpy-") as tmp:
        for rel, data in sources.items():
            path = os.path.join(tmp, *rel.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        build_lib.compile_mpy(tmp, mpy_cross, log=log)  # tracebacks name the module
        for rel in sources:
            with open(os.path.join(tmp, *rel[:-3].split("/")) + ".mpy", "rb") as f:
                out[rel[:-3] + ".mpy"] = f.read()
    log("Compiled %d modules to .mpy (%d in han2x_core/, %d in lib/)" % (
        len(sources), sum(r.startswith("han2x_core/") for r in sources),
        sum(r.startswith("lib/") for r in sources)))
    return dict(sorted(out.items()))
