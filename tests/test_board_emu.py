"""The whole firmware on the real CircuitPython 10.2.1, on both board images, in the RP2040
emulator (tests/support/board_emu.py): the drive flash.py installs (.mpy), the W5500 model on the
board's SPI pins, corpus frames on the HAN pin at 2400 baud. Real clients: pymodbus, urllib
and headless Chromium on the EVB-Pico (the settings page, a save of one setting, found in
settings.toml on the drive after the run, and the dashboard).

One boot per board runs the whole story in a fixed order (the emulator is slow, about 0.4x
real time on an idle core), recording what each step saw; the tests then judge the record.
Each board has its own xdist group, so the two boots run in parallel.
Both boards: Aidon and Kaifa 8E1, then Kamstrup 8N1, with han_line/han_polarity "auto" (the
default), so the reader must find each format; EVB-Pico normal polarity, Feather inverted.
EVB-Pico: then the pages. The Feather starts Modbus-only (startup.py's second stage, entered
through the start counter in nvm): its CircuitPython image has about 26 KB less heap than the
EVB-Pico's, and the whole device leaves it 1-5 KB free, where Modbus answers only now and then
(docs/architecture.md, "The board emulator"; issue 11).
"""

import http.client
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from support.board_emu import MENV, Board, build_drive, read_drive_file
from han2x_core import startup
from test_browser import chromium, shown, wait_for
from test_registers import ENERGY, MAP32, expected_map
from support.util import load_corpus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # one boot runs the whole story

CORPUS = {c["id"]: c for c in load_corpus()}
METERS = (("aidon", "aidon-6534-l3-amsreader-20251214T160000", "8E1"),
          ("kaifa", "kaifa-ma304h3e-l3-elwiz-20221013T120010", "8E1"),
          ("kamstrup", "kamstrup-6841131bn243101040-l3-amsreader-20211125T230055", "8N1"))
BOARDS = {"wiznet_w5500_evb_pico": False, "adafruit_feather_rp2040": True}  # inverted HAN?
BOOT_WALL_S = 400  # wall-clock limits: the machine may be busy with other tests
STEP_WALL_S = 150
TRIES = 5  # frames per meter: the first ones may go to finding the line format
PAGES = ("/", "/diagnostics", "/registers", "/settings")  # /settings: Chromium's (_settings_page)
IDLE_TIMEOUT_S = "123"  # the setting changed on the web page (default 60)
# Lines before code.py's own: the Feather has had FULL_TRIES failed starts (startup.py's nvm
# layout: byte 1 the magic, byte 2 the count, from byte 3 the reason, here empty), so the
# firmware starts its HAN input and Modbus and leaves out the web server.
MODBUS_ONLY = ("import microcontroller\nmicrocontroller.nvm[1:4] = bytes((%d, %d, 0))"
               % (startup._MAGIC, startup.FULL_TRIES))
PRE_CODE = {"adafruit_feather_rp2040": MODBUS_ONLY}


def modbus_registers(port, start=0, count=50):
    """Holding registers over Modbus TCP (pymodbus), or None when nothing answered."""
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
    try:
        if client.connect():
            result = client.read_holding_registers(start, count=count, device_id=1)
            if not result.isError():
                return result.registers
    except Exception:  # a refused or dropped connection: not answered
        pass
    finally:
        client.close()
    return None


def mismatches(words, reading):
    """[(offset, register value, expected)] for every value the frame carries."""
    exp = expected_map(reading)
    keys = dict((off, key) for off, key, _ in MAP32)
    keys.update(ENERGY)
    bad = [(off, words[off] << 16 | words[off + 1], value) for off, value in exp.items()
           if reading.get(keys[off]) is not None and words[off] << 16 | words[off + 1] != value]
    clock = reading["meter_clock"]
    want = [clock[k] for k in ("year", "month", "day", "hour", "minute", "second")]
    if words[36:42] != want:
        bad.append((36, words[36:42], want))
    return bad


def _step(record, name, fn):
    """Run one step of the story; an exception is recorded for the test that judges it."""
    start = time.monotonic()
    try:
        record[name] = fn()
    except Exception as e:  # noqa: BLE001 - reported by that step's test
        record[name + "_error"] = "%s: %s" % (type(e).__name__, e)
    record.setdefault("wall_s", {})[name] = round(time.monotonic() - start, 1)


