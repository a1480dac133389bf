"""settings.py: schema, validation, the settings.toml subset, round trips."""

import os
import re
import tomllib

import pytest

from han2x_core import settings as S
from han2x_core.settings import DEFAULTS, validate
from han2x_core.settings_toml import from_text, parse
from han2x_core.settings_write import serialise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_match_the_architecture_table():
    with open(os.path.join(ROOT, "docs", "architecture.md")) as f:
        text = f.read()
    table = text.split("## Settings", 1)[1].split("##", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| (.*?) \|", table, re.M)
    assert rows, "settings table not found"
    documented = {}
    for key, kind, default in rows:
        if kind == "bool":
            documented[key] = default == "true"
        elif kind == "int":
            documented[key] = int(default)
        else:
            documented[key] = default.strip('"')
    assert documented == DEFAULTS
    assert [k for k, *_ in S.SCHEMA] == list(DEFAULTS)


def test_defaults_validate_clean():
    clean, errors = validate(DEFAULTS)
    assert errors == {}
    assert clean == DEFAULTS


@pytest.mark.parametrize("key,value,expected", [
    ("dhcp", "on", True), ("dhcp", "false", False), ("dhcp", 1, True), ("dhcp", True, True),
    ("modbus_port", "1502", 1502), ("modbus_port", 65535, 65535), ("modbus_port", " 1 ", 1),
    ("modbus_max_clients", 5, 5), ("modbus_idle_timeout_s", 5, 5),
    ("modbus_unit_id", 255, 255), ("scaling_factor", "1000000", 1000000),
    ("scaling_factor", 10, 10), ("han_line", "8n1", "8N1"), ("han_polarity", "Inverted",
                                                            "inverted"),
    ("han_input", "uart", "uart"), ("web_protect", "all", "all"), ("language", "nb", "nb"),
    ("ip", " 10.0.0.5 ", "10.0.0.5"), ("ip", "192.168.001.010", "192.168.1.10"),
    ("hostname", "han2x-garage", "han2x-garage"), ("hostname", "", ""),
    ("web_password", 'p"a\\ss word', 'p"a\\ss word'),
    ("mqtt_host", " 192.168.1.10 ", "192.168.1.10"), ("mqtt_port", "8883", 8883),
    ("mqtt_user", "han2x", "han2x"), ("mqtt_password", "s e\"cret", "s e\"cret"),
    ("mqtt_client_id", "han2x-attic", "han2x-attic"), ("mqtt_prefix", "home/ams", "home/ams"),
    ("mqtt_discovery_prefix", "", ""), ("mqtt_interval_s", 3600, 3600),
])
def test_good_values(key, value, expected):
    d = dict(DEFAULTS)
    d[key] = value
    if key == "ip":
        d["gateway"] = "0.0.0.0"
    clean, errors = validate(d)
    assert errors == {}
    assert clean[key] == expected


@pytest.mark.parametrize("key,value,words", [
    ("dhcp", "maybe", "true or false"), ("dhcp", 2, "true or false"),
    ("modbus_port", 0, "1 to 65535"), ("modbus_port", 65536, "1 to 65535"),
    ("modbus_port", "80a", "whole number"), ("modbus_port", 5.0, "whole number"),
    ("modbus_port", True, "whole number"), ("modbus_port", "", "whole number"),
    ("modbus_max_clients", 6, "1 to 5"), ("modbus_max_clients", 0, "1 to 5"),
    ("modbus_idle_timeout_s", 4, "5 to 3600"), ("modbus_idle_timeout_s", 3601, "5 to 3600"),
    ("modbus_unit_id", 256, "0 to 255"), ("modbus_unit_id", -1, "0 to 255"),
    ("scaling_factor", 9, "10 to 1000000"), ("scaling_factor", 1000001, "10 to 1000000"),
    ("han_line", "7E1", "auto, 8E1, 8N1"), ("han_polarity", "", "one of"),
    ("han_input", "usb", "pio, uart"), ("web_protect", "none", "one of"),
    ("language", "de", "one of"),
    ("ip", "192.168.1", "IPv4"), ("ip", "192.168.1.256", "IPv4"), ("ip", "a.b.c.d", "IPv4"),
    ("ip", "1.2.3.4.5", "IPv4"), ("ip", 3232235752, "text"), ("ip", "192.168.1.-1", "IPv4"),
    ("ip", "0.1.2.3", "unicast"), ("ip", "127.0.0.1", "unicast"), ("ip", "224.0.0.1", "unicast"),
    ("ip", "192.168.1.0", "network or broadcast"), ("ip", "192.168.1.255", "broadcast"),
    ("netmask", "255.0.255.0", "netmask"), ("netmask", "0.0.0.0", "netmask"),
    ("netmask", "255.255.255.1", "netmask"), ("gateway", "10.0.0.1", "same network"),
    ("dns", "x", "IPv4"), ("dns", "", "0.0.0.0 means none"),
    ("gateway", "abc", "0.0.0.0 means none"), ("scaling_factor", "2.5", "2500 means x2.5"),
    ("hostname", "bad_name", "letters"), ("hostname", "-x", "start or end"),
    ("hostname", "a" * 64, "63"), ("hostname", "bl\u00e5", "letters"),
    ("web_password", "x" * 65, "64"), ("web_password", "a\nb", "control"),
    ("mqtt_host", "broker.lan", "IPv4"), ("mqtt_port", 0, "1 to 65535"),
    ("mqtt_password", "a\tb", "control"), ("mqtt_client_id", "han2x_x", "letters"),
    ("mqtt_prefix", "han2x/#", "'+' or '#'"), ("mqtt_prefix", "/han2x", "start or end"),
    ("mqtt_prefix", "a//b", "'//'"), ("mqtt_discovery_prefix", "home assistant", "spaces"),
    ("mqtt_interval_s", 3601, "0 to 3600"),
])
def test_bad_value_keeps_old_and_says_why(key, value, words):
    old = dict(DEFAULTS)
    d = dict(DEFAULTS)
    d[key] = value
    clean, errors = validate(d, old)
    assert list(errors) == [key]
    assert words in errors[key]
    assert clean[key] == old[key]


def test_bad_field_keeps_old_value_not_default():
    old = dict(DEFAULTS, modbus_port=1502)
    clean, errors = validate({"modbus_port": "x", "web_port": 8080}, old)
    assert clean["modbus_port"] == 1502 and clean["web_port"] == 8080
    assert list(errors) == ["modbus_port"]


def test_netmask_contiguity_all_prefixes():
    for bits in range(1, 33):
        m = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
        text = ".".join(str((m >> s) & 255) for s in (24, 16, 8, 0))
        assert S._check("netmask", S._MASK, None, None, text)[1] is None, text


def test_point_to_point_masks_allow_any_host():
    clean, errors = validate(dict(DEFAULTS, ip="10.0.0.0", netmask="255.255.255.254",
                                  gateway="10.0.0.1"))
    assert errors == {}


def test_unknown_keys_are_ignored_by_validate():
    clean, errors = validate({"bogus": 1, "modbus_port": 1502})
    assert errors == {} and "bogus" not in clean and clean["modbus_port"] == 1502


def test_parse_the_subset():
    text = (
        "\ufeff# comment\n"
        'ip = "10.1.2.3"   # trailing comment\n'
        "  modbus_port=1_502\n"
        "dhcp = true\n"
        "web_password = \"a \\\"q\\\" \\\\ \\u00e6 # not a comment\"\n"
        "hostname = 'lit\\eral'\n"
        "scaling_factor = +1000\n"
        "CIRCUITPY_PYSTACK_SIZE = 0x600\n"
        "\n"
    )
    d, warnings = parse(text)
    assert warnings == []
    assert d == {"ip": "10.1.2.3", "modbus_port": 1502, "dhcp": True,
                 "web_password": 'a "q" \\ \u00e6 # not a comment', "hostname": "lit\\eral",
                 "scaling_factor": 1000, "CIRCUITPY_PYSTACK_SIZE": 0x600}


def test_parse_warns_but_never_raises():
    text = (
        "no equals sign\n"
        "= 5\n"
        'ip = "unterminated\n'
        "modbus_port = 5o2\n"
        'x = "a" b\n'
        "favourite = 3\n"
        "web_port = 81\nweb_port = 82\n"
        'bad = "\\q"\n'
        "[table]\nlanguage = \"en\"\n"
    )
    d, warnings = parse(text)
    assert d == {"favourite": 3, "web_port": 82}
    joined = "\n".join(warnings)
    for line in (1, 2, 3, 4, 5, 6, 8, 9, 10):
        assert "line %d:" % line in joined
    assert "unknown setting favourite" in joined and "set twice" in joined
    assert "tables" in joined


def test_parse_random_garbage_never_raises():
    import random

    rnd = random.Random(4)
    alphabet = 'ab=_"\'#\\\n []01xu-+. \t\u00e6'
    for _ in range(2000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(60)))
        d, warnings = parse(text)
        clean, errors = validate(d)
        assert set(clean) == set(DEFAULTS)


