"""HAN2X open firmware on the board: the loop. Pins per board in docs/wiring.md; the
start-up is han2x_core/boardstart.py, the loop's work is han2x_core.app.App; every piece is
tested on a PC (tests/test_board.py).

boardstart.start() builds the device (han2x_core.assembly.build, also used by
tools/simulate.py and tests/mpy/device_vm.py) and is dropped again, so that neither its code
nor the start-up's locals hold heap while the loop runs. Every firmware import is inside the
guarded start-up, and a start that fails again and again backs off (han2x_core/startup.py:
Modbus only, then a safe state) instead of resetting for ever."""

import gc
import time
import traceback

import microcontroller
import supervisor


# A step with no work waiting sleeps IDLE_S: the core idles in WFI instead of polling at
# full speed for a HAN byte or a request (docs/architecture.md, "The app loop").
IDLE_S = 0.02


def main(startup):
    from han2x_core import boardstart

    app = boardstart.start(startup)
    del boardstart
    from han2x_core import unload
    from han2x_core.ticks import ticks_add, ticks_diff

    unload("boardstart")  # the start-up's code: not needed again until the next start
    regs = app.registers
    stable_at = ticks_add(supervisor.ticks_ms(), startup.STABLE_MS)
    gc.collect()
    app.free_memory_min = low = gc.mem_free()
    regs.set_free_memory_min(low)
    while True:
        now = supervisor.ticks_ms()
        busy = app.step(now)
        free = gc.mem_free()  # before the collection: this step's garbage counts too
        if free < low:
            app.free_memory_min = low = free
            regs.set_free_memory_min(low)
        gc.collect()
        if stable_at is not None and ticks_diff(now, stable_at) >= 0:
            stable_at = None
            startup.ok(microcontroller.nvm)  # a good start: the next one is a full one
            del startup  # and the module: not needed again until the next start (2.3 KB)
            _forget_startup()
        if not busy:  # nothing waiting: idle the core (WFI) until the next tick
            time.sleep(IDLE_S)


def _forget_startup():
    from han2x_core import unload

    globals().pop("startup", None)
    unload("startup")


try:
    from han2x_core import startup

    main(startup)
except KeyboardInterrupt:  # Ctrl-C on the serial console: leave a REPL the watchdog spares
    if microcontroller.watchdog is not None:
        microcontroller.watchdog.mode = None
    from han2x_core import startup  # again: dropped once the start was stable

    startup.ok(microcontroller.nvm)  # stopped by hand: not a failed start
    print("HAN2X stopped; press Ctrl-D to start again")
except Exception as e:  # start-up failed (the loop itself never raises): log, restart
    traceback.print_exception(e)
    try:
        from han2x_core import startup

        startup.failed(microcontroller.nvm, e)  # the reason, for a later safe state
    except Exception:
        pass
    microcontroller.reset()
