"""The web pages in a real browser: headless Chromium (Debian's /usr/bin/chromium and
chromedriver) driven by Selenium against `make run`'s device (tools/simulate.py replaying
captured Aidon frames), checked from the outside with a Modbus client (pymodbus)."""

import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from support.util import ROOT, free_port, load_corpus, wait_port

pytestmark = pytest.mark.slow

CORPUS = {c["id"]: c for c in load_corpus()}
# One Aidon 6534 meter, three hourly lists (everything: powers, phases, energies, clock).
FRAMES = ["aidon-6534-l3-amsreader-20251214T160000", "aidon-6534-l3-amsreader-20251214T170000",
          "aidon-6534-l3-amsreader-20251214T190000"]
EXPECTED = [CORPUS[f]["expected"] for f in FRAMES]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class Sim:
    """tools/simulate.py as `make run` starts it, on free ports, with its own settings file."""

    def __init__(self, tmp_path, http_port, modbus_port=None):
        capture = tmp_path / "capture.txt"
        capture.write_text("".join("# %s\n%s\n" % (f, CORPUS[f]["hex"]) for f in FRAMES))
        self.settings = tmp_path / "settings.toml"
        self.http_port = http_port
        self.modbus_port = modbus_port  # None: the settings file's
        cmd = [sys.executable, os.path.join(ROOT, "tools", "simulate.py"), "--replay",
               str(capture), "--interval", "1", "--settings", str(self.settings),
               "--http-port", str(http_port), "--quiet"]
        if modbus_port is not None:
            cmd += ["--modbus-port", str(modbus_port)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        try:
            wait_port(http_port, timeout=20)
        except TimeoutError:
            self.proc.kill()
            raise AssertionError(self.proc.communicate()[0])
        self.url = "http://127.0.0.1:%d" % http_port

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out = self.proc.communicate(timeout=10)[0]
        assert self.proc.returncode == 0, out
        return out


def chromium(lang):
    """Headless Chromium from Debian, a fresh profile, the browser language `lang`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("Debian packages chromium and chromium-driver are needed: run `make setup`")
    profile = tempfile.mkdtemp(prefix="han2x-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--user-data-dir=" + profile,
                "--window-size=1200,1000", "--lang=" + lang):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"intl.accept_languages": lang})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    return driver


@pytest.fixture(scope="module")
def browser():
    driver = chromium("en-US")
    yield driver
    driver.quit()


@pytest.fixture
def sim(tmp_path, browser):
    s = Sim(tmp_path, free_port(), free_port())
    browser.delete_all_cookies()
    yield s
    if s.proc.poll() is None:
        s.stop()


def wait_for(fn, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.1)


def shown(browser):
    """Every [data-k] element's text at one instant (one consistent status poll)."""
    return browser.execute_script(
        "var o = {}; document.querySelectorAll('[data-k]').forEach(function (e) {"
        " o[e.getAttribute('data-k')] = e.textContent; }); "
        "o._polls = document.body.getAttribute('data-polls'); return o;")


def fmt_clock(c):
    return "%04d-%02d-%02d %02d:%02d:%02d" % (c["year"], c["month"], c["day"], c["hour"],
                                               c["minute"], c["second"])


def modbus_read(port, start, count, timeout=10.0):
    """Registers start..start+count-1 over Modbus TCP; retries until `timeout`."""
    from pymodbus.client import ModbusTcpClient

    deadline = time.monotonic() + timeout
    while True:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
        try:
            if client.connect():
                result = client.read_holding_registers(start, count=count, device_id=1)
                if not result.isError():
                    return result.registers
        finally:
            client.close()
        if time.monotonic() > deadline:
            raise AssertionError("no Modbus answer on port %d" % port)
        time.sleep(0.2)


def u32(words, i):
    return words[i] << 16 | words[i + 1]


def fill(browser, field, value):
    el = browser.find_element("id", field)
    el.clear()
    el.send_keys(value)


def submit(browser, button):
    """Click a submit button and wait until the browser shows the next page."""
    browser.execute_script("window.han2xOldPage = true;")
    browser.find_element("id", button).click()
    wait_for(lambda: browser.execute_script(
        "return !window.han2xOldPage && document.readyState === 'complete';"),
        what="the page after " + button)


def save_settings(browser, **fields):
    for key, value in fields.items():
        fill(browser, key, value)
    submit(browser, "save")
    return wait_for(lambda: browser.find_elements("id", "notice"), what="the save notice")[0]


def test_dashboard_shows_the_replayed_values_and_updates(sim, browser):
    browser.get(sim.url + "/")
    browser.execute_script("window.han2xMarker = 42;")  # gone if the page reloads
    first = wait_for(lambda: (lambda s: s if s["_polls"] else None)(shown(browser)),
                     what="a status poll")
    seen = set()
    for _ in range(2):
        values = shown(browser)
        powers = [e["active_power_import_w"] for e in EXPECTED]
        shown_w = values["active_power_import_w"]
        assert shown_w in ["%d W" % p for p in powers], values
        exp = EXPECTED[["%d W" % p for p in powers].index(shown_w)]
        assert values["meter"] == "Aidon"
        assert values["meter_id"] == exp["meter_id"]
        assert values["meter_type"] == exp["meter_type"]
        assert values["voltage_l1_dv"] == "%d.%d V" % divmod(exp["voltage_l1_dv"], 10)
        assert values["current_l3_ma"] == "%d.%02d A" % (exp["current_l3_ma"] // 1000,
                                                         exp["current_l3_ma"] % 1000 // 10)
        assert values["active_energy_import_wh"] == "%d.%03d kWh" % divmod(
            exp["active_energy_import_wh"], 1000)
        assert values["meter_clock"] == fmt_clock(exp["meter_clock"])
        assert values["age_s"].endswith("s ago")
        assert values["est.active_energy_import_wh"].endswith(" kWh")
        seen.add(shown_w)
        # the page updates itself: another replayed frame shows up without a reload
        wait_for(lambda: shown(browser)["active_power_import_w"] not in seen, timeout=10,
                 what="the next telegram on the page")
    assert int(shown(browser)["_polls"]) > int(first["_polls"])
    assert browser.execute_script("return window.han2xMarker;") == 42
    samples = wait_for(lambda: browser.find_element("id", "chart").get_attribute(
        "data-samples"), what="the chart")
    assert int(samples) >= 1
    assert not any(p.is_displayed() for p in browser.find_elements("css selector",
                                                                   "[data-han]"))
    # the other pages render and refresh too
    browser.get(sim.url + "/registers")
    cell = browser.find_element("css selector", '[data-r="48"]')
    assert cell.text == "1000"
    browser.get(sim.url + "/diagnostics")
    wait_for(lambda: browser.find_element("tag name", "body").get_attribute("data-polls"),
             what="a diagnostics poll")
    assert browser.find_element("css selector", '[data-k="dev.frames_ok"]').text != "0"
    assert len(browser.find_element("id", "frame").text) > 100


def test_settings_change_takes_effect_and_survives_a_restart(sim, browser):
    old_port = sim.modbus_port
    assert u32(modbus_read(old_port, 48, 2), 0) == 1000
    new_port = free_port()
    browser.get(sim.url + "/settings")
    notice = save_settings(browser, modbus_port=str(new_port), scaling_factor="2000")
    assert notice.text == "Saved."
    assert browser.find_element("id", "modbus_port").get_attribute("value") == str(new_port)
    t = time.monotonic()
    words = modbus_read(new_port, 0, 50, timeout=10)
    assert time.monotonic() - t < 10
    assert u32(words, 48) == 2000
    assert u32(words, 0) in [2 * e["active_power_import_w"] for e in EXPECTED]
    assert u32(words, 14) in [e["voltage_l1_dv"] for e in EXPECTED]  # voltage not scaled
    with pytest.raises(AssertionError):
        modbus_read(old_port, 0, 2, timeout=0.5)
    # restart the device: the saved port and factor are still in force
    http_port = sim.http_port
    sim.stop()
    again = Sim(sim.settings.parent, http_port)
    try:
        words = modbus_read(new_port, 0, 50, timeout=10)
        assert u32(words, 48) == 2000
        browser.get(again.url + "/settings")
        assert browser.find_element("id", "modbus_port").get_attribute("value") == str(
            new_port)
        assert browser.find_element("id", "scaling_factor").get_attribute("value") == "2000"
    finally:
        again.stop()


def test_invalid_input_shows_the_message_and_changes_nothing(sim, browser):
    before = open(sim.settings).read() if sim.settings.exists() else None
    port = sim.modbus_port
    browser.get(sim.url + "/settings")
    notice = save_settings(browser, modbus_port="70000", scaling_factor="5", ip="192.168.1")
    assert "Nothing was saved" in notice.text
    for key in ("modbus_port", "scaling_factor", "ip"):
        err = browser.find_element("id", "err-" + key)
        assert err.is_displayed() and err.text, key
    assert browser.find_element("id", "err-modbus_port").text == "must be from 1 to 65535"
    assert not browser.find_element("id", "err-web_port").is_displayed()
    assert browser.find_element("id", "modbus_port").get_attribute("value") == "70000"
    assert (open(sim.settings).read() if sim.settings.exists() else None) == before
    assert u32(modbus_read(port, 48, 2), 0) == 1000


def test_the_password_works(sim, browser):
    browser.get(sim.url + "/settings")
    assert save_settings(browser, web_password="hemmelig-1").text == "Saved."
    browser.delete_all_cookies()
    browser.get(sim.url + "/")  # the dashboard stays open (web_protect = settings)
    assert browser.find_element("id", "login").is_displayed()
    browser.get(sim.url + "/settings")
    wait_for(lambda: "/login" in browser.current_url, what="the login page")
    fill(browser, "password", "wrong")
    submit(browser, "dologin")
    assert wait_for(lambda: browser.find_elements("id", "notice"))[0].text == "Wrong password."
    fill(browser, "password", "hemmelig-1")
    submit(browser, "dologin")
    wait_for(lambda: browser.current_url.endswith("/settings"), what="back to the settings")
    assert browser.find_element("id", "save").is_displayed()
    # logged in: a change is accepted
    assert save_settings(browser, scaling_factor="1500").text == "Saved."
    submit(browser, "logout")
    browser.get(sim.url + "/settings")
    wait_for(lambda: "/login" in browser.current_url, what="the login page after logout")


def test_the_drive_button_for_a_firmware_update(sim, browser):
    """On the PC the simulator writes usb_write.txt next to its settings file and only says
    that a board would restart now; it goes on serving."""
    browser.get(sim.url + "/settings")
    submit(browser, "usb-write")
    answer = browser.find_element("id", "usb-answer")
    assert answer.text.startswith("The device restarts now."), answer.text
    assert (sim.settings.parent / "usb_write.txt").read_text() == "once\n"
    browser.get(sim.url + "/settings")
    assert browser.find_element("id", "usb-write").is_displayed()
    assert "usb_write.txt written: a board would restart now" in sim.stop()


def test_a_norwegian_browser_gets_norwegian_pages(sim):
    driver = chromium("nb-NO")
    try:
        driver.get(sim.url + "/")
        assert driver.find_element("css selector", "nav a.on").text == "Oversikt"
        wait_for(lambda: driver.find_element("tag name", "body").get_attribute("data-polls"),
                 what="a status poll")
        age = driver.find_element("css selector", '[data-k="age_s"]').text
        assert age.endswith("s siden"), age
        driver.get(sim.url + "/settings")
        notice = save_settings(driver, scaling_factor="5")
        assert notice.text == "Ingenting ble lagret: rett opp feltene som er merket."
        assert driver.find_element("id", "err-scaling_factor").text == \
            "Et heltall fra 10 til 1000000; 1000 = x1, så 2500 betyr x2,5"
    finally:
        driver.quit()


# Every visible element whose own text is smaller than 10 px, everything reaching past the
# right edge, and the chart's labels as shown (its 11 px font scaled by shown / drawn width).
_PHONE_PROBE = r"""
var W = 390, out = {scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
                    wide: [], small: []};
document.querySelectorAll('body *').forEach(function (e) {
  var r = e.getBoundingClientRect();
  if (!r.width && !r.height) { return; }
  var name = e.tagName + (e.id ? '#' + e.id : '') + ' ' + e.textContent.slice(0, 30);
  if (r.right > W + 0.5) { out.wide.push(name); }
  var own = Array.prototype.some.call(e.childNodes, function (n) {
    return n.nodeType === 3 && n.textContent.trim(); });
  if (own && parseFloat(getComputedStyle(e).fontSize) < 10) { out.small.push(name); }
});
var c = document.getElementById('chart');
if (c) { out.chart_px = parseFloat(c.getContext('2d').font) * c.clientWidth / c.width; }
return out;
"""


@pytest.mark.parametrize("lang", ["en-US", "nb-NO"])
def test_every_page_fits_a_phone(tmp_path, lang):
    """At 390 px (a phone, as the browser's device emulation lays it out): no page is wider
    than the screen, no text is smaller than 10 px (the chart's labels included), and the
    diagnostics page does not break an address or the uptime in the middle."""
    s = Sim(tmp_path, free_port(), free_port())
    driver = chromium(lang)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
        for path in ("/", "/settings", "/diagnostics", "/registers", "/login"):
            driver.get(s.url + path)
            if path == "/":
                wait_for(lambda: driver.find_element("id", "chart").get_attribute(
                    "data-samples"), what="the chart")
            if path in ("/", "/diagnostics"):
                wait_for(lambda: driver.find_element("tag name", "body").get_attribute(
                    "data-polls"), what="a status poll")
            got = driver.execute_script(_PHONE_PROBE)
            assert got["inner"] == 390 and got["scroll"] <= 390, (path, got)
            assert got["wide"] == [] and got["small"] == [], (path, got)
            if path == "/":
                assert got["chart_px"] >= 10, got
            if path == "/diagnostics":
                for key in ("dev.ip", "dev.uptime_s"):
                    el = driver.find_element("css selector", '[data-k="%s"]' % key)
                    lines = driver.execute_script(
                        "var e = arguments[0]; return e.getBoundingClientRect().height / "
                        "parseFloat(getComputedStyle(e).lineHeight);", el)
                    assert lines < 1.5, (key, el.text, lines)
    finally:
        driver.quit()
        s.stop()
