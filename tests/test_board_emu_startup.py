"""Issue 11, item 3, on the real CircuitPython 10.2.1 in the RP2040 emulator (tests/support/board_emu.py):
a start-up that runs out of memory backs off (Modbus only, then the safe state) instead of
resetting for ever. han2x_core/startup.py has the rule, docs/troubleshooting.md tells users.

The heap is filled before start-up by a test-only hook (`pre_code`, lines in front of the
drive's code.py; nothing in the firmware): at every start it waits for the USB console, prints
"ballast?" and reads one character. "h" holds ballast until about LEAVE bytes are free, far too
little for the device; anything else starts with the whole heap. The chip resets through the
watchdog as on the board (microcontroller.reset() after a failed start); the harness keeps the
flash, so microcontroller.nvm and its failed-start count survive, as they do on the board.

One power-up, five starts:
  1, 2  full start, heap filled: MemoryError, counted, reset;
  3     Modbus-only start with the whole heap: Modbus answers, no web server; then the reset
        button before the start counted as good (60 s): a failed start too;
  4     Modbus-only start, heap filled: fails;
  5     heap filled: the safe state, the reason on the console, no more resets.

Issue 11's "not in sys.modules after start-up", on the real interpreter: code.py gets one
more line (MODULES below) at the end of its start-up, before the loop, that prints the names
in sys.modules; only a start that got that far (the Modbus-only one) prints it.
"""

import os
import socket
import time

import pytest

from support.board_emu import Board
from support.util import ROOT
from test_board_emu import modbus_registers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800),
              pytest.mark.xdist_group("wiznet_w5500_evb_pico_startup")]

BOARD = "wiznet_w5500_evb_pico"
STEP_WALL_S = 240  # wall seconds for one start or one answer, on a busy machine
STORY_WALL_S = 1500  # the whole story; past it the story stops and says where
LEAVE = 24000  # bytes left free under ballast: the firmware modules alone need far more
QUIET_SIM_S = 8  # simulated seconds the safe state is watched for a restart
# (ballast, what the start must print); the failed-start count before each start is 0..4
STARTS = (("h", "MemoryError"), ("h", "MemoryError"), ("n", "HAN2X address"),
          ("h", "MemoryError"), ("h", "HAN2X safe state"))

HOOK = """\
import gc as _g, sys as _s, supervisor as _sv
while not _sv.runtime.serial_connected:  # printed before the host opens the port: lost
    pass
_g.collect()
print("ballast? free", _g.mem_free())
_bal = []
if _s.stdin.read(1) == "h":
    try:
        while _g.mem_free() > %d:
            _bal.append(bytearray(512))
    except MemoryError:
        pass
    print("ballast on", _g.mem_free())
""" % (LEAVE + 512)
# The end of code.py's start-up (the collect before the loop), and the line put before it.
STARTED = "    gc.collect()\n    app.free_memory_min = low = gc.mem_free()\n"
MODULES = ("    print('HAN2X modules:', ' '.join(sorted(__import__('sys').modules)))"
           "  # test_board_emu_startup\n")
# The W5500 driver's modules the firmware does not load (han2x_core/wiznet.py, issue 11).
DRIVER_UNUSED = ("adafruit_wiznet5k_dhcp", "adafruit_wiznet5k_dns", "adafruit_wiznet5k_debug")


def code_printing_modules():
    """code.py as flash.py ships it, plus MODULES at the end of its start-up."""
    with open(os.path.join(ROOT, "code.py")) as f:
        code = f.read()
    if code.count(STARTED) != 1:
        raise AssertionError("code.py's start-up end changed: update STARTED (%r)" % STARTED)
    return code.replace(STARTED, MODULES + STARTED)


def _wait_sim(dev, seconds, wall):
    """Let `seconds` of the board's simulated time pass (bounded by `wall` wall seconds)."""
    until = dev.sim_s + seconds
    deadline = time.monotonic() + wall
    while dev.sim_s < until:
        if dev.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("%.1f s simulated did not pass in %d s wall\n%s"
                                 % (seconds, wall, dev.tail()))
        time.sleep(0.1)


def _web_refused(dev):
    """True when nothing listens on the device's port 80 (the W5500 refuses)."""
    try:
        with socket.create_connection(("127.0.0.1", dev.port(80)), timeout=10) as s:
            s.sendall(b"GET /api/status HTTP/1.0\r\n\r\n")
            return s.recv(100) == b""
    except OSError:
        return True


def _start(dev, n, ballast, expect, since, record):
    """One start: answer the hook, wait for what it must print; the console of this start."""
    at = dev.wait_for("ballast?", STEP_WALL_S, since)
    dev.type(ballast)
    end = dev.wait_for(expect, STEP_WALL_S, at)
    if expect == "MemoryError":  # the reset that follows a failed start
        end = dev.wait_for("ballast?", STEP_WALL_S, end) - len("ballast?")
    elif expect == "HAN2X safe state":
        end = dev.wait_for("press reset.", STEP_WALL_S, end)
    record["starts"].append(dev.console[at:end])
    return end


