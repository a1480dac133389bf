"""Settings schema, defaults and validation.

The key table is in docs/architecture.md and docs/settings.md; the settings.toml text
format is settings_toml.py. Pure core: no files, no clock.
"""

from micropython import const

# The W5500 socket budget rule lives with the listeners (resident on the board, while this
# module is loaded only to read or write settings); here for validate() and the tests.
from han2x_core.netio import W5500_SOCKETS, sockets_needed  # noqa: F401

_BOOL = const(0)
_INT = const(1)
_ENUM = const(2)
_IP = const(3)
_MASK = const(4)
_HOST = const(5)
_TEXT = const(6)
_STEPS = const(7)
_IPOPT = const(8)  # an IPv4 address or "" (off)
_TOPIC = const(9)  # an MQTT topic prefix: no wildcards, no leading or trailing '/'
_SECRET = const(10)  # text like _TEXT, never shown: a password box on the settings page

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
    "modbus_read_only": False,
    "sunspec_model": 0,
    "em24_unit": 0,
    "sdm630_unit": 0,
    "scaling_factor": 1000,
    "han_line": "auto",
    "han_polarity": "auto",
    "han_input": "pio",
    "han_stream_port": 0,
    "web_port": 80,
    "web_password": "",
    "web_protect": "settings",
    "language": "auto",
    "tariff": False,
    "tariff_peaks": 3,
    "tariff_steps": "2 5 10 15 20 25 50 75 100",
    "mqtt_host": "",
    "mqtt_port": 1883,
    "mqtt_user": "",
    "mqtt_password": "",
    "mqtt_client_id": "",
    "mqtt_prefix": "",
    "mqtt_discovery_prefix": "homeassistant",
    "mqtt_interval_s": 0,
}

# (key, kind, a, b, group, comment written above the key). a/b: int range or enum choices.
# group: the settings page's fieldset, None = settings.toml only. The page's form
# (webfields.FIELDS) is derived from this table by tools/webfields.py, so that showing the
# page never loads this module; tests/test_schema.py fails when the two differ.
SCHEMA = (
    ("dhcp", _BOOL, None, None, "net",
     "true = get the address by DHCP; false = the static one below"),
    ("ip", _IP, None, None, "net", "static IPv4 address"),
    ("netmask", _MASK, None, None, "net", "static netmask"),
    ("gateway", _IP, None, None, "net", "default gateway (0.0.0.0 = none)"),
    ("dns", _IP, None, None, "net", "DNS server (0.0.0.0 = none)"),
    ("hostname", _HOST, None, None, "net", 'DHCP host name; "" = han2x-XXXXXX from the MAC'),
    ("modbus_port", _INT, 1, 65535, "modbus", "Modbus TCP port"),
    ("modbus_max_clients", _INT, 1, 5, "modbus", "simultaneous Modbus clients (1..5)"),
    ("modbus_idle_timeout_s", _INT, 5, 3600, "modbus", "close a Modbus client idle this long (s)"),
    ("modbus_unit_id", _INT, 0, 255, "modbus", "0 = answer any unit id; 1..255 = only that one"),
    ("modbus_read_only", _BOOL, None, None, "modbus",
     "true = refuse every Modbus write (the scaling factor is set here or on the web page)"),
    ("sunspec_model", _INT, 0, 213, None,
     "SunSpec meter at protocol address 40000: 0 = off, 203 (int) or 213 (float)"),
    ("em24_unit", _INT, 0, 247, None, "Carlo Gavazzi EM24 map on this unit id; 0 = off"),
    ("sdm630_unit", _INT, 0, 247, None, "Eastron SDM630 map on this unit id; 0 = off"),
    ("scaling_factor", _INT, 10, 1000000, "modbus", "power/current/energy factor, 1000 = x1.000"),
    ("han_line", _ENUM, ("auto", "8E1", "8N1"), None, "han", "HAN line format: auto, 8E1, 8N1"),
    ("han_polarity", _ENUM, ("auto", "normal", "inverted"), None, "han",
     "HAN signal polarity: auto, normal, inverted"),
    ("han_input", _ENUM, ("pio", "uart"), None, "han", "HAN receiver: pio or uart (busio)"),
    ("han_stream_port", _INT, 0, 65535, "han",
     "raw HAN stream for Home Assistant's amshan (TCP port; 0 = off, 3001 suggested)"),
    ("web_port", _INT, 1, 65535, "web", "web page port"),
    ("web_password", _SECRET, None, None, "web", 'web password; "" = none'),
    ("web_protect", _ENUM, ("settings", "all"), None, "web", "what the password protects"),
    ("language", _ENUM, ("auto", "nb", "en"), None, "web", "web page language: auto, nb, en"),
    ("tariff", _BOOL, None, None, "tariff",
     "capacity tariff (effekttrinn) on the page and registers"),
    ("tariff_peaks", _INT, 1, 5, "tariff",
     "capacity tariff: highest hours (different days) averaged"),
    ("tariff_steps", _STEPS, None, None, "tariff",
     "capacity tariff: step thresholds in kW, ascending"),
    ("mqtt_host", _IPOPT, None, None, "mqtt", 'MQTT broker IPv4; "" = off'),
    ("mqtt_port", _INT, 1, 65535, "mqtt", "MQTT port"),
    ("mqtt_user", _TEXT, None, None, "mqtt", "MQTT user"),
    ("mqtt_password", _SECRET, None, None, "mqtt", "MQTT password"),
    ("mqtt_client_id", _HOST, None, None, "mqtt", '"" = host name'),
    ("mqtt_prefix", _TOPIC, None, None, "mqtt", '"" = han2x/<meter id>'),
    ("mqtt_discovery_prefix", _TOPIC, None, None, "mqtt", '"" = no discovery'),
    ("mqtt_interval_s", _INT, 0, 3600, "mqtt", "power: 0 = every telegram, else every N s"),
)