def test_serialise_round_trip_and_is_real_toml():
    d = dict(DEFAULTS, dhcp=True, web_password='we"ird\\ \u00e6\u00f8', hostname="h-1",
             scaling_factor=1000000, modbus_unit_id=0)
    text = serialise(d, {"CIRCUITPY_PYSTACK_SIZE": 1536})
    back, warnings = parse(text)
    assert warnings == []
    assert back.pop("CIRCUITPY_PYSTACK_SIZE") == 1536
    assert back == d
    assert tomllib.loads(text) == dict(d, CIRCUITPY_PYSTACK_SIZE=1536)
    clean, extra, warnings = from_text(text)
    assert clean == d and extra == {"CIRCUITPY_PYSTACK_SIZE": 1536} and warnings == []


def test_from_text_bad_values_get_defaults_with_warnings():
    clean, extra, warnings = from_text('modbus_port = 0\nip = "1.2.3"\nweb_port = 8080\n')
    assert clean["modbus_port"] == 502 and clean["ip"] == DEFAULTS["ip"]
    assert clean["web_port"] == 8080
    assert len(warnings) == 2 and "modbus_port must be from 1 to 65535; using 502" in warnings


def test_web_port_equal_to_modbus_port_is_refused_even_in_a_hand_edited_file():
    clean, errors = validate(dict(DEFAULTS, web_port=502))
    assert errors == {"web_port": "must differ from the Modbus port"}
    assert clean["web_port"] == 80 and clean["modbus_port"] == 502
    # the default web port clashing with a hand-set Modbus port still leaves two ports
    clean, errors = validate(dict(DEFAULTS, modbus_port=80))
    assert "web_port" in errors and clean["web_port"] != clean["modbus_port"]
    # with valid old settings the old web port is kept
    clean, errors = validate(dict(DEFAULTS, web_port=8080, modbus_port=8080), DEFAULTS)
    assert (clean["web_port"], clean["modbus_port"]) == (80, 8080)


