"""HAN receivers on the board: a PIO UART receiver (rp2pio + adafruit_pioasm) and a
busio.UART fallback, each for one line format (8E1/8N1) and polarity; the auto-detection
over them is han_reader.py. Shell: device modules are imported only when a receiver is
built; tests pass fakes (see han-protocol.md section 1).

The PIO receiver runs at 8 clocks per bit and pushes one right-aligned word per character:
data bits (first one highest), the parity bit (8E1), then the stop bit as sampled. A looping DMA
(StateMachine.background_read) copies the words into a ring of 32-bit slots, so the loop
may stall for seconds without losing bytes; readinto() drains the ring, checks stop and
parity bits and counts what it drops.
"""

from micropython import const

BAUD = const(2400)
_CLOCKS_PER_BIT = const(8)
_EMPTY = const(0xFFFF)  # ring slot not yet filled: the PIO never pushes a value >= 2**10
_RING_WORDS = const(1024)  # 4.7 s of characters at 2400 baud 8E1


def program_source(line, polarity):
    """PIO assembly of the receiver for one line format and polarity (pin = in base 0).

    8 clocks per bit; t = clocks after the start edge is seen (0..1 clock late). The start
    bit is checked at t=3 (a shorter glitch restarts), data bit k sampled at t=11+8k, the
    stop bit at t=11+8D (D = 9 for 8E1, 8 for 8N1) where autopush hands the word over, and
    the next start edge is awaited from t=13+8D: one character takes the program 8D+13
    clocks (85 for 8E1 against 88 on the wire), so back-to-back characters from a sender
    up to ~3 % fast never accumulate lag. A low stop bit (framing error, break) waits for
    the line to return to idle first. Bits shift in from the right: the first data bit
    ends up highest, the stop bit in bit 0.
    """
    data_bits = 9 if line == "8E1" else 8  # 8 data (+ parity)
    if polarity == "inverted":  # idle (mark) is low: the start bit is high
        head = "broken:\n    wait 0 pin 0\n.wrap_target\nstart:\n    wait 1 pin 0\n"
        check = "    jmp pin good\n    jmp start\ngood:\n"
        tail = "    jmp pin broken\n"
    else:
        head = ".wrap_target\nbroken:\n    wait 1 pin 0\nstart:\n    wait 0 pin 0\n"
        check = "    jmp pin start\n"
        tail = "    jmp pin start\n"
    return (
        ".program han_rx\n"
        "%s"
        "    nop [1]\n"
        "%s"
        "    set x, %d [6]\n"
        "bitloop:\n"
        "    in pins, 1\n"
        "    jmp x-- bitloop [6]\n"
        "    in pins, 1\n"
        "%s"
        ".wrap\n"
    ) % (head, check, data_bits - 1, tail)


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

    def __init__(self, pin, line, polarity, rp2pio=None, pioasm=None, ring_words=_RING_WORDS,
                 ring=None):
        if rp2pio is None:
            import rp2pio
        if pioasm is None:
            import adafruit_pioasm as pioasm
        from array import array

        self.line = line
        self.polarity = polarity
        self._bits = 9 if line == "8E1" else 8
        self._invert = ((1 << (self._bits + 1)) - 1) if polarity == "inverted" else 0
        self.bytes_ok = 0
        self.framing_errors = 0
        self.parity_errors = 0
        program = pioasm.Program(program_source(line, polarity))
        pull_up = 1 if polarity == "normal" else 0  # idle level when the cable is out
        self.sm = rp2pio.StateMachine(
            program.assembled,
            frequency=BAUD * _CLOCKS_PER_BIT,
            first_in_pin=pin,
            jmp_pin=pin,
            pull_in_pin_up=pull_up,
            pull_in_pin_down=1 - pull_up,
            in_shift_right=False,
            auto_push=True,
            push_threshold=self._bits + 1,
            **program.pio_kwargs
        )
        if ring is None:  # one ring per reader: a format switch reuses it (no heap churn)
            ring = array("I", bytes(4 * ring_words))  # 32-bit slots: 32-bit DMA reads
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

    def __init__(self, pin, line, busio=None, buffer_size=2048):
        if busio is None:
            import busio
        self.line = line
        self.polarity = "normal"
        self.bytes_ok = 0
        self.framing_errors = 0
        self.parity_errors = 0
        parity = busio.UART.Parity.EVEN if line == "8E1" else None
        self.uart = busio.UART(None, pin, baudrate=BAUD, bits=8, parity=parity, stop=1,
                               timeout=0, receiver_buffer_size=buffer_size)
        self.errors = 0  # busio drops bad characters without telling

    def deinit(self):
        self.uart.deinit()

    def readinto(self, buf):
        if not self.uart.in_waiting:
            return 0
        n = self.uart.readinto(buf) or 0
        self.bytes_ok += n
        return n
