"""settings.py and storage.py on the MicroPython VM (plain test_* functions)."""

from han2x_core import settings as S
from han2x_core import settings_toml as T
from han2x_core.settings_write import serialise
from han2x_core.storage import SettingsStore, seal, unseal


def test_defaults_valid():
    clean, errors = S.validate(S.DEFAULTS)
    assert errors == {}
    assert clean == S.DEFAULTS


def test_form_strings():
    clean, errors = S.validate({"modbus_port": "1502", "dhcp": "on", "han_line": "8n1",
                                "ip": "10.0.0.9", "gateway": "10.0.0.1"})
    assert errors == {}
    assert clean["modbus_port"] == 1502 and clean["dhcp"] is True
    assert clean["han_line"] == "8N1" and clean["ip"] == "10.0.0.9"


def test_bad_fields():
    clean, errors = S.validate({"modbus_port": 0, "netmask": "255.0.255.0", "ip": "1.2.3"})
    assert sorted(errors) == ["ip", "modbus_port", "netmask"]
    assert clean["modbus_port"] == 502


def test_round_trip():
    d = dict(S.DEFAULTS)
    d["web_password"] = 'a"b\\c \u00e6'
    d["dhcp"] = True
    text = serialise(d, {"CIRCUITPY_PYSTACK_SIZE": 1536})
    back, warnings = T.parse(text)
    assert warnings == []
    assert back.pop("CIRCUITPY_PYSTACK_SIZE") == 1536
    assert back == d


def test_parse_bad_lines():
    d, warnings = T.parse('x\nmodbus_port = 5o2\nip = "a\nweb_port = 81\n[t]\nlanguage = "en"\n')
    assert d == {"web_port": 81}
    assert len(warnings) == 4


def test_seal():
    data = seal("a = 1\n")
    assert unseal(data) == "a = 1\n"
    assert unseal(data[:-3]) is None


def test_store_on_real_files():
    import os

    path = "/tmp/han2x_mpy_settings_%d.toml" % id(S)
    for p in (path, path + ".new"):
        try:
            os.remove(p)
        except OSError:
            pass
    store = SettingsStore(path)
    assert store.load() == (S.DEFAULTS, None)
    d = dict(S.DEFAULTS)
    d["modbus_port"] = 1502
    store.save(d)
    assert SettingsStore(path).load() == (d, None)
    os.remove(path)


def test_zz_release_modules():
    """Runs last in this file: drop han2x_core.storage from the shared heap (the runner keeps
    one process for every file; the modules tested later do not need this one)."""
    import sys

    import han2x_core

    sys.modules.pop("han2x_core.storage", None)
    try:
        delattr(han2x_core, "storage")
    except AttributeError:
        pass
