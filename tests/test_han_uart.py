"""han_uart.py: the PIO receiver program run in rp2040-pio-emulator on bit-level waveforms
(8E1, 8N1, both polarities, parity and framing errors, glitches, back-to-back characters,
+-2 % baud), the background ring across a 1 s stall, the busio fallback, and han_reader.py's
line-format auto-detection judged by the real HdlcReader on corpus frames."""

import random

import adafruit_pioasm
import pytest

from support.fakes._state import load
from han2x_core import han_reader, han_uart
from han2x_core.han_reader import HanReader
from han2x_core.han_uart import PioReceiver, UartReceiver, program
from han2x_core.hdlc import HdlcReader
from tools.han_pio import program_source
from support.util import load_corpus

fake_busio = load("busio")  # tests/support/fakes: modules passed as arguments, sys.modules untouched
fake_rp2pio = load("rp2pio")

PIN = load("microcontroller").Pin._make("GP1", 1)  # the W5500-EVB-Pico's HAN RX pin


def receiver(line, polarity, rp2pio=fake_rp2pio, ring_words=1024):
    return PioReceiver(PIN, line, polarity, rp2pio=rp2pio, ring_words=ring_words)


def transmit(rx, data, line, inverted=False, baud_error=0.0, gap_bits=0, lead_bits=2):
    """Send data on a fresh line attached to rx's state machine; run until it is all sent."""
    sm = rx.sm
    wave = fake_rp2pio.Line()
    wave.t = float(sm.clock)
    wave.idle(lead_bits)
    wave.chars(data, line, baud_error, gap_bits)
    wave.idle(3)
    sm.attach(wave, invert=inverted)
    sm.emulate(int(wave.t) - sm.clock)
    return wave


def read_all(rx):
    buf = bytearray(4096)
    n = rx.readinto(buf)
    return bytes(buf[:n])


@pytest.mark.parametrize("line", ["8E1", "8N1"])
@pytest.mark.parametrize("polarity", ["normal", "inverted"])
def test_program_assembles_small_and_without_irq(line, polarity):
    assembled = adafruit_pioasm.Program(program_source(line, polarity))
    assert len(assembled.assembled) <= 10  # leaves room for other PIO programs
    assert all((op >> 13) != 6 for op in assembled.assembled)  # no irq: pioemu would stop
    assert assembled.pio_kwargs["wrap"] == len(assembled.assembled) - 1


@pytest.mark.parametrize("line", ["8E1", "8N1"])
@pytest.mark.parametrize("polarity", ["normal", "inverted"])
def test_shipped_words_are_what_pioasm_assembles(line, polarity):
    """The board has no assembler: the words han_uart ships must be the source's."""
    assembled = adafruit_pioasm.Program(program_source(line, polarity))
    words, wrap_target, wrap = program(line, polarity)
    want = ", ".join("0x%04X" % w for w in assembled.assembled)
    assert list(words) == list(assembled.assembled), "han_uart.program should ship: " + want
    assert words.typecode == "H"
    assert assembled.pio_kwargs == {"sideset_enable": 0, "wrap_target": wrap_target,
                                    "wrap": wrap}  # nothing else the StateMachine needs
    # and the receiver hands exactly these to rp2pio
    sm = receiver(line, polarity).sm
    assert sm.program == list(assembled.assembled)
    assert (sm.wrap_target, sm.wrap) == (wrap_target, wrap)


@pytest.mark.parametrize("line", ["8E1", "8N1"])
@pytest.mark.parametrize("polarity", ["normal", "inverted"])
def test_every_byte_value_round_trips(line, polarity):
    rx = receiver(line, polarity)
    data = bytes(range(256))
    transmit(rx, data, line, inverted=(polarity == "inverted"))
    assert read_all(rx) == data
    assert (rx.bytes_ok, rx.framing_errors, rx.parity_errors) == (256, 0, 0)


