"""One settings schema (issue 13, part 4): settings.SCHEMA is the home of every key's kind,
choices and page group. What cannot load it on the board (the settings page, the HAN
reader, the network, the tariff) holds a derived copy or gets the validated value, and
these tests fail when a copy drifts or the schema gets loaded where it must not."""

import re
import subprocess
import sys

import pytest

from support.net_helpers import make_network, run
from support.webdevice import Device
from tools.sim.dhcp_server import DhcpServer
from han2x_core import settings as S
from han2x_core import webfields
from han2x_core.app import App
from han2x_core.registers import Registers
from support.fakes._state import load
from han2x_core.han_reader import HanReader
from han2x_core.han_uart import PioReceiver, UartReceiver
from han2x_core.tariff import steps_of
from tools import webfields as derive

CHOICES = {key: a for key, kind, a, _b, _g, _c in S.SCHEMA if kind == S._ENUM}


def test_the_form_is_derived_from_the_schema():
    assert webfields.FIELDS == derive.form_fields(S)
    assert derive.main(["--check"]) == 0
    on_page = [key for _, fields in webfields.FIELDS for key, _k, _c in fields]
    assert sorted(on_page) == sorted(k for k, *_, g, _c in S.SCHEMA if g is not None)
    assert "sunspec_model" not in on_page  # settings.toml only


def test_a_changed_choice_list_makes_a_different_form(monkeypatch):
    schema = tuple(("han_line", S._ENUM, ("auto", "8E1", "8N1", "7E1"), None, "han", "")
                   if e[0] == "han_line" else e for e in S.SCHEMA)
    monkeypatch.setattr(S, "SCHEMA", schema)
    assert derive.form_fields(S) != webfields.FIELDS


@pytest.fixture
def dev(tmp_path):
    d = Device(tmp_path, modbus=False)
    yield d
    d.close()


@pytest.mark.parametrize("lang", ["en", "nb"])
def test_the_settings_page_offers_exactly_the_schema_choices(dev, lang):
    status, _h, body = dev.get("/settings?lang=" + lang)
    assert status == 200
    page = body.decode()
    selects = dict(re.findall(r'<select id="(\w+)" name="\w+">(.*?)</select>', page, re.S))
    assert set(selects) == set(CHOICES)
    for key, choices in CHOICES.items():
        options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', selects[key])
        assert tuple(v for v, _label in options) == choices, key
        for value, label in options:  # each has its own text (www/en.txt, nb.txt)
            assert label and label != "o_" + value.lower(), (key, value, label)


def test_every_choice_has_a_text_in_both_languages():
    for lang in ("en", "nb"):
        with open("han2x_core/www/%s.txt" % lang, encoding="utf-8") as f:
            keys = {line.split("=", 1)[0] for line in f if "=" in line}
        for choices in CHOICES.values():
            assert {"o_" + c.lower() for c in choices} <= keys, lang


def test_a_refused_choice_gets_the_norwegian_choice_message():
    for key in CHOICES:
        assert webfields.error_key(key, "must be one of: x") == "e_choice"
    assert webfields.error_key("hostname", "must be at most 63 characters") == "e_hostname"


def _receiver(kind, pin, line, polarity):  # the real receivers on the fake hardware
    if kind == "uart":
        return UartReceiver(pin, line, busio=load("busio"))
    return PioReceiver(pin, line, polarity, rp2pio=load("rp2pio"))


def test_the_han_reader_takes_exactly_the_schema_line_formats_and_polarities():
    lines = tuple(c for c in CHOICES["han_line"] if c != "auto")
    polarities = tuple(c for c in CHOICES["han_polarity"] if c != "auto")
    reader = HanReader(load("microcontroller").Pin._make("GP1", 1), make_receiver=_receiver)
    reader.configure({"han_input": "pio", "han_line": "auto", "han_polarity": "auto"})
    assert sorted(reader.candidates) == sorted((ln, p) for ln in lines for p in polarities)
    for line in lines:
        for polarity in polarities:
            reader.configure({"han_input": "pio", "han_line": line, "han_polarity": polarity})
            assert reader.candidates == [(line, polarity)]
            assert (reader.receiver.line, reader.receiver.polarity) == (line, polarity)
    assert set(CHOICES["han_input"]) == {"pio", "uart"}
    reader.configure({"han_input": "uart", "han_line": "auto", "han_polarity": "auto"})
    assert sorted(reader.candidates) == sorted((ln, "normal") for ln in lines)


