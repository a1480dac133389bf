"""Fake rp2pio that really runs the PIO program, in rp2040-pio-emulator (pioemu).

StateMachine(...) keeps the program and settings. The test describes the RX line with a
`Line` (levels over time, in PIO clocks) and calls `sm.emulate(clocks)`: the emulator executes
the program clock by clock with the line on GPIO0, and every word the program pushes goes
where the RP2040's DMA would put it: the next slot of the background_read(loop=...) ring,
or the RX FIFO (4 words, later pushes stall) for readinto().
"""

import bisect
from collections import deque

instances = []


class Line:
    """A UART line as a step function of time in PIO clocks (8 clocks per bit)."""

    def __init__(self, idle=1, clocks_per_bit=8.0):
        self.idle_level = idle
        self.bit = clocks_per_bit
        self.t = 0.0
        self._times = [0.0]
        self._levels = [idle]

    def level(self, t, value):
        """Set the line to value (0/1, before any inversion) from time t on."""
        self._times.append(t)
        self._levels.append(value)

    def idle(self, bits):
        self.level(self.t, 1)
        self.t += bits * self.bit
        return self

    def char(self, byte, line="8E1", baud_error=0.0, parity_error=False, stop=1):
        """One character at the current time; baud_error=+0.02 is a sender 2 % fast."""
        bit = self.bit / (1.0 + baud_error)
        bits = [0] + [(byte >> i) & 1 for i in range(8)]
        if line == "8E1":
            p = bin(byte).count("1") & 1
            bits.append(p ^ (1 if parity_error else 0))
        bits.append(stop)
        for b in bits:
            self.level(self.t, b)
            self.t += bit
        self.level(self.t, 1)
        return self

    def chars(self, data, line="8E1", baud_error=0.0, gap_bits=0):
        for byte in data:
            self.char(byte, line, baud_error)
            if gap_bits:
                self.idle(gap_bits)
        return self

    def glitch(self, clocks, value=0):
        """A short pulse to value at the current time, then back to idle (mark)."""
        self.level(self.t, value)
        self.t += clocks
        self.level(self.t, 1)
        return self

    def sample(self, clock, invert):
        i = bisect.bisect_right(self._times, clock) - 1
        v = self._levels[i]
        return v ^ 1 if invert else v


class StateMachine:
    def __init__(self, program, frequency, *, first_in_pin=None, jmp_pin=None,
                 in_shift_right=True, wrap_target=0, wrap=-1, pull_in_pin_up=0,
                 pull_in_pin_down=0, auto_push=False, push_threshold=32, **unused):
        """Keyword arguments are those of the stubs (checked by _stubs.strict); the ones the
        emulator cannot honour stay at their defaults or raise."""
        import pioemu  # noqa: F401  (fail early when the emulator is missing)

        if first_in_pin is None:
            raise ValueError("the fake receives on first_in_pin; none given")
        self.program = list(program)
        self.frequency = frequency
        self.first_in_pin = first_in_pin
        self.jmp_pin = jmp_pin
        self.in_shift_right = in_shift_right
        self.auto_push = auto_push
        self.push_threshold = push_threshold
        self.wrap_target = wrap_target
        self.wrap = wrap if wrap >= 0 else len(self.program) - 1
        self.pull_in_pin_up = pull_in_pin_up
        self.pull_in_pin_down = pull_in_pin_down
        self.unused = unused
        self.line = None
        self.invert = False
        self.fifo = deque()
        self.ring = None
        self.dma_pos = 0
        self.pushed = 0
        self.stalled_pushes = 0
        self.deinited = False
        self._gen = None
        self.clock = 0
        instances.append(self)

    def attach(self, line, invert=False):
        """Connect a Line; invert=True models an inverting adapter between meter and pin."""
        self.line = line
        self.invert = invert

    def background_read(self, once=None, *, loop=None, loop2=None, swap=False):
        self.ring = loop
        self.dma_pos = 0

    def stop_background_read(self):
        self.ring = None

    @property
    def in_waiting(self):
        return len(self.fifo)

    def readinto(self, buffer, *, start=0, end=None, swap=False):
        end = len(buffer) if end is None else end
        for i in range(start, end):
            if not self.fifo:
                raise RuntimeError("fake readinto would block forever")
            buffer[i] = self.fifo.popleft()

    def deinit(self):
        self.deinited = True

    def _start(self):
        import pioemu

        # The emulator has no IN_BASE: pins are numbered from first_in_pin, where the line
        # is. JMP PIN reads the GPIO jmp_pin names (GPIO 0 when None, as EXECCTRL resets),
        # which is the line only when it is the same pin.
        base = self.first_in_pin.gpio
        jmp = (0 if self.jmp_pin is None else self.jmp_pin.gpio) - base

        def source(clock: int) -> int:
            if self.line is None:
                return 1
            return self.line.sample(clock, self.invert)

        self._gen = pioemu.emulate(
            self.program, stop_when=lambda op, state: False, input_source=source,
            shift_isr_right=self.in_shift_right, jmp_pin=jmp if jmp >= 0 else 31,
            auto_push=self.auto_push,
            push_threshold=self.push_threshold,
            wrap_target=self.wrap_target, wrap_top=self.wrap)

    def emulate(self, clocks):
        """Run the program for `clocks` PIO clocks; move pushed words like the DMA does."""
        if self._gen is None:
            self._start()
        stop = self.clock + clocks
        steps = 0
        while self.clock < stop:
            before, after = next(self._gen)
            steps += 1
            self.clock = after.clock
            fifo = after.receive_fifo
            while fifo:
                word = fifo.popleft()
                self.pushed += 1
                if self.ring is not None:
                    # CircuitPython's background_read reads the FIFO register at its own
                    # address in transfers of the ring's item size: the word's low bytes
                    # (a left-aligned word from in_shift_right would lose its data).
                    self.ring[self.dma_pos] = word & ((1 << 8 * self.ring.itemsize) - 1)
                    self.dma_pos = (self.dma_pos + 1) % len(self.ring)
                elif len(self.fifo) < 4:
                    self.fifo.append(word)
                else:
                    self.stalled_pushes += 1  # the real SM would stall; data is lost
        return steps


class _NoBackground(StateMachine):
    """A CircuitPython without background_read (before 9.1)."""

    background_read = property(lambda self: (_ for _ in ()).throw(AttributeError()))


TEST_ONLY = ("Line", "instances", "StateMachine.attach", "StateMachine.emulate")


def _reset():
    instances.clear()