_STEPS_MAX = const(16)


def steps_w(text):
    """Step thresholds "2 5 10" or "2,5; 2.5 ..." (kW, ascending, up to 3 decimals) as a
    tuple of W, or None when the text is not such a list (docs/tariff.md)."""
    if not isinstance(text, str):
        return None
    out = []  # type: list
    for part in text.replace(",", " ").replace(";", " ").split():
        whole, dot, frac = part, "", ""
        cut = part.find(".")
        if cut >= 0:
            whole, dot, frac = part[:cut], ".", part[cut + 1:]
        if not digits(whole, 6) or len(frac) > 3 or (dot and not digits(frac, 3)):
            return None
        w = int(whole) * 1000 + (int(frac + "00"[:3 - len(frac)]) if frac else 0)
        if w <= 0 or w > 100000000 or (out and w <= out[-1]):
            return None
        out.append(w)
    if not out or len(out) > _STEPS_MAX:
        return None
    return tuple(out)

def _hint(key):
    """Appended to a key's message when its value is refused: what the number or 0.0.0.0
    means (a function, not a table: nothing resident for a rare error)."""
    if key == "scaling_factor":
        return " (1000 = x1, so 2500 means x2.5)"
    return " (0.0.0.0 means none)" if key in ("dns", "gateway") else ""


_TRUE = ("true", "1", "on", "yes")


