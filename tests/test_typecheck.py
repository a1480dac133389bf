"""code.py, boot.py, safemode.py and every han2x_core module type-check against
circuitpython-stubs (mypy, check_untyped_defs: every function body is read), once per
supported board (the board stub decides which pin names exist). Errors planted in a copy of
the tree must make mypy fail, and an error planted in every function body must be reported
once per body (docs/architecture.md, "Type checking")."""

import ast
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

from support.util import ROOT

FILES = ["code.py", "boot.py", "safemode.py"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "han2x_core", "*.py")))


def _board_stub(board_dir):
    import board_definitions

    return os.path.join(list(board_definitions.__path__)[0], board_dir, "__init__.pyi")


def _mypy(root, tmp_path, env=None):
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
         "--no-error-summary", "--show-error-codes"] + FILES,
        cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _copy_tree(tmp_path):
    dst = tmp_path / "tree"
    for name in ("code.py", "boot.py", "safemode.py", "pyproject.toml"):
        os.makedirs(dst, exist_ok=True)
        shutil.copy(os.path.join(ROOT, name), dst / name)
    for name in ("han2x_core", "stubs"):
        shutil.copytree(os.path.join(ROOT, name), dst / name,
                        ignore=shutil.ignore_patterns("__pycache__", "www"))
    return dst


def _plant(path, old, new):
    with open(path) as f:
        src = f.read()
    assert src.count(old) == 1, "%s: %r not found once" % (path, old)
    with open(path, "w") as f:
        f.write(src.replace(old, new))


def test_project_board_stub_is_the_evb_pico_one():
    with open(os.path.join(ROOT, "stubs", "board.pyi")) as a, \
            open(_board_stub("wiznet_w5500_evb_pico")) as b:
        assert a.read() == b.read()


@pytest.mark.parametrize("board_dir", ["wiznet_w5500_evb_pico", "adafruit_feather_rp2040"])
def test_mypy_with_circuitpython_stubs(board_dir, tmp_path):
    env = dict(os.environ)
    if board_dir != "wiznet_w5500_evb_pico":  # MYPYPATH comes before stubs/ from pyproject
        shutil.copy(_board_stub(board_dir), tmp_path / "board.pyi")
        env["MYPYPATH"] = str(tmp_path)
    result = _mypy(ROOT, tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr


# (file, text in it, the text with the error, what mypy must say about it)
PLANTED = [
    ("han2x_core/boardstart.py", "busio.SPI(sck, MOSI=mosi, MISO=miso)",
     "busio.SPI(sck, MOSIX=mosi, MISO=miso, bogus=1)",
     'Unexpected keyword argument "bogus" for "SPI"'),
    ("han2x_core/han_uart.py", "            frequency=BAUD * _CLOCKS_PER_BIT,\n",
     "            frequency=BAUD * _CLOCKS_PER_BIT, no_such_kwarg=3,\n",
     'Unexpected keyword argument "no_such_kwarg" for "StateMachine"'),
    ("han2x_core/bootio.py", 'storage.remount("/", readonly=False)',
     'storage.remount("/", readonly=False, nonsense=True)',
     'Unexpected keyword argument "nonsense" for "remount"'),
]


@pytest.mark.parametrize("path,old,new,message", PLANTED, ids=[p[0] for p in PLANTED])
def test_mypy_fails_on_a_planted_error(path, old, new, message, tmp_path):
    tree = _copy_tree(tmp_path)
    assert _mypy(tree, tmp_path).returncode == 0  # the copy is clean before the plant
    _plant(tree / path, old, new)
    result = _mypy(tree, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout, result.stdout
    assert path in result.stdout


def test_mypy_reads_every_function_body(tmp_path):
    """An unknown attribute planted as the first statement of every def (methods, nested
    functions, closures): mypy must report each one, so none of the bodies is skipped."""
    tree = _copy_tree(tmp_path)
    defs = annotated = 0
    for path in FILES:
        full = tree / path
        with open(full) as f:
            lines = f.read().split("\n")
        starts = []
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0]
                assert first.lineno > node.lineno, "%s:%d one-line def" % (path, node.lineno)
                starts.append((first.lineno, first.col_offset))
                defs += 1
                args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                annotated += bool(node.returns or any(a.annotation for a in args))
        for lineno, col in sorted(starts, reverse=True):
            lines.insert(lineno - 1, " " * col + "(0).planted_%d_%d" % (lineno, col))
        with open(full, "w") as f:
            f.write("\n".join(lines))
    result = _mypy(tree, tmp_path)
    reported = set(re.findall(r'(\S+?):\d+: error: "int" has no attribute "(planted_\d+_\d+)"',
                              result.stdout))
    print("mypy type-checks %d of %d function bodies in %d files (%d with annotations, %d "
          "read through check_untyped_defs); skipped: %d"
          % (len(reported), defs, len(FILES), annotated, defs - annotated, defs - len(reported)))
    assert defs > 500
    assert len(reported) == defs, result.stdout
