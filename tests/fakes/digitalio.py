"""Fake digitalio: pins are plain objects; inputs read from `levels[pin name]`."""


class Direction:
    INPUT = "input"
    OUTPUT = "output"


class Pull:
    UP = "up"
    DOWN = "down"


class DriveMode:
    PUSH_PULL = "push_pull"
    OPEN_DRAIN = "open_drain"


levels = {}  # pin name -> bool level seen by an input (default: the pull level)
outputs = {}  # pin name -> list of values written
claimed = set()


class DigitalInOut:
    def __init__(self, pin):
        if pin.name in claimed:
            raise ValueError("%s in use" % pin.name)
        claimed.add(pin.name)
        self.pin = pin
        self.direction = Direction.INPUT
        self.pull = None
        self._value = False

    def switch_to_output(self, value=False, drive_mode=DriveMode.PUSH_PULL):
        self.direction = Direction.OUTPUT
        self.value = value

    def switch_to_input(self, pull=None):
        self.direction = Direction.INPUT
        self.pull = pull

    @property
    def value(self):
        if self.direction == Direction.OUTPUT:
            return self._value
        return levels.get(self.pin.name, self.pull != Pull.DOWN)

    @value.setter
    def value(self, v):
        self._value = bool(v)
        outputs.setdefault(self.pin.name, []).append(bool(v))

    def deinit(self):
        claimed.discard(self.pin.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.deinit()


def _reset():
    levels.clear()
    outputs.clear()
    claimed.clear()
