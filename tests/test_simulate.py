"""End to end: `make run`'s device (tools/simulate.py --replay) polled by real clients.

pymodbus with the TCP (MBAP) and the RTU-over-TCP framer, and Debian's mbpoll (libmodbus),
read the registers; the values are checked against the replayed corpus frame through the
spec's register map (test_registers.expected_map), scaling factor included.
"""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest
from pymodbus import FramerType
from pymodbus.client import ModbusTcpClient

from test_registers import ENERGY, expected_map
from support import simproc
from support.util import free_port, load_corpus

pytestmark = pytest.mark.slow

CORPUS = {c["id"]: c for c in load_corpus()}
CASES = [
    "kaifa-ma304h3e-l3-elwiz-20230331T130010",  # list 3: everything, energies, clock
    "aidon-6534-l3-amsreader-20251214T170000",  # Aidon list 3
]
MBPOLL = shutil.which("mbpoll") or "/usr/bin/mbpoll"


class Sim:
    def __init__(self, tmp_path, case_id):
        self.case = CORPUS[case_id]
        capture = tmp_path / "capture.txt"
        capture.write_text("# %s\n%s\n" % (case_id, self.case["hex"]))
        self.port = free_port()
        self.proc = simproc.start(
            ["--replay", str(capture), "--interval", "0.2", "--modbus-port", str(self.port),
             "--http-port", "0", "--settings", str(tmp_path / "settings.toml")], self.port)

    def client(self, framer=FramerType.SOCKET):
        c = ModbusTcpClient("127.0.0.1", port=self.port, framer=framer, timeout=3)
        assert c.connect()
        return c

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out = self.proc.communicate(timeout=10)[0]
        return self.proc.returncode, out


@pytest.fixture(params=CASES)
def sim(request, tmp_path):
    s = Sim(tmp_path, request.param)
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.communicate()


def u32s(words):
    return [words[i] << 16 | words[i + 1] for i in range(0, len(words), 2)]


def wait_telegram(client):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rr = client.read_holding_registers(55, count=2, device_id=1)
        if not rr.isError() and (rr.registers[0] << 16 | rr.registers[1]) >= 2:
            return
        time.sleep(0.1)
    raise AssertionError("no telegram reached the registers")


def check_map(words, reading, factor):
    exp = expected_map(reading, factor)
    for off, value in exp.items():
        assert words[off] << 16 | words[off + 1] == value, (off, value)
    for off, _ in ENERGY:  # estimate = the hourly total while no power is integrated yet
        assert words[off + 8] << 16 | words[off + 9] >= exp[off]
    clock = reading["meter_clock"]
    assert words[36:42] == [clock[k] for k in ("year", "month", "day", "hour", "minute",
                                                 "second")]
    assert words[42] == 10  # firmware 0.1.0
    assert u32s(words[44:46]) == [factor] and words[46] == 0 and u32s(words[48:50]) == [factor]


