"""code.py, boot.py, safemode.py and the shells type-check against circuitpython-stubs
(mypy), once per supported board (the board stub decides which pin names exist)."""

import os
import shutil
import subprocess
import sys

import pytest

from util import ROOT

FILES = ["code.py", "boot.py", "safemode.py"] + [
    "han2x_core/%s.py" % name
    for name in ("board_io", "han_uart", "han_reader", "storage", "network", "modbus_server",
                 "modbus_slot", "web")
]


def _board_stub(board_dir):
    import board_definitions

    return os.path.join(list(board_definitions.__path__)[0], board_dir, "__init__.pyi")


def test_project_board_stub_is_the_evb_pico_one():
    with open(os.path.join(ROOT, "stubs", "board.pyi")) as a, \
            open(_board_stub("wiznet_w5500_evb_pico")) as b:
        assert a.read() == b.read()


@pytest.mark.parametrize("board_dir", ["wiznet_w5500_evb_pico", "adafruit_feather_rp2040"])
def test_mypy_with_circuitpython_stubs(board_dir, tmp_path):
    files = [f for f in FILES if os.path.exists(os.path.join(ROOT, f))]
    env = dict(os.environ)
    if board_dir != "wiznet_w5500_evb_pico":  # MYPYPATH comes before stubs/ from pyproject
        shutil.copy(_board_stub(board_dir), tmp_path / "board.pyi")
        env["MYPYPATH"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
         "--no-error-summary", "--show-error-codes"] + files,
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