def test_state_machine_settings_match_the_board():
    rx = receiver("8E1", "normal")
    sm = rx.sm
    assert sm.frequency == 2400 * 8
    assert sm.first_in_pin is PIN and sm.jmp_pin is PIN
    assert not sm.in_shift_right and sm.auto_push and sm.push_threshold == 10
    assert sm.pull_in_pin_up == 1 and sm.pull_in_pin_down == 0
    assert sm.ring is rx._ring and len(sm.ring) == 1024
    # 16-bit DMA slots (2 KB): right-aligned words (not in_shift_right) of at most 10 bits
    assert sm.ring.itemsize == 2 and sm.push_threshold <= 16
    inv = receiver("8N1", "inverted").sm
    assert inv.pull_in_pin_up == 0 and inv.pull_in_pin_down == 1


@pytest.mark.parametrize("error", [-0.03, -0.02, 0.02, 0.03])
@pytest.mark.parametrize("line", ["8E1", "8N1"])
def test_back_to_back_with_baud_error(line, error):
    rnd = random.Random(7)
    data = bytes(rnd.randrange(256) for _ in range(300))
    rx = receiver(line, "normal")
    transmit(rx, data, line, baud_error=error, gap_bits=0)
    assert read_all(rx) == data
    assert rx.errors == 0


def test_inverted_back_to_back_with_baud_error():
    data = bytes(range(0, 256, 3)) * 2
    for error in (-0.02, 0.02):
        rx = receiver("8E1", "inverted")
        transmit(rx, data, "8E1", inverted=True, baud_error=error)
        assert read_all(rx) == data


def test_wrong_parity_is_dropped_and_counted():
    rx = receiver("8E1", "normal")
    wave = fake_rp2pio.Line()
    wave.idle(2).char(0x41).char(0x42, parity_error=True).char(0x43).idle(2)
    rx.sm.attach(wave)
    rx.sm.emulate(int(wave.t))
    assert read_all(rx) == b"AC"
    assert rx.parity_errors == 1 and rx.framing_errors == 0


def test_framing_error_and_break_then_recovery():
    rx = receiver("8E1", "normal")
    wave = fake_rp2pio.Line()
    wave.idle(2).char(0x7E).char(0x55, stop=0)  # stop bit low
    wave.level(wave.t, 0)
    wave.t += 30 * 8  # a 30-bit break (line held at space)
    wave.idle(2).char(0xA5).char(0x7E).idle(2)
    rx.sm.attach(wave)
    rx.sm.emulate(int(wave.t))
    assert read_all(rx) == b"\x7e\xa5\x7e"
    assert rx.framing_errors == 1 and rx.parity_errors == 0  # docs/han-input.md: one


@pytest.mark.parametrize("polarity", ["normal", "inverted"])
def test_short_glitches_on_the_idle_line_are_ignored(polarity):
    rx = receiver("8E1", polarity)
    wave = fake_rp2pio.Line()
    wave.idle(2)
    for width in (1, 2, 3):
        wave.glitch(width).idle(3)
    wave.char(0x10).idle(2)
    rx.sm.attach(wave, invert=(polarity == "inverted"))
    rx.sm.emulate(int(wave.t))
    assert read_all(rx) == b"\x10"
    assert rx.errors == 0


def test_glitch_between_sample_points_does_not_change_data():
    rx = receiver("8N1", "normal")
    wave = fake_rp2pio.Line()
    wave.idle(2)
    start = wave.t
    wave.char(0xFF, line="8N1")
    # a 2-clock dip inside data bit 3, away from its sampling point (mid-bit)
    wave.level(start + 8 * 4 + 0.5, 0)
    wave.level(start + 8 * 4 + 2.5, 1)
    wave._times, wave._levels = zip(*sorted(zip(wave._times, wave._levels)))
    wave._times, wave._levels = list(wave._times), list(wave._levels)
    wave.idle(2)
    rx.sm.attach(wave)
    rx.sm.emulate(int(wave.t))
    assert read_all(rx) == b"\xff"