NAME63 = "a" + "b" * 61 + "c"


def test_hostname_rule_at_63_and_64_characters_in_settings():
    clean, errors = S.validate({"hostname": NAME63})
    assert errors == {} and clean["hostname"] == NAME63
    clean, errors = S.validate({"hostname": NAME63 + "d", "mqtt_client_id": NAME63 + "d"})
    assert errors == {"hostname": "must be at most 63 characters",
                      "mqtt_client_id": "must be at most 63 characters"}
    assert clean["hostname"] == ""  # the default is kept
    for bad, message in (("han_2x", "letters"), ("-han2x", "start or end"), ("hæn", "letters")):
        assert message in S.validate({"hostname": bad})[1]["hostname"]


@pytest.fixture
def dhcp_server():
    srv = DhcpServer()
    yield srv
    srv.stop()


def test_the_network_sends_all_63_characters_and_a_64th_is_refused(dhcp_server):
    """The network sends the validated name whole (no cut at 32 any more); a longer one
    is refused by validation with its message and the network keeps what it has."""
    settings, _ = S.validate({"dhcp": True, "hostname": NAME63.upper()})
    model, net = make_network(settings=settings)
    model.udp_map[67] = dhcp_server.port
    app = App(None, Registers(1000, 10), 0, settings=settings)
    app.add(net)
    assert run([net], 5.0, until=lambda: net.mode == "dhcp")
    assert dhcp_server.log[0][2] == NAME63 == net.hostname  # nothing cut
    def state():
        return net.hostname, net.ip, net.mode, net.generation, net._pending

    before = state()
    assert app.save_settings({"hostname": NAME63 + "d"}) == {
        "hostname": "must be at most 63 characters"}
    run([net], 0.5)
    assert state() == before and app.settings["hostname"] == NAME63.upper()
    assert app.save_settings({"hostname": "han2x-" + "x" * 57}) == {}  # 63 again: applied
    assert run([net], 5.0, until=lambda: net.hostname == "han2x-" + "x" * 57)
    model.close()


@pytest.mark.parametrize("text", ["2 5 10 15 20 25 50 75 100", "2,5; 7.125 10", "0.001 1.1",
                                  " 1.50  2.500 99999.999 "])
def test_the_tariff_reads_the_steps_as_validation_left_them(text):
    clean, errors = S.validate({"tariff_steps": text})
    assert errors == {} and steps_of(clean["tariff_steps"]) == S.steps_w(text)


def test_the_tariff_does_not_load_the_schema():
    """With the tariff on, configuring (at start and after every save) never loads the
    ~10 KB schema: a fresh interpreter fails if anything imports settings.py."""
    code = (
        "import sys; sys.path.insert(0, '.'); from tools import _host\n"
        "import builtins; real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name == 'han2x_core.settings' or (name == 'han2x_core' and a[2:3] and\n"
        "            'settings' in (a[2] or ())):\n"
        "        raise AssertionError('settings.py imported')\n"
        "    return real(name, *a, **k)\n"
        "from han2x_core.app import App\n"
        "from han2x_core.registers import Registers\n"
        "s = {'tariff': True, 'tariff_peaks': 2, 'tariff_steps': '1 2.5 7', "
        "'scaling_factor': 1000}\n"
        "app = App(None, Registers(1000, 10), 0, settings=s)\n"
        "builtins.__import__ = guard\n"
        "app.configure(s)\n"
        "assert app.tariff is not None and app.tariff.steps == (1000, 2500, 7000)\n"
        "assert app.tariff.n == 2 and 'han2x_core.settings' not in sys.modules\n"
        "print('ok')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr
