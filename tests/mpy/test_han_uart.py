"""han_uart.py decode path and han_reader.py auto-detection on the MicroPython VM (fake
state machine that writes words the way the PIO program + DMA do; the program itself is
tested in tests/test_han_uart.py with the PIO emulator)."""

from han2x_core.han_reader import HanReader
from han2x_core.han_uart import PioReceiver


class _SM:
    def __init__(self, program, frequency, **kw):
        self.kw = kw
        self.ring = None
        self.pos = 0

    def background_read(self, once=None, loop=None, loop2=None, swap=False):
        self.ring = loop

    def deinit(self):
        pass

    def put(self, word):
        self.ring[self.pos] = word
        self.pos = (self.pos + 1) % len(self.ring)


class _Rp2pio:
    StateMachine = _SM


def _word(byte, line, parity_error=False, stop=1):
    """What the PIO pushes: bits shifted in from the right, first data bit highest."""
    bits = [(byte >> i) & 1 for i in range(8)]
    if line == "8E1":
        p = 0
        for b in bits:
            p ^= b
        bits.append(p ^ (1 if parity_error else 0))
    bits.append(stop)
    w = 0
    for b in bits:
        w = (w << 1) | b
    return w


def test_decode_both_formats():
    for line in ("8E1", "8N1"):
        rx = PioReceiver(None, line, "normal", rp2pio=_Rp2pio, ring_words=64)
        for b in range(200):
            rx.sm.put(_word(b, line))
            if b % 50 == 49:
                pass
        out = bytearray()
        buf = bytearray(32)
        while True:
            n = rx.readinto(buf)
            if not n:
                break
            out.extend(buf[:n])
        # the ring holds 64 words: only the last 64 survive a 200-word burst unread
        assert len(out) == 64


def test_errors_and_inversion():
    rx = PioReceiver(None, "8E1", "inverted", rp2pio=_Rp2pio, ring_words=16)
    mask = 0x3FF
    rx.sm.put(_word(0x41, "8E1") ^ mask)
    rx.sm.put(_word(0x42, "8E1", parity_error=True) ^ mask)
    rx.sm.put(_word(0x43, "8E1", stop=0) ^ mask)
    rx.sm.put(_word(0x7E, "8E1") ^ mask)
    buf = bytearray(8)
    n = rx.readinto(buf)
    assert bytes(buf[:n]) == b"A~"
    assert rx.parity_errors == 1 and rx.framing_errors == 1


def test_readinto_does_not_allocate():
    import micropython

    rx = PioReceiver(None, "8E1", "normal", rp2pio=_Rp2pio, ring_words=64)
    for b in range(40):
        rx.sm.put(_word(b, "8E1"))
    rx.sm.put(_word(1, "8E1", parity_error=True))
    buf = bytearray(64)
    micropython.heap_lock()
    try:
        n = rx.readinto(buf)
        m = rx.readinto(buf)
    finally:
        micropython.heap_unlock()
    assert n == 40 and m == 0 and bytes(buf[:3]) == b"\x00\x01\x02"


class _Hdlc:
    frames_ok = 0


def test_detection_switches_on_errors():
    made = []

    def factory(kind, pin, line, polarity):
        rx = PioReceiver(pin, line, polarity, rp2pio=_Rp2pio, ring_words=128)
        made.append(rx)
        return rx

    reader = HanReader(None, make_receiver=factory)
    reader.configure({"han_input": "pio", "han_line": "auto", "han_polarity": "auto"})
    hdlc = _Hdlc()
    reader.watch(hdlc)
    buf = bytearray(128)
    for _ in range(100):
        made[-1].sm.put(_word(0x55, "8E1", stop=0))
    reader.readinto(buf)
    assert reader.switches == 1 and reader.line == "8N1"
    made[-1].sm.put(_word(0x7E, "8N1"))
    assert reader.readinto(buf) == 1
    hdlc.frames_ok += 1
    reader.readinto(buf)
    assert reader.detected == "8N1 normal" and reader.locked


def test_zz_release_modules():
    """Runs last in this file: drop han2x_core.han_uart and han_reader from the shared heap
    (the runner keeps one process for every file; the modules tested later do not need
    them)."""
    import sys

    import han2x_core

    for name in ("han_reader", "han_uart"):
        sys.modules.pop("han2x_core." + name, None)
        try:
            delattr(han2x_core, name)
        except AttributeError:
            pass