def test_mismatched_formats_show_errors():
    data = bytes(range(64, 192))
    rx = receiver("8E1", "normal")  # Kamstrup (8N1) read as 8E1
    transmit(rx, data, "8N1", gap_bits=0)
    assert read_all(rx) != data and rx.errors * 8 > len(data)
    rx = receiver("8N1", "normal")  # Aidon (8E1) read as 8N1
    transmit(rx, data, "8E1", gap_bits=0)
    assert read_all(rx) != data and rx.errors * 8 > len(data)
    rx = receiver("8E1", "normal")  # inverted adapter, normal setting
    transmit(rx, data, "8E1", inverted=True)
    assert read_all(rx) != data and rx.errors * 8 > len(data)


def test_one_second_stall_loses_nothing():
    """The loop does not read for 1 s (web page, GC, DHCP): 240 characters arrive at
    2400 baud 8E1; the DMA ring keeps them all and one readinto gets them in order."""
    rnd = random.Random(3)
    data = bytes(rnd.randrange(256) for _ in range(240))  # 240 * 11 bits = 1.1 s
    rx = receiver("8E1", "normal")
    transmit(rx, data, "8E1")
    assert rx.sm.pushed == 240
    assert read_all(rx) == data
    # and the ring keeps working across its wrap-around
    more = bytes(rnd.randrange(256) for _ in range(900))
    out = bytearray()
    for i in range(0, 900, 300):
        transmit(rx, more[i:i + 300], "8E1")
        out += read_all(rx)
    assert bytes(out) == more


def test_without_background_read_a_stall_loses_data():
    """Why the ring matters: polling the 4-word FIFO after a 1 s stall keeps 4 characters."""
    rx = receiver("8E1", "normal", rp2pio=type("M", (), {"StateMachine":
                                                            fake_rp2pio._NoBackground}))
    assert not rx.background
    data = bytes(range(40))
    transmit(rx, data, "8E1")
    assert read_all(rx) == data[:4]
    transmit(rx, b"xy", "8E1")  # read often enough, it works
    assert read_all(rx) == b"xy"


def test_readinto_respects_the_buffer_size():
    rx = receiver("8E1", "normal")
    transmit(rx, bytes(range(100)), "8E1")
    buf = bytearray(30)
    got = b""
    while True:
        n = rx.readinto(buf)
        if not n:
            break
        assert n <= 30
        got += bytes(buf[:n])
    assert got == bytes(range(100))


def test_busio_fallback():
    uart_rx = UartReceiver(PIN, "8E1", busio=fake_busio)
    u = uart_rx.uart
    assert (u.rx_pin, u.baudrate, u.bits, u.parity, u.stop, u.timeout) == (
        PIN, 2400, 8, "even", 1, 0)
    assert u.receiver_buffer_size >= 1024
    buf = bytearray(64)
    assert uart_rx.readinto(buf) == 0
    u.rx += b"hello"
    assert uart_rx.readinto(buf) == 5 and bytes(buf[:5]) == b"hello"
    assert UartReceiver(PIN, "8N1", busio=fake_busio).uart.parity is None


# --- auto-detection -----------------------------------------------------------------------

def _frames():
    corpus = load_corpus()
    small = [bytes.fromhex(c["hex"]) for c in corpus if len(c["hex"]) < 240]
    return small[:3]


class Meter:
    """A meter sending corpus frames in one line format, through the emulated PIO."""

    def __init__(self, line, inverted):
        self.line = line
        self.inverted = inverted

    def send(self, reader, frame):
        sm = reader.receiver.sm
        wave = fake_rp2pio.Line()
        wave.t = float(sm.clock)
        wave.idle(20).chars(frame, self.line).idle(20)
        sm.attach(wave, invert=self.inverted)
        sm.emulate(int(wave.t) - sm.clock)


def _run_detection(meter, reader, rounds=40):
    hdlc = HdlcReader()
    reader.watch(hdlc)
    buf = bytearray(512)
    frames = _frames()
    reader.readinto(buf)  # start the first receiver
    for i in range(rounds):
        meter.send(reader, frames[i % len(frames)])
        while True:
            n = reader.readinto(buf)
            if not n:
                break
            hdlc.feed(buf, n)
            while hdlc.next_frame():
                pass
        if reader.locked and hdlc.frames_ok >= 3:
            return hdlc
    return hdlc


