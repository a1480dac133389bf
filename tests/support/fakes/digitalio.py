"""Fake digitalio: inputs read from `levels[pin name]`; outputs record into `outputs`.
Setting an input's value or an output's pull raises AttributeError, as on the board."""


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
claimed = set()  # GPIO numbers in use (board.RX and board.D0 are one pin)


class DigitalInOut:
    def __init__(self, pin):
        if pin.gpio in claimed:
            raise ValueError("%s in use" % pin.name)
        claimed.add(pin.gpio)
        self.pin = pin
        self._direction = Direction.INPUT
        self._pull = None
        self._value = False
        self._deinited = False
        self.drive_mode = DriveMode.PUSH_PULL

    def _check(self):
        if self._deinited:
            raise ValueError("Object has been deinitialized and can no longer be used. "
                             "Create a new object.")

    def switch_to_output(self, value=False, drive_mode=DriveMode.PUSH_PULL):
        self._check()
        self._direction = Direction.OUTPUT
        self._pull = None
        self.drive_mode = drive_mode
        self._write(value)

    def switch_to_input(self, pull=None):
        self._check()
        self._direction = Direction.INPUT
        self._pull = pull

    @property
    def direction(self):
        return self._direction

    @direction.setter
    def direction(self, d):
        if d == Direction.OUTPUT:
            self.switch_to_output()
        else:
            self.switch_to_input()

    @property
    def pull(self):
        self._check()
        return self._pull

    @pull.setter
    def pull(self, p):
        self._check()
        if self._direction == Direction.OUTPUT:
            raise AttributeError("Pull not used when direction is output.")
        self._pull = p

    @property
    def value(self):
        self._check()
        if self._direction == Direction.OUTPUT:
            return self._value
        return levels.get(self.pin.name, self._pull != Pull.DOWN)

    @value.setter
    def value(self, v):
        self._check()
        if self._direction == Direction.INPUT:
            raise AttributeError("Cannot set value when direction is input.")
        self._write(v)

    def _write(self, v):
        self._value = bool(v)
        outputs.setdefault(self.pin.name, []).append(bool(v))

    def deinit(self):
        if not self._deinited:
            claimed.discard(self.pin.gpio)
        self._deinited = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.deinit()


TEST_ONLY = ("levels", "outputs", "claimed")


def _reset():
    levels.clear()
    outputs.clear()
    claimed.clear()