def _boot(dev):
    dev.wait_for("HAN2X address", BOOT_WALL_S)
    # The Feather image's first answer came 11 s simulated after power-up (bench_board):
    # on a busy machine (0.04x real time) that is minutes of wall time.
    deadline = time.monotonic() + BOOT_WALL_S
    while time.monotonic() < deadline:
        words = modbus_registers(dev.port(502))
        if words is not None:
            return {"sim_s": dev.sim_s, "words": words}
        time.sleep(0.2)
    raise AssertionError("no Modbus answer\n" + dev.tail())


def _meter(dev, frame_id, line):
    reading = CORPUS[frame_id]["expected"]
    for attempt in range(1, TRIES + 1):
        dev.wait_han(dev.send_han([CORPUS[frame_id]["hex"]], line, gap_ms=300), STEP_WALL_S)
        words = modbus_registers(dev.port(502))
        if words is not None and not mismatches(words, reading):
            break
    return {"words": words, "frames_sent": attempt, "sim_s": dev.sim_s}


def _api_status(dev):
    url = "http://127.0.0.1:%d/api/status" % dev.port(80)
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def _page(dev, path):
    """A page over HTTP: ("ok", bytes) when its whole body came, else what happened."""
    url = "http://127.0.0.1:%d%s" % (dev.port(80), path)
    try:
        with urllib.request.urlopen(url, timeout=STEP_WALL_S) as r:
            return ("ok", len(r.read())) if r.status == 200 else ("status", r.status)
    except urllib.error.HTTPError as e:
        return ("status", e.code)
    except (http.client.IncompleteRead, ConnectionError) as e:
        return ("closed", type(e).__name__)


def _heap_min(dev):
    """free_memory_min as Modbus serves it (registers 40078-40079, offset 77): read also
    when the web page has no heap left to answer /api/status."""
    words = modbus_registers(dev.port(502), 77, 2)
    return None if words is None else words[0] << 16 | words[1]


def _settings_page(dev, browser, record):
    """Change one setting on the settings page in Chromium and save: the notice shown (with
    the store's error, if any) and the address the browser ended on. The page as it came
    is recorded as the "/settings" page: ("ok", body bytes) when it came whole (200, its
    footer there), else ("status", code) or ("cut", bytes)."""
    browser.get("http://127.0.0.1:%d/settings" % dev.port(80))
    status, size, whole = browser.execute_script(
        "var n = performance.getEntriesByType('navigation')[0];"
        "return [n.responseStatus, n.decodedBodySize, !!document.querySelector('footer')];")
    record["/settings"] = (("ok" if whole else "cut") if status == 200 else "status",
                           size if status == 200 else status)
    field = browser.find_element("id", "modbus_idle_timeout_s")
    field.clear()
    field.send_keys(IDLE_TIMEOUT_S)
    browser.find_element("id", "save").click()
    notice = wait_for(lambda: browser.find_elements("id", "notice"), timeout=STEP_WALL_S,
                      what="the save notice")[0].text
    store = browser.find_elements("id", "store")  # why the drive was not written
    return notice + (" " + store[0].text if store else ""), browser.current_url


def _dashboard(dev, browser):
    """The dashboard in Chromium, once its own status poll has filled it in."""
    browser.get("http://127.0.0.1:%d/" % dev.port(80))
    try:
        return wait_for(lambda: (lambda s: s if s["_polls"] else None)(shown(browser)),
                        timeout=STEP_WALL_S, what="a status poll on the dashboard")
    except AssertionError as e:  # what the browser had: the page, its script, its fetches
        seen = browser.execute_script(
            "return [document.title, document.body && document.body.getAttribute("
            "'data-offline'), performance.getEntriesByType('resource').map(function (r) {"
            " return r.name + ' ' + r.responseStatus + ' ' + Math.round(r.duration); })];")
        raise AssertionError("%s: title, offline, resources %s; page ends %r" % (
            e, seen, browser.page_source[-300:]))


def on(*boards):
    """Run a test on these boards' stories; each board boots once in its own xdist group."""
    return pytest.mark.parametrize("story", [pytest.param(b, marks=pytest.mark.xdist_group(b))
                                             for b in boards], indirect=True)


