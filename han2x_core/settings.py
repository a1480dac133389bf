"""Settings schema, defaults, validation and the settings.toml text format.

The file is a flat `key = value` subset of TOML (strings in double quotes, integers,
true/false, # comments), the same subset CircuitPython's os.getenv() reads. The key table
is in docs/architecture.md and docs/settings.md. Pure core: no files, no clock.
"""

from micropython import const

_BOOL = const(0)
_INT = const(1)
_ENUM = const(2)
_IP = const(3)
_MASK = const(4)
_HOST = const(5)
_TEXT = const(6)

_TEXT_MAX = const(64)

DEFAULTS = {
    "dhcp": False,
    "ip": "192.168.1.232",
    "netmask": "255.255.255.0",
    "gateway": "192.168.1.1",
    "dns": "192.168.1.1",
    "hostname": "",
    "modbus_port": 502,
    "modbus_max_clients": 4,
    "modbus_idle_timeout_s": 60,
    "modbus_unit_id": 0,
    "scaling_factor": 1000,
    "han_line": "auto",
    "han_polarity": "auto",
    "han_input": "pio",
    "web_port": 80,
    "web_password": "",
    "web_protect": "settings",
    "language": "auto",
}

# (key, kind, a, b, comment written above the key). a/b: int range or enum choices.
SCHEMA = (
    ("dhcp", _BOOL, None, None, "true = get the address by DHCP; false = the static one below"),
    ("ip", _IP, None, None, "static IPv4 address"),
    ("netmask", _MASK, None, None, "static netmask"),
    ("gateway", _IP, None, None, "default gateway (0.0.0.0 = none)"),
    ("dns", _IP, None, None, "DNS server (0.0.0.0 = none)"),
    ("hostname", _HOST, None, None, 'DHCP host name; "" = han2x-XXXXXX from the MAC'),
    ("modbus_port", _INT, 1, 65535, "Modbus TCP port"),
    ("modbus_max_clients", _INT, 1, 5, "simultaneous Modbus clients (1..5)"),
    ("modbus_idle_timeout_s", _INT, 5, 3600, "close a Modbus client idle this long (s)"),
    ("modbus_unit_id", _INT, 0, 255, "0 = answer any unit id; 1..255 = only that one"),
    ("scaling_factor", _INT, 10, 1000000, "power/current/energy factor, 1000 = x1.000"),
    ("han_line", _ENUM, ("auto", "8E1", "8N1"), None, "HAN line format: auto, 8E1, 8N1"),
    ("han_polarity", _ENUM, ("auto", "normal", "inverted"), None,
     "HAN signal polarity: auto, normal, inverted"),
    ("han_input", _ENUM, ("pio", "uart"), None, "HAN receiver: pio or uart (busio)"),
    ("web_port", _INT, 1, 65535, "web page port"),
    ("web_password", _TEXT, None, None, 'web password; "" = none'),
    ("web_protect", _ENUM, ("settings", "all"), None, "what the password protects"),
    ("language", _ENUM, ("auto", "nb", "en"), None, "web page language: auto, nb, en"),
)

_TRUE = ("true", "1", "on", "yes")
_FALSE = ("false", "0", "off", "no", "")


def _ip_int(text):
    """Dotted quad -> int, or None when it is not one."""
    if not isinstance(text, str):
        return None
    parts = text.strip().split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not part or len(part) > 3 or not part.isdigit():
            return None
        n = int(part)
        if n > 255:
            return None
        value = (value << 8) | n
    return value


def _mask_ok(m):
    """A contiguous netmask of /1../32 (host bits all at the right)."""
    if m == 0:
        return False
    inv = (~m) & 0xFFFFFFFF
    return (inv & (inv + 1)) == 0


def _check(key, kind, a, b, value):
    """Return (clean_value, None) or (None, English message)."""
    if kind == _BOOL:
        if value is True or value is False:
            return value, None
        if isinstance(value, int):
            if value in (0, 1):
                return value == 1, None
        elif isinstance(value, str):
            v = value.strip().lower()
            if v in _TRUE:
                return True, None
            if v in _FALSE:
                return False, None
        return None, "must be true or false"
    if kind == _INT:
        n = value
        if isinstance(value, str):
            v = value.strip()
            if v[:1] in ("-", "+"):
                digits = v[1:]
            else:
                digits = v
            if not digits or not digits.isdigit():
                return None, "must be a whole number from %d to %d" % (a, b)
            n = int(v)
        elif value is True or value is False or not isinstance(value, int):
            return None, "must be a whole number from %d to %d" % (a, b)
        if n < a or n > b:
            return None, "must be from %d to %d" % (a, b)
        return n, None
    if not isinstance(value, str):
        return None, "must be text"
    value = value.strip()
    if kind == _ENUM:
        for choice in a:
            if value.lower() == choice.lower():
                return choice, None
        return None, "must be one of: " + ", ".join(a)
    if kind == _IP:
        n = _ip_int(value)
        if n is None:
            return None, "must be an IPv4 address like 192.168.1.232"
        return ".".join(str(int(p)) for p in value.split(".")), None
    if kind == _MASK:
        n = _ip_int(value)
        if n is None or not _mask_ok(n):
            return None, "must be a netmask like 255.255.255.0"
        return ".".join(str(int(p)) for p in value.split(".")), None
    if kind == _HOST:
        if len(value) > 63:
            return None, "must be at most 63 characters"
        for c in value:
            if not (c.isalpha() or c.isdigit() or c == "-") or ord(c) > 127:
                return None, "may only contain letters a-z, digits and '-'"
        if value[:1] == "-" or value[-1:] == "-":
            return None, "must not start or end with '-'"
        return value, None
    # _TEXT
    if len(value) > _TEXT_MAX:
        return None, "must be at most %d characters" % _TEXT_MAX
    for c in value:
        if ord(c) < 32 or ord(c) == 127:
            return None, "must not contain control characters"
    return value, None