def test_a_bad_web_port_falling_back_onto_the_modbus_port_is_resolved():
    """settings.toml with web_port = 0 (bad: the default 80 is used) and modbus_port = 80:
    both servers would want port 80. The Modbus port falls back as well, with a warning."""
    from han2x_core.settings_toml import from_text

    clean, _extra, warnings = from_text("web_port = 0\nmodbus_port = 80\n")
    assert clean["web_port"] != clean["modbus_port"]
    assert (clean["web_port"], clean["modbus_port"]) == (80, 502)
    assert any(w.startswith("web_port ") for w in warnings)
    assert any(w.startswith("modbus_port must differ from the web port") for w in warnings)


@pytest.mark.parametrize("stream,mqtt,most,key", [
    (3001, "", 3, "e_sockets"), (0, "192.168.1.10", 4, "e_sockets_mqtt"),
    (3001, "192.168.1.10", 2, "e_sockets_both")])
def test_socket_budget_for_each_combination(stream, mqtt, most, key):
    """One rule (settings.sockets_needed, 8 W5500 sockets): the HAN stream takes 2, MQTT 1.
    The message names the limit and what is on, in English and on the Norwegian page."""
    from han2x_core import webfields
    from han2x_core.i18n import tr

    d = dict(DEFAULTS, han_stream_port=stream, mqtt_host=mqtt, modbus_max_clients=most)
    assert validate(d) == (d, {}) and S.sockets_needed(d) == S.W5500_SOCKETS
    clean, errors = validate(dict(d, modbus_max_clients=most + 1))
    assert list(errors) == ["modbus_max_clients"] and clean["modbus_max_clients"] == most
    message = errors["modbus_max_clients"]
    assert message.startswith("must be at most %d with " % most)
    assert ("HAN stream" in message) == bool(stream) and ("MQTT" in message) == bool(mqtt)
    assert webfields.error_key("modbus_max_clients", message) == key
    for lang in ("en", "nb"):
        assert tr(key, lang).endswith(" %d" % most)
        assert ("MQTT" in tr(key, lang)) == bool(mqtt)
    assert S.sockets_needed(dict(DEFAULTS, modbus_max_clients=5)) == S.W5500_SOCKETS


def test_the_web_server_applies_the_socket_rule_without_loading_settings():
    """The rule's home is netio.py (resident on the board); settings.py re-exports it.
    The web server's configure() applies it without importing settings.py, which the board
    loads only to read or write settings.toml (12.7 KB of its heap, measured on
    CircuitPython 10.2.1). A fresh interpreter, so no other test's import counts."""
    import subprocess
    import sys

    from han2x_core import netio
    from support.util import ROOT

    assert S.sockets_needed is netio.sockets_needed
    assert S.W5500_SOCKETS == netio.W5500_SOCKETS == 8
    script = (
        "import socket, sys\n"
        "from han2x_core.settings import DEFAULTS\n"
        "from han2x_core import unload\n"
        "from han2x_core.app import App\n"
        "from han2x_core.registers import Registers\n"
        "from han2x_core.web import WebServer\n"
        "s = dict(DEFAULTS, mqtt_host='192.168.1.10')\n"
        "unload('settings', 'settings_toml')\n"
        "app = App(None, Registers(), 0, settings=s)\n"
        "web = WebServer(socket, app, max_clients=3)\n"
        "web.configure(s)\n"
        "print(web.budget, 'han2x_core.settings' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.split() == ["1", "False"], out.stderr  # 1 + 8 - (1 + 1 + 4 + 1 + 1)
