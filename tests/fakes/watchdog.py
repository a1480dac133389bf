"""Fake watchdog: a WatchDogTimer that counts feeds."""


class WatchDogMode:
    RAISE = "raise"
    RESET = "reset"


class WatchDogTimeout(Exception):
    pass


class WatchDogTimer:
    def __init__(self):
        self.timeout = None
        self.mode = None
        self.feeds = 0

    def feed(self):
        if self.mode is not None:  # silently nothing when inactive, like CircuitPython
            self.feeds += 1

    def deinit(self):
        self.mode = None