def validate(d, old=None):
    """Check a settings dict (typed values or form strings).

    Returns (clean, errors): clean has every key of DEFAULTS; a missing or bad field keeps
    its value from `old` (default: DEFAULTS). errors maps key -> English message. Keys that
    are not settings are ignored.
    """
    base = old if old is not None else DEFAULTS
    clean = {}
    errors = {}
    for key, kind, a, b, _ in SCHEMA:
        fallback = base.get(key, DEFAULTS[key])
        if key not in d:
            clean[key] = fallback
            continue
        value, message = _check(key, kind, a, b, d[key])
        if message is None:
            clean[key] = value
        else:
            errors[key] = message
            clean[key] = fallback
    _check_network(clean, errors, base)
    if clean["web_port"] == clean["modbus_port"] and "web_port" not in errors:
        # One port for both would leave the web page unreachable after a restart.
        errors["web_port"] = "must differ from the Modbus port"
        clean["web_port"] = base.get("web_port", DEFAULTS["web_port"])
        if clean["web_port"] == clean["modbus_port"]:
            clean["modbus_port"] = base.get("modbus_port", DEFAULTS["modbus_port"])
    return clean, errors


def _check_network(clean, errors, base):
    """Cross-field checks of the static address: ip, netmask and gateway must fit."""
    ip = _ip_int(clean["ip"])
    mask = _ip_int(clean["netmask"])
    host = ip & ~mask & 0xFFFFFFFF
    top = ip >> 24
    if "ip" not in errors:
        message = None
        if top == 0 or top == 127 or top >= 224:
            message = "must be a normal (unicast) address"
        elif mask < 0xFFFFFFFE and (host == 0 or host == (~mask & 0xFFFFFFFF)):
            message = "is the network or broadcast address of this netmask"
        if message:
            errors["ip"] = message
            clean["ip"] = base.get("ip", DEFAULTS["ip"])
            ip = _ip_int(clean["ip"])
    gw = _ip_int(clean["gateway"])
    if "gateway" not in errors and gw != 0 and (gw & mask) != (ip & mask):
        errors["gateway"] = "must be in the same network as the address (or 0.0.0.0)"
        clean["gateway"] = base.get("gateway", DEFAULTS["gateway"])


def _unquote(text, lineno, warnings):
    """Parse a TOML basic ("...") or literal ('...') string at the start of text.

    Returns (value, rest) or (None, None) after adding a warning.
    """
    quote = text[0]
    out = []
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
                    out.append(chr(int(digits, 16)))
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


def _value(text, lineno, warnings):
    """Parse the value part of one line (comments allowed after it)."""
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
            return sign * int(digits[2:], 16)
        if digits and digits.isdigit():
            return sign * int(digits)
    except ValueError:
        pass
    warnings.append("line %d: cannot read the value %r" % (lineno, text[:20]))
    return None


def parse(text):
    """Read settings.toml text. Returns (dict, warnings); never raises on bad text.

    The dict holds every key = value line that could be read (ours and unknown ones, such
    as CircuitPython's CIRCUITPY_* keys); warnings is a list of English lines for the
    lines that could not be read, tables, duplicates and unknown keys.
    """
    d = {}
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
        value = _value(line[eq + 1:], lineno, warnings)
        if value is None:
            continue
        if key in d:
            warnings.append("line %d: %s is set twice; the last one is used" % (lineno, key))
        elif key not in DEFAULTS and key[:10] != "CIRCUITPY_":
            warnings.append("line %d: unknown setting %s (ignored)" % (lineno, key))
        d[key] = value
    return d, warnings


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


def serialise(d, extra=None):
    """Settings dict -> settings.toml text: every known key in table order, commented.

    extra: optional dict of other keys to keep (e.g. CIRCUITPY_* lines), written at the end.
    """
    lines = [
        "# HAN2X settings. Edit by hand or on the web page; see docs/settings.md.",
        "# A bad value is replaced by its default and reported on the web page.",
        "",
    ]
    for key, kind, a, b, comment in SCHEMA:
        lines.append("# " + comment)
        lines.append("%s = %s" % (key, format_value(d.get(key, DEFAULTS[key]))))
    if extra:
        lines.append("")
        for key in sorted(extra):
            if key not in DEFAULTS:
                lines.append("%s = %s" % (key, format_value(extra[key])))
    lines.append("")
    return "\n".join(lines)


def from_text(text):
    """parse + validate: (clean settings, extra keys, warnings). Bad fields get defaults."""
    d, warnings = parse(text)
    clean, errors = validate(d)
    for key, _, _, _, _ in SCHEMA:
        if key in errors:
            warnings.append("%s %s; using %s" % (key, errors[key], format_value(clean[key])))
    extra = {}
    for key in d:
        if key not in DEFAULTS and key[:10] == "CIRCUITPY_":
            extra[key] = d[key]
    return clean, extra, warnings
