"""Fake microcontroller: Pin, cpu.temperature, reset(), nvm, watchdog object."""


class Pin:
    def __init__(self):
        raise TypeError("cannot create 'Pin' instances")  # only board.X gives pins

    @classmethod
    def _make(cls, name, gpio):
        pin = object.__new__(cls)
        pin.name = name
        pin.gpio = gpio
        return pin

    def __repr__(self):
        return "board." + self.name


class ResetCalled(SystemExit):
    """microcontroller.reset() never returns on the board; here it ends the test run."""


class Processor:
    def __init__(self):
        self.temperature = 27.5
        self.frequency = 125000000
        self.uid = bytearray(b"\xe6\x61\x38\x10\x23\x45\x67\x89")


class RunMode:
    NORMAL = "normal"
    SAFE_MODE = "safe"
    UF2 = "uf2"
    BOOTLOADER = "bootloader"


cpu = Processor()
nvm = bytearray(b"\xff" * 256)  # erased flash, as on a new board
resets = []
runmode = None
watchdog = None


def reset():
    resets.append(True)
    raise ResetCalled()


def on_next_reset(run_mode):
    global runmode
    runmode = run_mode


TEST_ONLY = ("ResetCalled", "resets", "runmode")


def _reset():
    global cpu, resets, runmode
    cpu = Processor()
    resets = []
    runmode = None
    import watchdog as wd

    globals()["watchdog"] = wd.WatchDogTimer()