# The lowest free heap the EVB-Pico's story may show (free_memory_min): after the pages, and
# after the settings save in Chromium (the schema, settings_write.py, storage.py and the form
# handler loaded at once). Measured on 2026-12-02: 39,376 after the pages; after the save
# 11,280 while the file's text was built whole, 36,096 since it is written a line at a time.
# The save's figure counts the step's uncollected garbage, so it moves with where the
# interpreter collects on its own (17,584 for the same save sent by urllib): its floor sits
# above the old figure, not near the new one. A change that costs the board heap fails here.
# Issue 11 asks for 40 KB at the busiest moment (docs/benchmarks.md, bench_board).
HEAP_FLOOR_PAGES = 36 * 1024
HEAP_FLOOR_SAVED = 14 * 1024
# The web server runs on the EVB-Pico only (the Feather starts Modbus-only, see above).
ALL, WEB = on(*BOARDS), on("wiznet_w5500_evb_pico")


@pytest.fixture(scope="module")
def story(request, tmp_path_factory):
    """Boot one board and run every step; {step: result or step_error: text}."""
    board = request.param
    record = {"board": board}
    folder = tmp_path_factory.mktemp(board)
    browser = None
    with Board(board, folder, invert=BOARDS[board], pre_code=PRE_CODE.get(board)) as dev:
        _step(record, "boot", lambda: _boot(dev))
        if "boot" in record:
            for name, frame_id, line in METERS:
                _step(record, name, lambda: _meter(dev, frame_id, line))
        if "boot" in record and board == "wiznet_w5500_evb_pico":
            _step(record, "status", lambda: _api_status(dev))
            for path in PAGES[:-1]:  # the settings page: in Chromium, below
                _step(record, path, lambda: _page(dev, path))
            _step(record, "status_after", lambda: _api_status(dev))  # web_errors, last_error
            browser = chromium("en-US")
            browser.set_page_load_timeout(STEP_WALL_S)
            # Selenium's own HTTP timeout to chromedriver (120 s) must not cut a slow page
            browser.command_executor._client_config.timeout = STEP_WALL_S + 60
            try:
                _step(record, "settings", lambda: _settings_page(dev, browser, record))
                _step(record, "heap_saved", lambda: _heap_min(dev))
                _step(record, "status_saved", lambda: _api_status(dev))
                _step(record, "dashboard", lambda: _dashboard(dev, browser))
                if "dashboard_error" in record:  # what the device says about it
                    _step(record, "status_end", lambda: _api_status(dev))
                    record["dashboard_error"] = "/api/status then: %s\n%s" % (
                        record.get("status_end", record.get("status_end_error")),
                        record["dashboard_error"])
            finally:
                browser.quit()
        record["console"] = dev.console
    record["settings.toml"] = dev.read_file("settings.toml")  # the drive after the run
    return record


def judge(story, step):
    """A step's result; the step's error (and the console's end) fails the test."""
    if step + "_error" in story:
        after = story.get("status_after", {}).get("device", story.get("status_after_error"))
        pytest.fail("%s on %s: %s\n--- /api/status after the pages ---\n%s\n--- console ---\n%s"
                    % (step, story["board"], story[step + "_error"][:2000], after,
                       story["console"][-2500:]))
    assert step in story, "%s did not run (the board did not boot)" % step
    return story[step]


@ALL
def test_boots_from_the_flash_tree_and_answers_modbus(story):
    boot = judge(story, "boot")
    assert "HAN2X 0.1.0 on" in story["console"]
    assert "Traceback" not in story["console"]
    assert boot["words"][42] == 10  # firmware version 0.1.0
    assert boot["words"][36:42] == [0] * 6  # no telegram yet
    if story["board"] in PRE_CODE:
        assert "starting modbus-only" in story["console"]
    print("%s: first Modbus answer %.2f s simulated after power-up"
          % (story["board"], boot["sim_s"]))


@ALL
@pytest.mark.parametrize("meter", [m[0] for m in METERS])
def test_meter_values_reach_modbus(story, meter):
    result = judge(story, meter)
    frame_id, line = [(f, ln) for m, f, ln in METERS if m == meter][0]
    assert result["words"] is not None, "no Modbus answer after the %s frames" % meter
    assert mismatches(result["words"], CORPUS[frame_id]["expected"]) == [], (
        "%s %s frame sent %d times" % (meter, line, result["frames_sent"]))


@WEB
def test_api_status_reports_the_telegrams(story):
    status = judge(story, "status")["device"]
    assert status["frames_ok"] >= len(METERS)
    assert status["line_format"].startswith("8N1 " + ("inverted" if BOARDS[story["board"]]
                                                       else "normal"))
    assert status["han_state"] == "ok"
    assert status["free_memory"] > 0