def mbpoll(port, *args, values=()):
    proc = subprocess.run([MBPOLL, "-m", "tcp", "-1", "-q", "-p", str(port), *args,
                           "127.0.0.1", *values], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def mbpoll_values(out):
    return {int(k): int(v) for k, v in re.findall(r"\[(\d+)\]:\s+(-?\d+)", out)}


def test_pymodbus_both_framers_read_the_replayed_frame(sim):
    reading = sim.case["expected"]
    tcp = sim.client()
    wait_telegram(tcp)
    words = tcp.read_holding_registers(0, count=50, device_id=1).registers
    check_map(words, reading, 1000)
    assert tcp.read_input_registers(0, count=50, device_id=0).registers == words
    rtu = sim.client(FramerType.RTU)
    assert rtu.read_holding_registers(0, count=50, device_id=1).registers == words
    assert rtu.read_input_registers(0, count=50, device_id=255).registers == words
    # Scaling written with FC16 over MBAP, read back over RTU-over-TCP.
    assert not tcp.write_registers(48, [0, 2500], device_id=1).isError()
    words = rtu.read_holding_registers(0, count=50, device_id=1).registers
    check_map(words, reading, 2500)
    # Two FC06 writes over RTU-over-TCP to the mirror at 40045-40046: 100 000.
    assert not rtu.write_register(44, 1, device_id=1).isError()
    assert not rtu.write_register(45, 0x86A0, device_id=1).isError()
    check_map(tcp.read_holding_registers(0, count=50, device_id=1).registers, reading, 100000)
    bad = tcp.write_registers(48, [0, 5], device_id=1)
    assert bad.isError() and bad.exception_code == 3
    bad = tcp.read_holding_registers(100, count=40, device_id=1)  # past the map (102)
    assert bad.isError() and bad.exception_code == 2
    # Extended block: data valid, telegram counter, meter type.
    ext = tcp.read_holding_registers(50, count=27, device_id=1).registers
    assert ext[0] & 1 and ext[3] in (1, 2, 3) and ext[4] == 3
    tcp.close()
    rtu.close()
    rc, out = sim.stop()
    assert rc == 0 and "stopped:" in out, out
    assert "listening on 127.0.0.1:%d" % sim.port in out


def test_mbpoll_reads_and_writes(sim):
    reading = sim.case["expected"]
    tcp = sim.client()
    wait_telegram(tcp)
    for table in ("4", "3"):
        values = mbpoll_values(mbpoll(sim.port, "-a", "1", "-r", "1", "-c", "50", "-t", table))
        words = [values[i] for i in range(1, 51)]
        check_map(words, reading, 1000)
    # 32-bit view, high word first (mbpoll -B): Voltage L1 at 40015.
    values = mbpoll_values(mbpoll(sim.port, "-a", "1", "-r", "15", "-c", "1", "-t", "4:int",
                                  "-B"))
    assert values[15] == reading["voltage_l1_dv"]
    # 0-based references and unit id 0.
    values = mbpoll_values(mbpoll(sim.port, "-a", "0", "-0", "-r", "14", "-c", "2"))
    assert values[15] == reading["voltage_l1_dv"]
    # Write the scaling factor (FC16 of two registers) and read the scaled map back.
    mbpoll(sim.port, "-a", "1", "-r", "49", "-t", "4", values=("0", "2500"))
    values = mbpoll_values(mbpoll(sim.port, "-a", "1", "-r", "1", "-c", "50"))
    check_map([values[i] for i in range(1, 51)], reading, 2500)
    # An out-of-range write is refused (libmodbus prints the exception; rc 1).
    proc = subprocess.run([MBPOLL, "-m", "tcp", "-1", "-q", "-p", str(sim.port), "-a", "1",
                           "-r", "50", "127.0.0.1", "5"], capture_output=True, text=True,
                          timeout=20)
    assert proc.returncode != 0 and "Illegal data value" in proc.stdout + proc.stderr
    tcp.close()


@pytest.mark.parametrize("meter", ["aidon", "kaifa", "kamstrup"])
def test_simulated_meter_reaches_the_registers(meter, tmp_path):
    """The default HAN source: tools/sim/metersim.py's meter, 50x real time, across the full
    hour (its clock starts at 10:59:30), so the hourly totals and the estimate appear."""
    port = free_port()
    proc = simproc.start(["--meter", meter, "--speed", "50", "--modbus-port", str(port),
                          "--http-port", "0", "--settings", str(tmp_path / "settings.toml")],
                         port)
    try:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=3)
        assert client.connect()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            words = client.read_holding_registers(0, count=77, device_id=1).registers
            if words[50] & 4:  # hourly totals received
                break
            time.sleep(0.1)
        else:
            raise AssertionError("no hourly totals: %r" % words)
        u32 = u32s(words[:50])
        assert u32[0] > 0  # power import, W
        assert 2000 < u32[7] < 2600  # voltage L1, V x 10
        assert u32[10] > 0 and u32[14] >= u32[10]  # cumulative kWh, estimate >= it
        assert words[36:38] == [2026, 11] and words[53] == ("aidon", "kaifa",
                                                            "kamstrup").index(meter) + 1
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops it cleanly too
        out = proc.communicate(timeout=10)[0]
    assert proc.returncode == 0, out
    assert "%s list" % meter in out and "stopped:" in out


