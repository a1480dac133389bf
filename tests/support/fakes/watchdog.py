"""Fake watchdog: a WatchDogTimer that counts feeds. The RP2040's watchdog counts a 24-bit
microsecond value (that counts down twice per tick, erratum RP2040-E1): a timeout over
8.388 s raises ValueError as CircuitPython on the RP2040 does."""

MAX_TIMEOUT_MS = 8388  # 0xFFFFFF / 2 microseconds, rounded down to whole milliseconds


class WatchDogMode:
    RAISE = "raise"
    RESET = "reset"


class WatchDogTimeout(Exception):
    pass


class WatchDogTimer:
    def __init__(self):
        self._timeout = None
        self.mode = None
        self.feeds = 0

    @property
    def timeout(self):
        return self._timeout

    @timeout.setter
    def timeout(self, seconds):
        if seconds <= 0:
            raise ValueError("timeout must be > 0")
        if int(seconds * 1000) > MAX_TIMEOUT_MS:
            raise ValueError("timeout must be <= %d" % MAX_TIMEOUT_MS)
        self._timeout = seconds
        self.feed()  # setting the timeout also feeds

    def feed(self):
        if self.mode is not None:  # silently nothing when inactive, like CircuitPython
            self.feeds += 1


TEST_ONLY = ("MAX_TIMEOUT_MS",)
