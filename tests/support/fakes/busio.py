"""Fake busio: SPI (records; every transfer needs the lock) and UART (reads from a byte
queue `rx`). Signatures: circuitpython-stubs (_stubs.strict wraps every method, the
inherited ones too). The lock rule is the W5500 model's (tools/sim/w5500_model.py)."""

from tools.sim.w5500_model import LockedSPI, requires_lock as _requires_lock


class SPI(LockedSPI):
    def __init__(self, clock, MOSI=None, MISO=None, half_duplex=False):
        self.pins = (clock, MOSI, MISO)

    def write(self, buffer, *, start=0, end=None):
        _requires_lock(self)

    def readinto(self, buffer, *, start=0, end=None, write_value=0):
        _requires_lock(self)
        end = len(buffer) if end is None else end
        for i in range(start, end):
            buffer[i] = 0

    def write_readinto(self, out_buffer, in_buffer, *, out_start=0, out_end=None, in_start=0,
                       in_end=None):
        _requires_lock(self)

    def deinit(self):
        pass


class UART:
    class Parity:
        ODD = "odd"
        EVEN = "even"

    instances = []

    def __init__(self, tx=None, rx=None, *, baudrate=9600, bits=8, parity=None, stop=1,
                 timeout=1, receiver_buffer_size=64, **unused):
        self.rx_pin = rx
        self.baudrate = baudrate
        self.bits = bits
        self.parity = parity
        self.stop = stop
        self.timeout = timeout
        self.receiver_buffer_size = receiver_buffer_size
        self.rx = bytearray()
        self.closed = False
        UART.instances.append(self)

    @property
    def in_waiting(self):
        return len(self.rx)

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        if not n:
            return None
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n

    def deinit(self):
        self.closed = True


TEST_ONLY = ("UART.instances",)


def _reset():
    UART.instances = []
