"""HAN receivers on the board: a PIO UART receiver (rp2pio) and a
busio.UART fallback, each for one line format (8E1/8N1) and polarity; the auto-detection
over them is han_reader.py. Shell: device modules are imported only when a receiver is
built; tests pass fakes (see han-protocol.md section 1).

The PIO receiver runs at 8 clocks per bit and pushes one right-aligned word per character:
data bits (first one highest), the parity bit (8E1), then the stop bit as sampled. A looping DMA
(StateMachine.background_read) copies the words into a ring of 32-bit slots, so the loop
may stall for seconds without losing bytes; readinto() drains the ring, checks stop and
parity bits and counts what it drops. The ring's slots are 16 bits: the DMA then reads the
low half of each FIFO word, where the right-aligned character (at most 10 bits) is, and the
ring costs half the heap of 32-bit slots.
"""

from array import array

from micropython import const

_TYPE_CHECKING = const(0)  # mypy: true (pyproject always_true); the compiler drops the block
if _TYPE_CHECKING:
    from cpmodules import Busio, Rp2pio

BAUD = const(2400)
_CLOCKS_PER_BIT = const(8)
_EMPTY = const(0xFFFF)  # ring slot not yet filled: the PIO never pushes a value >= 2**10
_RING_WORDS = const(1024)  # 4.7 s of characters at 2400 baud 8E1 (2 KB)


def program(line, polarity):
    """(instruction words, wrap_target, wrap) of the receiver for one line format and
    polarity: tools/han_pio.py's program_source as adafruit_pioasm assembles it (the
    assembler is 9.5 KB of heap the board does not spend; a test compares every format)."""
    set_x = 0xE620 | (8 if line == "8E1" else 7)  # set x, data bits - 1 [6]
    if polarity == "inverted":
        words = (0x2020, 0x20A0, 0xA142, 0x00C5, 0x0001, set_x, 0x4001, 0x0646, 0x4001,
                 0x00C0)  # type: tuple
        return array("H", words), 1, 9
    words = (0x20A0, 0x2020, 0xA142, 0x00C1, set_x, 0x4001, 0x0645, 0x4001, 0x00C1)
    return array("H", words), 0, 8


def _reverse_table():
    table = bytearray(256)
    for i in range(256):
        r = 0
        for b in range(8):
            if i & (1 << b):
                r |= 0x80 >> b
        table[i] = r
    return bytes(table)


_REVERSE = _reverse_table()


def _parity(x):
    """1 when the byte x has an odd number of ones."""
    x ^= x >> 4
    x ^= x >> 2
    x ^= x >> 1
    return x & 1


class PioReceiver:
    """One PIO state machine receiving one line format; readinto(buf) -> n, non-blocking."""

    def __init__(self, pin, line, polarity, rp2pio: "Rp2pio | None" = None,
                 ring_words=_RING_WORDS, ring=None):
        if rp2pio is None:
            import rp2pio
        self.line = line
        self.polarity = polarity
        self._bits = 9 if line == "8E1" else 8
        self._invert = ((1 << (self._bits + 1)) - 1) if polarity == "inverted" else 0
        self.bytes_ok = 0
        self.framing_errors = 0
        self.parity_errors = 0
        words, wrap_target, wrap = program(line, polarity)
        pull_up = 1 if polarity == "normal" else 0  # idle level when the cable is out
        self.sm = rp2pio.StateMachine(  # type: ignore[union-attr]  # imported above
            words,
            frequency=BAUD * _CLOCKS_PER_BIT,
            first_in_pin=pin,
            jmp_pin=pin,
            pull_in_pin_up=pull_up,
            pull_in_pin_down=1 - pull_up,
            in_shift_right=False,
            auto_push=True,
            push_threshold=self._bits + 1,
            wrap_target=wrap_target,
            wrap=wrap,
        )
        if ring is None:  # one ring per reader: a format switch reuses it (no heap churn)
            ring = array("H", range(ring_words))  # 16-bit DMA slots; sized from len(range)
        for i in range(len(ring)):
            ring[i] = _EMPTY
        self._ring = ring
        self._pos = 0
        self.background = hasattr(self.sm, "background_read")
        if self.background:
            self.sm.background_read(loop=self._ring)
        else:  # old CircuitPython: poll the 4-word FIFO (a stall over ~15 ms loses bytes)
            self._one = array("I", [0])

    def deinit(self):
        self.sm.deinit()

    @property
    def errors(self):
        return self.framing_errors + self.parity_errors

    def _next_word(self):
        if self.background:
            ring = self._ring
            word = ring[self._pos]
            if word == _EMPTY:
                return -1
            ring[self._pos] = _EMPTY
            self._pos += 1
            if self._pos == len(ring):
                self._pos = 0
            return word
        if not self.sm.in_waiting:
            return -1
        self.sm.readinto(self._one)
        return self._one[0]

    def readinto(self, buf):
        """Copy received characters into buf; return how many (0 when none)."""
        n = 0
        limit = len(buf)
        bits = self._bits
        while n < limit:
            word = self._next_word()
            if word < 0:
                break
            word ^= self._invert
            if not word & 1:  # stop bit low: framing error or break
                self.framing_errors += 1
                continue
            data = (word >> (bits - 7)) & 0xFF  # bit-reversed: first bit is the highest
            if bits == 9 and _parity(data) != (word >> 1) & 1:  # even parity
                self.parity_errors += 1
                continue
            buf[n] = _REVERSE[data]
            n += 1
        self.bytes_ok += n
        return n


class UartReceiver:
    """busio.UART fallback: hardware UART pins only, normal polarity only."""

    def __init__(self, pin, line, busio: "Busio | None" = None, buffer_size=2048):
        if busio is None:
            import busio
        self.line = line
        self.polarity = "normal"
        self.bytes_ok = 0
        self.framing_errors = 0
        self.parity_errors = 0
        parity = busio.UART.Parity.EVEN if line == "8E1" else None  # type: ignore[union-attr]
        self.uart = busio.UART(  # type: ignore[union-attr]
            None, pin, baudrate=BAUD, bits=8, parity=parity,  # type: ignore[arg-type]  # stub: int
            stop=1, timeout=0, receiver_buffer_size=buffer_size)
        self.errors = 0  # busio drops bad characters without telling

    def deinit(self):
        self.uart.deinit()

    def readinto(self, buf):
        if not self.uart.in_waiting:
            return 0
        n = self.uart.readinto(buf) or 0
        self.bytes_ok += n
        return n