def test_serial_source_through_a_pty(tmp_path):
    """--serial: pyserial at 2400 8E1 on a pseudo-terminal standing in for a USB M-Bus
    adapter; a frame written to the other end reaches the registers."""
    master, slave = os.openpty()
    tty = os.ttyname(slave)
    case = CORPUS[CASES[0]]
    port = free_port()
    proc = simproc.start(["--serial", tty, "--modbus-port", str(port), "--http-port", "0",
                          "--settings", str(tmp_path / "settings.toml")], port)
    try:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=3)
        assert client.connect()
        frame = bytes.fromhex(case["hex"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            os.write(master, frame)
            time.sleep(0.3)
            words = client.read_holding_registers(0, count=50, device_id=1).registers
            if words[15]:
                break
        check_map(words, case["expected"], 1000)
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=10)[0]
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, out
    assert "HAN source: serial %s, 2400 baud, searching, trying 8E1 normal" % tty in out, out


def _sim_args(tmp_path, *argv):
    from tools import simulate

    return simulate.build_parser().parse_args(
        list(argv) + ["--settings", str(tmp_path / "settings.toml"), "--max-seconds", "1",
                      "--modbus-port", str(free_port()), "--http-port", "0"])


@pytest.mark.parametrize("argv,words", [
    (["--serial", "/dev/ttyUSB-han2x-none"],
     "HAN source: cannot open the serial port /dev/ttyUSB-han2x-none (the USB M-Bus adapter)"),
    (["--replay", "no-such-capture.txt"],
     "HAN source: cannot read the replay file no-such-capture.txt: No such file or directory"),
    (["--replay", "EMPTY"], "holds no HAN frames"),
])
def test_a_han_source_that_cannot_start_says_what_it_is(tmp_path, capsys, argv, words):
    """Not "cannot listen": the Modbus and web ports are fine, the HAN source is not."""
    from tools import simulate

    if argv[1] == "EMPTY":
        argv = ["--replay", str(tmp_path / "empty.txt")]
        (tmp_path / "empty.txt").write_text("# nothing captured\n")
    rc = simulate.main(["--settings", str(tmp_path / "settings.toml"), "--max-seconds", "1",
                        "--modbus-port", str(free_port()), "--http-port", "0"] + argv)
    err = capsys.readouterr().err
    assert rc == 1 and words in err, err
    assert "cannot listen" not in err


def test_serial_line_format_is_detected_as_on_the_board(tmp_path):
    """--serial without --line: the board's HanReader tries 8E1, and after 1500 characters
    without a valid telegram reopens the adapter at 8N1 (a new pyserial port without parity;
    a pty ignores the parity bit itself), then locks on the first CRC-valid Kamstrup
    telegram."""
    import serial

    from tools import simulate
    from han2x_core.app import App
    from han2x_core.registers import Registers
    from han2x_core.settings import DEFAULTS

    master, slave = os.openpty()
    try:
        args = _sim_args(tmp_path, "--serial", os.ttyname(slave))
        han = simulate.build_han(args, dict(DEFAULTS))

        def parity():
            return han.receiver.serial.parity != serial.PARITY_NONE

        first = han.receiver.serial
        assert han.line == "8E1" and first.parity == serial.PARITY_EVEN and first.is_open
        app = App(han, Registers(scaling=1000, firmware_version=1), 0, settings=dict(DEFAULTS))
        han.watch(app.hdlc)
        os.write(master, b"\x55" * 1600)  # what a wrong line format gives: no valid frame
        now = 0
        while han.line == "8E1" and now < 100000:
            now += 10
            app.step(now)
        assert han.line == "8N1" and not parity() and han.switches == 1
        assert not first.is_open and han.receiver.serial.is_open
        kamstrup = next(c for c in CORPUS.values() if c["meter"].startswith("Kamstrup"))
        os.write(master, bytes.fromhex(kamstrup["hex"]))
        while han.detected is None and now < 200000:
            now += 10
            app.step(now)
        assert han.detected == "8N1 normal" and app.hdlc.frames_ok == 1
        assert app.registers.telegrams == 1
        assert simulate.describe_han(han).endswith("8N1 normal (detected)")
        han.close()
        # a --line given on the command line wins over the settings, and opens that format
        han = simulate.build_han(_sim_args(tmp_path, "--serial", os.ttyname(slave), "--line",
                                           "8n1"), dict(DEFAULTS))
        assert han.candidates == [("8N1", "normal")] and not parity()
        han.close()
    finally:
        os.close(master)
        os.close(slave)


def test_scaling_written_over_modbus_survives_a_restart(tmp_path):
    """The scaling factor is a setting: a Modbus write persists it through the settings
    store (--settings), and the restarted device serves it."""
    case = CORPUS[CASES[0]]
    sim = Sim(tmp_path, CASES[0])
    tcp = sim.client()
    wait_telegram(tcp)
    assert not tcp.write_registers(48, [0, 4000], device_id=1).isError()
    tcp.close()
    rc, out = sim.stop()
    assert rc == 0, out
    assert "scaling_factor = 4000" in (tmp_path / "settings.toml").read_text()
    sim = Sim(tmp_path, CASES[0])
    tcp = sim.client()
    wait_telegram(tcp)
    check_map(tcp.read_holding_registers(0, count=50, device_id=1).registers,
              case["expected"], 4000)
    tcp.close()
    sim.stop()


def test_a_network_change_on_the_pc_says_the_simulator_stays(tmp_path):
    """On the PC a saved new address does not move the simulator: the page says so, names
    the address a board would use, and the DHCP hint names han2x- plus the MAC suffix."""
    from support import webdevice
    from han2x_core.network import default_hostname, mac_from_uid
    from han2x_core.storage import SettingsStore
    from tools import simulate

    class SimWeb(webdevice.Device):
        def __init__(self):  # simulate.py's own wiring, with webdevice's HTTP helpers
            args = _sim_args(tmp_path)
            args.http_port = free_port()
            self.path = str(tmp_path / "settings.toml")
            self.store = SettingsStore(self.path)
            settings = simulate.build_settings(args, self.store.load()[0])
            dev = simulate.build_device(args, store=self.store, settings=settings)
            self.app, self.han, self.modbus = dev.app, dev.han, dev.modbus
            self.web = dev.services["web"]
            self.start_loop()

    dev = SimWeb()
    try:
        csrf = dev.csrf()
        status, _h, body = dev.post_form("/settings", dict(dev.settings_form(
            ip="192.168.1.50"), csrf=csrf))
        page = body.decode()
        assert status == 200 and 'id="moved-pc">This is the simulator on a PC' in page
        assert "http://192.168.1.50:%d/" % dev.port in page  # what a board would use
        assert dev.get("/api/status")[0] == 200  # and it is still here
        status, _h, body = dev.post_form("/settings", dict(dev.settings_form(dhcp="on"),
                                                           csrf=csrf))
        name = default_hostname(mac_from_uid(b"simulate"))
        assert status == 200 and ("<b>%s</b>" % name).encode() in body, body
        assert name.startswith("han2x-") and len(name) == 12
        status, _h, body = dev.get("/settings")
        assert ('id="addr-now">Address now: 127.0.0.1 (pc), %s<' % name).encode() in body
    finally:
        dev.close()