def _story(dev, record):
    deadline = time.monotonic() + STORY_WALL_S
    since = 0
    for n, (ballast, expect) in enumerate(STARTS):
        if time.monotonic() > deadline:
            raise AssertionError("out of time before start %d" % (n + 1))
        since = _start(dev, n, ballast, expect, since, record)
        if ballast == "n":  # the Modbus-only start: serve, then the reset button
            words = None
            while words is None and time.monotonic() < deadline:
                words = modbus_registers(dev.port(502))
            record["modbus_only"] = {"words": words, "web_refused": _web_refused(dev),
                                     "sim_s": dev.sim_s, "boot_sim_s": record["sim_at"][-1]}
            since = len(dev.console)
            dev.reset()
        record["sim_at"].append(dev.sim_s)
    resets = dev.stats.get("resets")
    _wait_sim(dev, QUIET_SIM_S, STEP_WALL_S)  # the safe state: no restart, nothing served
    record["after_safe"] = {"console": dev.console[since:], "resets": (resets,
                            dev.stats.get("resets")), "modbus": modbus_registers(dev.port(502)),
                            "web_refused": _web_refused(dev)}


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    record = {"starts": [], "sim_at": [0.0]}
    t0 = time.monotonic()
    with Board(BOARD, tmp_path_factory.mktemp("startup"), pre_code=HOOK,
               code=code_printing_modules()) as dev:
        try:
            _story(dev, record)
        except Exception as e:  # noqa: BLE001 - each test says what it misses
            record["error"] = "%s: %s" % (type(e).__name__, e)
        record["console"] = dev.console
        record["sim_s"], record["wall_s"] = dev.sim_s, time.monotonic() - t0
    return record


def judge(story, key):
    if key not in story:
        pytest.fail("%s: not reached; %s\n--- console ---\n%s" % (
            key, story.get("error", "")[:3000], story["console"][-3000:]))
    return story[key]


def _starts(story, n):
    starts = judge(story, "starts")
    if len(starts) < n:
        judge(story, "start %d" % n)  # fails with the story's error and console
    return starts


def test_a_start_without_memory_fails_counted_and_resets(story):
    first, second = _starts(story, 2)[:2]
    for n, text in enumerate((first, second)):
        assert "ballast on" in text and "MemoryError" in text, text
        assert "Traceback" in text, text  # the reason, printed before the reset
    assert "failed start" not in first, first  # a fresh board: nothing counted yet
    assert "1 failed start(s) before this one (MemoryError" in second, second
    assert "starting full" in second, second


def test_after_two_failed_starts_modbus_only_serves(story):
    third = _starts(story, 3)[2]
    assert "2 failed start(s) before this one (MemoryError" in third, third
    assert "starting modbus-only" in third, third
    result = judge(story, "modbus_only")
    assert result["words"] is not None, "no Modbus answer in the Modbus-only start"
    assert result["words"][42] == 10  # firmware version 0.1.0
    assert result["web_refused"], "the web server was started in a Modbus-only start"
    # checked before the start counted as good (60 s simulated): so the reset still counts
    assert result["sim_s"] - result["boot_sim_s"] < 60, result


def test_the_drivers_dhcp_dns_and_debug_modules_are_not_loaded(story):
    """Issue 11: after start-up (the Modbus-only start: the network and the W5500 driver are
    up) sys.modules holds the driver and its socket pool but none of its DHCP, DNS and debug
    modules (han2x_core/wiznet.py; tests/test_network.py checks the same on CPython)."""
    judge(story, "modbus_only")  # the start that prints the line got that far
    lines = [line for line in story["console"].splitlines()
             if line.startswith("HAN2X modules:")]
    assert len(lines) == 1, lines  # only the Modbus-only start reached the loop
    loaded = lines[0].split()[2:]
    for name in ("adafruit_wiznet5k", "adafruit_wiznet5k.adafruit_wiznet5k",
                 "adafruit_wiznet5k.adafruit_wiznet5k_socketpool", "han2x_core.network",
                 "han2x_core.modbus_server"):
        assert name in loaded, (name, loaded)
    for name in DRIVER_UNUSED:
        assert not [m for m in loaded if m.endswith(name)], (name, loaded)
    assert "han2x_core.web" not in loaded, loaded  # Modbus only: the web server never came


def test_a_reset_before_a_good_start_counts_as_failed(story):
    fourth = _starts(story, 4)[3]
    assert "3 failed start(s) before this one" in fourth, fourth
    assert "starting modbus-only" in fourth and "MemoryError" in fourth, fourth


def test_repeated_failures_end_in_the_safe_state_with_the_reason(story):
    fifth = _starts(story, 5)[4]
    assert "ballast on" in fifth, fifth  # the heap was as full as in the failed starts
    # docs/troubleshooting.md: the message users are told to look for
    assert "HAN2X safe state: 4 starts in a row failed; last: MemoryError" in fifth, fifth
    assert "Traceback" not in fifth, fifth


def test_the_safe_state_does_not_reset_or_serve(story):
    after = judge(story, "after_safe")
    before, later = after["resets"]
    assert before == later == 4, after["resets"]  # 2 failed starts, the button, 1 more
    assert "ballast?" not in after["console"], after["console"]  # no new start
    assert after["modbus"] is None and after["web_refused"], after
    print("five starts: %.1f s simulated, %.0f s wall; starts at %s s simulated" % (
        story["sim_s"], story["wall_s"], ", ".join("%.1f" % t for t in story["sim_at"])))