def digits(text, most=10):
    """True for 1..most ASCII digits (str.isdigit() takes '²', which int() refuses, and
    CPython's int() refuses 5000 digits)."""
    return 0 < len(text) <= most and not text.strip("0123456789")
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
        if not digits(part, 3):
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
            number = v[1:] if v[:1] in ("-", "+") else v
            if not digits(number):
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
    if kind == _HOST:  # the one host name rule: a DNS label (docs/network.md)
        if len(value) > 63:
            return None, "must be at most 63 characters"
        for c in value:
            if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c == "-"):
                return None, "may only contain letters a-z, digits and '-'"
        if value[:1] == "-" or value[-1:] == "-":
            return None, "must not start or end with '-'"
        return value, None
    if kind == _STEPS:
        steps = steps_w(value)
        if steps is None:
            return None, "must be 1 to 16 ascending numbers of kW, like 2 5 10 15 20"
        return " ".join(("%d.%03d" % (w // 1000, w % 1000)).rstrip("0") if w % 1000 else
                        str(w // 1000)
                        for w in steps), None
    if kind == _IPOPT:
        return ("", None) if value == "" else _check(key, _IP, a, b, value)
    if kind == _TOPIC:
        if len(value) > _TEXT_MAX:
            return None, "must be at most %d characters" % _TEXT_MAX
        for c in value:
            if ord(c) <= 32 or ord(c) > 126 or c in "+#":
                return None, "may only hold ASCII, no spaces, '+' or '#'"
        if value[:1] == "/" or value[-1:] == "/" or "//" in value:
            return None, "must not start or end with '/' or hold '//'"
        return value, None
    # _TEXT, _SECRET
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
    are not settings are ignored. web_password None (settings.toml held one that cannot be
    used: settings_toml.from_text) stays None: the protected pages stay locked.
    """
    base = old if old is not None else DEFAULTS
    clean = {}
    errors = {}
    for key, kind, a, b, _, _ in SCHEMA:
        fallback = base.get(key, DEFAULTS[key])
        if key not in d or (d[key] is None and key == "web_password"):
            clean[key] = fallback if key not in d else None
            continue
        value, message = _check(key, kind, a, b, d[key])
        if message is None:
            clean[key] = value
        else:
            errors[key] = message + _hint(key)
            clean[key] = fallback
    _check_network(clean, errors, base)
    _check_meters(clean, errors)
    _check_ports(clean, errors, base)
    _check_sockets(clean, errors)
    return clean, errors


def _check_sockets(clean, errors):
    over = sockets_needed(clean) - W5500_SOCKETS
    if over > 0:  # too many for the chip: fewer Modbus clients (clean stays usable)
        most = clean["modbus_max_clients"] - over
        if "modbus_max_clients" not in errors:
            errors["modbus_max_clients"] = (
                "must be at most %d with %s on: the W5500 has 8 sockets (docs/network.md)"
                % (most, _takers(clean)))
        clean["modbus_max_clients"] = max(most, 1)


def _takers(s):
    """The optional services that take sockets, as _check_sockets names them."""
    stream, mqtt = s.get("han_stream_port"), s.get("mqtt_host")
    if stream and mqtt:
        return "the HAN stream and MQTT"
    return "the HAN stream" if stream else "MQTT"


def _check_ports(clean, errors, base):
    """Every service on its own port; stream, web and Modbus ports must differ."""
    if clean["web_port"] == clean["modbus_port"]:
        # One port for both would leave the web page unreachable after a restart. (Also
        # when a bad web_port fell back onto the new Modbus port: clean must be usable.)
        if "web_port" not in errors:
            errors["web_port"] = "must differ from the Modbus port"
        clean["web_port"] = base.get("web_port", DEFAULTS["web_port"])
        if clean["web_port"] == clean["modbus_port"]:
            if "modbus_port" not in errors:
                errors["modbus_port"] = "must differ from the web port"
            clean["modbus_port"] = base.get("modbus_port", DEFAULTS["modbus_port"])
        if clean["web_port"] == clean["modbus_port"]:
            clean["web_port"] = DEFAULTS["web_port"]
            clean["modbus_port"] = DEFAULTS["modbus_port"]
    stream = clean["han_stream_port"]
    if stream and stream in (clean["modbus_port"], clean["web_port"]):
        if "han_stream_port" not in errors:
            errors["han_stream_port"] = "must differ from the Modbus and web ports"
        clean["han_stream_port"] = 0


def _check_meters(clean, errors):
    """The meter profiles (docs/integration.md): a known SunSpec model, unit ids of their
    own. They share the Modbus port: no sockets of their own."""
    if clean["sunspec_model"] not in (0, 203, 213):
        errors["sunspec_model"] = "must be 0 (off), 203 or 213"
        clean["sunspec_model"] = 0
    han2x = clean["modbus_unit_id"]
    for key in ("em24_unit", "sdm630_unit"):
        unit = clean[key]
        message = None
        if unit and unit == han2x:
            message = "must differ from modbus_unit_id (the HAN2X map's unit id)"
        elif unit and key == "sdm630_unit" and unit == clean["em24_unit"]:
            message = "must differ from em24_unit"
        if message:
            if key not in errors:
                errors[key] = message
            clean[key] = 0  # off rather than a map that hides another


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
