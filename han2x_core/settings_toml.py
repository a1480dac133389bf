"""The settings.toml text format: parse, and parse + validate (from_text). Writing the
text is settings_write.py (a save loads only that).

The file is a flat `key = value` subset of TOML (strings in double quotes, integers,
true/false, # comments), the same subset CircuitPython's os.getenv() reads. Schema and
validation are settings.py. Pure core: no files, no clock.
"""

from han2x_core.settings import DEFAULTS, SCHEMA, digits as _digits, validate


def _unquote(text, lineno, warnings):
    """Parse a TOML basic ("...") or literal ('...') string at the start of text.

    Returns (value, rest) or (None, None) after adding a warning.
    """
    quote = text[0]
    out = []  # type: list
    i = 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == quote:
            return "".join(out), text[i + 1:]
        if c == "\\" and quote == '"':
            i += 1
            e = text[i:i + 1]
            if e in ('"', "\\"):
                out.append(e)
            elif e == "n":
                out.append("\n")
            elif e == "t":
                out.append("\t")
            elif e in ("u", "U"):
                width = 4 if e == "u" else 8
                digits = text[i + 1:i + 1 + width]
                try:
                    code = int(digits, 16)
                    if len(digits) != width or 0xD800 <= code <= 0xDFFF or \
                            digits.strip("0123456789abcdefABCDEF"):
                        raise ValueError  # TOML: a Unicode scalar value, all its digits
                    out.append(chr(code))
                except ValueError:
                    warnings.append("line %d: bad \\%s escape" % (lineno, e))
                    return None, None
                i += width
            else:
                warnings.append("line %d: unknown escape \\%s" % (lineno, e))
                return None, None
        else:
            out.append(c)
        i += 1
    warnings.append("line %d: string has no closing quote" % lineno)
    return None, None


def _value(text, lineno, warnings, secret=False):
    """Parse the value part of one line (comments allowed after it); a secret's text is
    never put in a warning."""
    text = text.strip()
    if text[:1] in ('"', "'"):
        value, rest = _unquote(text, lineno, warnings)
        if value is None:
            return None
        rest = rest.strip()
        if rest and rest[0] != "#":
            warnings.append("line %d: unexpected text after the value" % lineno)
            return None
        return value
    hash_at = text.find("#")
    if hash_at >= 0:
        text = text[:hash_at].strip()
    if text == "true":
        return True
    if text == "false":
        return False
    digits = text.replace("_", "")
    sign = 1
    if digits[:1] in ("-", "+"):
        sign = -1 if digits[0] == "-" else 1
        digits = digits[1:]
    try:
        if digits[:2] in ("0x", "0X"):
            if 0 < len(digits) - 2 <= 8 and not digits[2:].strip("0123456789abcdefABCDEF"):
                return sign * int(digits[2:], 16)
        elif _digits(digits, 30):
            return sign * int(digits)
    except ValueError:
        pass
    if secret:
        warnings.append("line %d: cannot read the value" % lineno)
    else:
        warnings.append("line %d: cannot read the value %r" % (lineno, text[:20]))
    return None


def parse(text):
    """Read settings.toml text. Returns (dict, warnings); never raises on bad text.

    The dict holds every key = value line that could be read (ours and unknown ones, such
    as CircuitPython's CIRCUITPY_* keys); warnings is a list of English lines for the
    lines that could not be read, tables, duplicates and unknown keys.
    """
    d = {}  # type: dict
    warnings = []
    lineno = 0
    in_table = False
    for line in text.split("\n"):
        lineno += 1
        line = line.strip()
        if line[:1] == "\ufeff":
            line = line[1:].strip()
        if not line or line[0] == "#":
            continue
        if line[0] == "[":
            if not in_table:
                warnings.append("line %d: tables are not used; the rest is ignored" % lineno)
            in_table = True
            continue
        if in_table:
            continue
        eq = line.find("=")
        if eq <= 0:
            warnings.append("line %d: expected key = value" % lineno)
            continue
        key = line[:eq].strip()
        if key[:1] == '"' and key[-1:] == '"' and len(key) >= 2:
            key = key[1:-1]
        value = _value(line[eq + 1:], lineno, warnings, key == "web_password")
        if value is None:
            if key == "web_password":
                d[key] = None  # unreadable: from_text keeps the pages locked
            continue
        if key in d:
            warnings.append("line %d: %s is set twice; the last one is used" % (lineno, key))
        elif key not in DEFAULTS and key[:10] != "CIRCUITPY_":
            warnings.append("line %d: unknown setting %s (ignored)" % (lineno, key))
        d[key] = value
    return d, warnings


LOCKED = ("web_password %s; the pages it protects stay locked until it is fixed: correct it "
          "in settings.toml on the drive, or hold the button for a factory reset")


def from_text(text):
    """parse + validate: (clean settings, extra keys, warnings). Bad fields get defaults,
    except a password that cannot be used: None, which keeps the protected pages locked
    (fail closed; the warning never shows the value)."""
    d, warnings = parse(text)
    clean, errors = validate(d)
    if "web_password" in errors or clean["web_password"] is None:
        warnings.append(LOCKED % errors.pop("web_password", "cannot be read"))
        clean["web_password"] = None
    for key, _, _, _, _, _ in SCHEMA:
        if key in errors:
            from han2x_core.settings_write import format_value

            warnings.append("%s %s; using %s" % (key, errors[key], format_value(clean[key])))
    extra = {}
    for key in d:
        if key not in DEFAULTS and key[:10] == "CIRCUITPY_":
            extra[key] = d[key]
    return clean, extra, warnings