def _pio_factory(kind, pin, line, polarity):
    return PioReceiver(pin, line, polarity, rp2pio=fake_rp2pio)


@pytest.mark.parametrize("line", ["8E1", "8N1"])
@pytest.mark.parametrize("inverted", [False, True])
def test_auto_detection_finds_the_meter_format(line, inverted):
    reader = HanReader(PIN, make_receiver=_pio_factory)
    reader.configure({"han_input": "pio", "han_line": "auto", "han_polarity": "auto"})
    hdlc = _run_detection(Meter(line, inverted), reader)
    polarity = "inverted" if inverted else "normal"
    assert reader.locked and hdlc.frames_ok >= 3
    assert reader.detected == "%s %s" % (line, polarity)
    assert (reader.line, reader.polarity) == (line, polarity)
    assert reader.describe() == "%s %s (detected)" % (line, polarity)
    assert reader.line_format == reader.describe()
    assert reader.switches == reader.candidates.index((line, polarity))


def test_fixed_setting_never_switches():
    reader = HanReader(PIN, make_receiver=_pio_factory)
    reader.configure({"han_input": "pio", "han_line": "8E1", "han_polarity": "normal"})
    assert reader.candidates == [("8E1", "normal")]
    hdlc = _run_detection(Meter("8N1", False), reader, rounds=6)
    assert reader.switches == 0 and hdlc.frames_ok == 0 and not reader.locked
    assert "no valid telegram" in reader.describe()


def test_partly_fixed_setting_searches_the_rest():
    reader = HanReader(PIN, make_receiver=_pio_factory)
    reader.configure({"han_input": "pio", "han_line": "8N1", "han_polarity": "auto"})
    assert reader.candidates == [("8N1", "normal"), ("8N1", "inverted")]
    _run_detection(Meter("8N1", True), reader)
    assert reader.detected == "8N1 inverted"


def test_configure_restarts_only_on_change():
    reader = HanReader(PIN, make_receiver=_pio_factory)
    settings = {"han_input": "pio", "han_line": "auto", "han_polarity": "auto"}
    reader.configure(settings)
    first = reader.receiver
    reader.configure(dict(settings, modbus_port=1502))
    assert reader.receiver is first
    reader.configure(dict(settings, han_line="8N1"))
    assert reader.receiver is not first and first.sm.deinited


def test_uart_input_searches_parity_only():
    made = []

    def factory(kind, pin, line, polarity):
        made.append((kind, line, polarity))
        return UartReceiver(pin, line, busio=fake_busio)

    reader = HanReader(PIN, make_receiver=factory)
    reader.configure({"han_input": "uart", "han_line": "auto", "han_polarity": "inverted"})
    assert reader.candidates == [("8E1", "normal"), ("8N1", "normal")]
    assert "inverted" in reader.last_error
    hdlc = HdlcReader()
    reader.watch(hdlc)
    buf = bytearray(256)
    reader.receiver.uart.rx += bytes(2000)  # bytes, but never a valid frame
    while reader.readinto(buf):
        pass
    assert made[-1] == ("uart", "8N1", "normal") and reader.switches == 1
    frame = _frames()[0]
    reader.receiver.uart.rx += frame
    n = reader.readinto(buf)
    hdlc.feed(buf, n)
    while hdlc.next_frame():
        pass
    reader.readinto(buf)
    assert reader.detected == "8N1 normal"


def test_lost_lock_searches_again():
    reader = HanReader(PIN, make_receiver=_pio_factory)
    reader.configure({"han_input": "pio", "han_line": "auto", "han_polarity": "auto"})
    _run_detection(Meter("8E1", False), reader)
    assert reader.detected == "8E1 normal"
    # The meter is swapped for a Kamstrup (8N1): garbage only, the lock is lost and found.
    hdlc = _run_detection(Meter("8N1", False), reader, rounds=80)
    assert reader.detected == "8N1 normal" and hdlc.frames_ok >= 3


