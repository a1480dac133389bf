"""Writing settings.toml: the text of a settings dict, a line at a time, for
storage.SettingsStore.save. Apart from settings_toml.py (which reads the file) so that a save
loads only this (docs/settings.md has the format). (core)"""

from han2x_core.settings import DEFAULTS, SCHEMA


def _quote(value):
    out = ['"']
    for c in value:
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif ord(c) < 32 or ord(c) == 127:
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def format_value(value):
    """One value in settings.toml syntax."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    return _quote(str(value))


def serialise_lines(d, extra=None):
    """Settings dict -> settings.toml text, a line at a time, each with its newline: every
    known key in table order, commented; extra: other keys to keep (e.g. CIRCUITPY_*
    lines), written at the end. The board writes the file from it without ever holding the
    whole text (storage.SettingsStore.save)."""
    yield "# HAN2X settings. Edit by hand or on the web page; see docs/settings.md.\n"
    yield "# A bad value is replaced by its default and reported on the web page.\n\n"
    for key, kind, a, b, _, comment in SCHEMA:
        yield "# %s\n%s = %s\n" % (comment, key, format_value(d.get(key, DEFAULTS[key])))
    if extra:
        yield "\n"
        for key in sorted(extra):
            if key not in DEFAULTS:
                yield "%s = %s\n" % (key, format_value(extra[key]))


def serialise(d, extra=None):
    """serialise_lines() as one text."""
    return "".join(serialise_lines(d, extra))
