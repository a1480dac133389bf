"""Web page texts: English (www/en.txt) and Norwegian bokmål (www/nb.txt), one "key=text"
line each, read from flash a text at a time: the tables never enter the heap. As modules
(one string per language, loaded whole per page) they held 6.3 KB of the board's heap while
a page rendered (CircuitPython 10.2.1, from .mpy).

Validation messages come from settings.validate in English; in Norwegian the page shows the
field's own message from nb.txt (translated by key, webfields.error_key).
"""

from micropython import const

_BLOCK = const(512)
LONGEST = const(400)  # bytes of the longest line (tests/test_web.py checks)
_DIR = __file__.rsplit("/", 1)[0] + "/www/"
# This module is dropped with the page (webroutes.release, which calls close() first): the
# buffer and the open files (one a language; opening one per text made ~1 KB of garbage
# each time on the board) are held only while pages render.
_buf = bytearray(_BLOCK)
_files = {}  # type: dict


def tr(key, lang):
    """The text for key in lang ('en' or 'nb'); the key itself when unknown."""
    lang = "nb" if lang == "nb" else "en"
    f = _files.get(lang)
    if f is None:
        f = _files[lang] = open(_DIR + lang + ".txt", "rb")
    want = ("\n" + key + "=").encode()  # the file's first line is a comment: every key
    buf = _buf  # follows a line break
    base = 0
    while True:
        f.seek(base)
        n = f.readinto(buf)
        i = buf.find(want, 0, n) if n else -1
        if i >= 0:
            start = i + len(want)
            end = buf.find(b"\n", start, n)
            if end < 0:  # the text runs past this block: read it from its start
                f.seek(base + start)
                n = f.readinto(buf)
                start = 0
                end = buf.find(b"\n", 0, n)
            return str(memoryview(buf)[start:end], "utf-8")
        if n < _BLOCK:
            return key
        base += n - len(want) + 1  # the next block overlaps: a key cut at its end


def close():
    """Close the text files (before this module is dropped)."""
    for f in _files.values():
        f.close()
    _files.clear()
