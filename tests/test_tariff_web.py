"""The capacity tariff on the web (docs/tariff.md, docs/web.md): real Aidon frames into the
device, the dashboard card, /api/status "tariff" with its documented names, the settings
page's peak editor (POST /tariff: saved at once to the state file, bad input refused and
nothing lost), and turning the setting off."""

import json
import sys

import pytest

from han2x_core import energystate
from support.webdevice import Device

T13 = "aidon-6534-l3-elwiz-20221012T130000"  # 163 607 700 Wh at 13:00
T16 = "aidon-6534-l3-elwiz-20221012T160000"  # 163 613 870 Wh at 16:00


@pytest.fixture
def dev(tmp_path):
    d = Device(tmp_path, settings={"tariff": True})
    d.app.restore_energy(str(tmp_path / "energy_state.txt"))
    yield d
    d.close()


def status(dev):
    code, _h, body = dev.get("/api/status")
    assert code == 200
    return json.loads(body)["tariff"]


def test_dashboard_status_and_the_peak_editor(dev, tmp_path):
    dev.feed(T13)
    dev.feed(T16)  # 3 hours without a total: 6170 Wh shared, 2056 + 2056 + 2058 (the rest
    s = status(dev)  # to the last hour, 15-16), one day: its highest
    assert s["peaks"] == [{"date": "2022-10-12", "hour": 15, "kwh": 2.058, "counted": True}]
    assert s["average_kw"] == 2.058
    assert s["step"] == {"from_kw": 2.0, "to_kw": 5.0, "index": 2}
    for key in ("hour_used_kwh", "hour_estimate_kwh", "kwh_left"):
        assert isinstance(s[key], float)
    # one peak day, today: this hour as today's peak is the month's value alone, so it may
    # reach 5 kWh (the next step's threshold): left = 5 - used
    assert s["kwh_left"] == round(5.0 - s["hour_used_kwh"], 3)
    code, _h, page = dev.get("/")
    assert code == 200 and b'id="tariff"' in page and b'data-k="tar.kwh_left"' in page
    assert b"2022-10-12" in page
    code, _h, page = dev.get("/settings")
    assert b'id="tariff-peaks"' in page and b'name="k0" value="2.058"' in page
    csrf = dev.csrf()
    form = {"csrf": csrf, "d0": "12", "h0": "14", "k0": "2,5", "d1": "3", "h1": "18",
            "k1": "4.125"}
    code, _h, body = dev.post_form("/tariff", form)
    assert code == 200 and b"tariff-answer" in body
    s = status(dev)
    assert [(p["date"], p["hour"], p["kwh"]) for p in s["peaks"]] == [
        ("2022-10-03", 18, 4.125), ("2022-10-12", 14, 2.5)]
    saved = energystate.load(str(tmp_path / "energy_state.txt"))[0][4]
    assert saved[7:] == [318, 4125, 1214, 2500]
    for bad in ({"d0": "32", "h0": "1", "k0": "1"}, {"d0": "1", "h0": "24", "k0": "1"},
                {"d0": "1", "h0": "1", "k0": "1.2345"}, {"d0": "x", "h0": "1", "k0": "1"}):
        code, _h, body = dev.post_form("/tariff", dict(bad, csrf=csrf))
        assert code == 422, bad
        assert len(status(dev)["peaks"]) == 2  # nothing lost
    assert dev.post_form("/tariff", {"csrf": "0" * 32, "clear": "on"})[0] == 403
    assert dev.post_form("/tariff", {"csrf": csrf, "clear": "on"})[0] == 200
    assert status(dev)["peaks"] == []


def test_turned_off_on_the_settings_page_the_card_and_module_go(dev):
    dev.feed(T13)
    csrf = dev.csrf()
    code, _h, _b = dev.post_form("/settings", dict(dev.settings_form(tariff=None), csrf=csrf))
    assert code == 303 and dev.app.settings["tariff"] is False
    assert status(dev) is None
    code, _h, page = dev.get("/")
    assert b'id="tariff"' not in page
    assert "han2x_core.tariff" not in sys.modules and "han2x_core.webtariff" not in sys.modules
    assert dev.post_form("/tariff", {"csrf": csrf, "clear": "on"})[0] == 404