@WEB
def test_api_status_counts_the_han_bytes(story):
    status = judge(story, "status")["device"]
    sent = sum(len(CORPUS[f]["hex"]) // 2 for _, f, _ in METERS)  # at least one of each
    assert status["han_bytes"] >= sent


@WEB
def test_every_page_is_served_whole(story):
    """Each page on the real interpreter: 200 and its whole body (the dashboard fits since
    the texts are read from flash and each page loads only its own module, issue 11), with
    no web error counted. What a page that does run out of memory does (503 or a clean
    close, counted, the next request served: issue 21) is tested on the PC stand-ins
    (tests/test_web_oom.py)."""
    results = {path: judge(story, path) for path in PAGES}
    assert all(how == "ok" and size > 3000 for how, size in results.values()), results
    after = judge(story, "status_after")["device"]  # served after the pages urllib read
    assert after["web_errors"] == 0, (results, after)
    saved = judge(story, "status_saved")["device"]  # and after Chromium's /settings (+ save)
    assert saved["web_errors"] == 0, (results, saved)
    print("%s pages: %s; free_memory_min %s" % (story["board"], results,
                                                 after["free_memory_min"]))
    assert after["free_memory_min"] >= HEAP_FLOOR_PAGES, after


@WEB
def test_dashboard_loads_in_chromium(story):
    """The dashboard on the board in a real browser: the last meter's values (Kamstrup) come
    through the page's own /api/status poll."""
    print("%s wall seconds per step: %s" % (story["board"], story.get("wall_s")))
    values = judge(story, "dashboard")
    kamstrup = CORPUS[METERS[-1][1]]["expected"]
    assert values["meter"] == "Kamstrup", values
    assert values["meter_id"] == kamstrup["meter_id"]
    assert values["active_power_import_w"] == "%d W" % kamstrup["active_power_import_w"]
    assert values["voltage_l1_dv"] == "%d.%d V" % divmod(kamstrup["voltage_l1_dv"], 10)


@WEB
def test_settings_saved_on_the_web_page_are_on_the_drive(story):
    """A save on the settings page in Chromium is written by the firmware into settings.toml
    on the drive image (read after the run with mtools)."""
    after = judge(story, "status_after")["device"]
    print("%s free_memory_min %s after the pages, %s after the save (Modbus)" % (
        story["board"], after["free_memory_min"], story.get("heap_saved")))
    saved = judge(story, "status_saved")["device"]
    print("free_memory %s after the pages, %s after the save" % (after["free_memory"],
                                                                   saved["free_memory"]))
    notice, url = judge(story, "settings")
    assert notice == "Saved."
    assert judge(story, "heap_saved") >= HEAP_FLOOR_SAVED
    assert url.endswith("/settings?saved=1"), url  # the save's 303 (Post/Redirect/Get)
    assert saved["web_errors"] == 0 and saved["last_error"] is None, saved
    toml = story["settings.toml"]
    assert toml is not None, "no settings.toml on the drive after the run"
    assert re.search(rb"^modbus_idle_timeout_s\s*=\s*%s\s*$" % IDLE_TIMEOUT_S.encode(), toml,
                     re.M), toml
    # written a line at a time, its end line's length and CRC counted on the board as the
    # lines went (binascii.crc32 with a running value): they check out on the PC
    from han2x_core.storage import unseal

    assert unseal(toml) is not None, toml[-80:]


def test_drive_image_holds_the_flash_tree(tmp_path):
    """The harness's drive: what flash.py installs, compiled by CircuitPython's mpy-cross, in
    a FAT image the emulated board mounts; extra files and a code.py prefix on top."""
    image = build_drive("adafruit_feather_rp2040", str(tmp_path), settings="dhcp = true\n",
                        pre_code="print('probe')")
    listing = subprocess.run(["mdir", "-/", "-b", "-i", image, "::/"], capture_output=True,
                             text=True, env=MENV, check=True).stdout
    assert "::/han2x_core/app.mpy" in listing and "::/lib/adafruit_wiznet5k/" in listing
    assert "::/han2x_core/app.py" not in listing
    assert read_drive_file(image, "settings.toml") == b"dhcp = true\n"
    code = read_drive_file(image, "code.py").decode()
    assert code.startswith("print('probe')\n") and "def main(" in code
    with open(os.path.join(str(tmp_path), "CIRCUITPY", "han2x_core", "app.mpy"), "rb") as f:
        assert f.read(2) == b"C\x06"  # CircuitPython's .mpy header, version 6
