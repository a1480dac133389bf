"""Fake busio: SPI (records) and UART (reads from a byte queue `rx`)."""


class SPI:
    def __init__(self, clock, MOSI=None, MISO=None):
        self.pins = (clock, MOSI, MISO)
        self.locked = False

    def try_lock(self):
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self):
        self.locked = False

    def configure(self, baudrate=100000, polarity=0, phase=0, bits=8):
        pass

    def write(self, buf, start=0, end=None):
        pass

    def readinto(self, buf, start=0, end=None, write_value=0):
        end = len(buf) if end is None else end
        for i in range(start, end):
            buf[i] = 0

    def deinit(self):
        pass


class UART:
    class Parity:
        ODD = "odd"
        EVEN = "even"

    instances = []

    def __init__(self, tx=None, rx=None, *, baudrate=9600, bits=8, parity=None, stop=1,
                 timeout=1, receiver_buffer_size=64):
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


def _reset():
    UART.instances = []
