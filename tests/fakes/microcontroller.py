"""Fake microcontroller: Pin, cpu.temperature, reset(), nvm, watchdog object."""


class Pin:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "board." + self.name


class ResetCalled(SystemExit):
    """microcontroller.reset() never returns on the board; here it ends the test run."""


class _Cpu:
    def __init__(self):
        self.temperature = 27.5
        self.frequency = 125000000
        self.uid = bytearray(b"\xe6\x61\x38\x10\x23\x45\x67\x89")


class _Runmode:
    NORMAL = "normal"
    SAFE_MODE = "safe"
    UF2 = "uf2"
    BOOTLOADER = "bootloader"


RunMode = _Runmode
cpu = _Cpu()
nvm = bytearray(b"\xff" * 256)  # erased flash, as on a new board
resets = []
runmode = None
watchdog = None


def reset():
    resets.append(True)
    raise ResetCalled()


def on_next_reset(mode):
    global runmode
    runmode = mode


def _reset():
    global cpu, resets, runmode
    cpu = _Cpu()
    resets = []
    runmode = None
    import watchdog as wd

    globals()["watchdog"] = wd.WatchDogTimer()