def test_module_has_no_device_imports_at_top():
    for module in (han_uart, han_reader):
        src = open(module.__file__).read().split("\nclass ", 1)[0]
        for name in ("import rp2pio", "import busio", "import adafruit_pioasm", "import board"):
            assert ("\n" + name) not in src, module.__name__


# --- counters (issue 22): the running receiver counts too, and they never go back -----------

class _Counting(Meter):
    """A Meter that adds up what it sent and checks the reader's counters after each frame."""

    def __init__(self, line, inverted):
        super().__init__(line, inverted)
        self.sent = 0
        self.seen = []  # (bytes_ok, errors) after each frame

    def send(self, reader, frame):
        super().send(reader, frame)
        self.sent += len(frame)


def _feed(meter, reader, hdlc, frames):
    buf = bytearray(512)
    for frame in frames:
        meter.send(reader, frame)
        while True:
            n = reader.readinto(buf)
            if not n:
                break
            hdlc.feed(buf, n)
            while hdlc.next_frame():
                pass
        meter.seen.append((reader.bytes_ok, reader.errors))


def test_counters_include_the_running_receiver_when_detection_locks_at_once():
    reader = HanReader(PIN, make_receiver=_pio_factory)
    reader.configure({"han_input": "pio", "han_line": "auto", "han_polarity": "auto"})
    hdlc = HdlcReader()
    reader.watch(hdlc)
    meter = _Counting("8E1", False)  # the first candidate: no receiver is ever replaced
    _feed(meter, reader, hdlc, _frames() * 2)
    assert reader.switches == 0 and reader.detected == "8E1 normal"
    assert hdlc.frames_ok == 6
    assert reader.bytes_ok == meter.sent and reader.errors == 0


def test_counters_never_go_back_when_a_receiver_is_replaced():
    reader = HanReader(PIN, make_receiver=_pio_factory)
    reader.configure({"han_input": "pio", "han_line": "auto", "han_polarity": "auto"})
    hdlc = HdlcReader()
    reader.watch(hdlc)
    meter = _Counting("8N1", True)  # the last candidate: three receivers replaced
    for _ in range(40):
        _feed(meter, reader, hdlc, _frames())
        if reader.locked and hdlc.frames_ok >= 3:
            break
    assert reader.detected == "8N1 inverted" and reader.switches == 3
    for before, after in zip(meter.seen, meter.seen[1:]):
        assert after[0] >= before[0] and after[1] >= before[1], meter.seen
    assert reader.errors > 0  # the wrong formats saw framing and parity errors
    received = reader.bytes_ok
    _feed(meter, reader, hdlc, _frames())  # locked: every byte of these is counted
    assert reader.bytes_ok == received + sum(len(f) for f in _frames())


def test_a_fixed_format_on_a_garbled_line_counts_errors_and_says_garbled():
    """han_line = 8E1 fixed, the meter sends 8N1: no receiver is ever replaced, and the
    dashboard must say "garbled" (check the line format), not "silent" (check the cable)."""
    from han2x_core import webapi
    from han2x_core.app import App
    from han2x_core.i18n import tr
    from han2x_core.registers import Registers

    reader = HanReader(PIN, make_receiver=_pio_factory)
    app = App(reader, Registers(), 0, settings={})
    reader.configure({"han_input": "pio", "han_line": "8E1", "han_polarity": "normal"})
    reader.watch(app.hdlc)
    assert webapi.han_state(app, 0) == "silent"
    meter = Meter("8N1", False)
    for frame in _frames():
        meter.send(reader, frame)
        app.step(1000)
    assert reader.switches == 0 and app.hdlc.frames_ok == 0
    assert reader.errors > 0 and reader.bytes_ok + reader.errors > 0
    assert webapi.han_state(app, 1000) == "garbled"
    status = webapi.device(app, type("Web", (), {"uptime_s": 0, "requests": 0,
                                                  "errors": 0})(), 1000)
    assert status["han_line_errors"] == reader.errors and status["han_bytes"] == reader.bytes_ok
    assert "line" in tr("han_garbled", "en").lower()  # the advice: check the line format
