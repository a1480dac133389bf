"""HAN2X open firmware on the board: wiring only. Pins per board in docs/wiring.md; the
loop is han2x_core.app.App; every piece is tested on a PC (tests/test_board.py).

The device is assembled by han2x_core.assembly.build (also used by tools/simulate.py and
tests/mpy/device_vm.py) and that module dropped again. Start-up order: HAN input and Modbus
first (the product), the web server last, so that a heap too small for everything still
serves Modbus. Every firmware import is inside the
guarded start-up, and a start that fails again and again backs off (han2x_core/startup.py:
Modbus only, then a safe state) instead of resetting for ever."""

import gc
import time
import traceback

import board
import busio
import digitalio
import microcontroller
import storage
import supervisor
import watchdog


# A step with no work waiting sleeps IDLE_S: the core idles in WFI instead of polling at
# full speed for a HAN byte or a request (docs/architecture.md, "The app loop").
IDLE_S = 0.02


def main(startup):
    mode, failed, reason = startup.begin(microcontroller.nvm)  # failed until startup.ok()
    if failed:  # first: a start that fails early must still show that it is counted
        print("HAN2X: %d failed start(s) before this one (%s); starting %s" % (
            failed, reason or "reason unknown", mode))
    from han2x_core import __version__, board_io
    from han2x_core.ticks import ticks_add, ticks_diff

    now = supervisor.ticks_ms()
    prof, known = board_io.profile_for(board.board_id)
    power_led = board_io.output(digitalio, board, prof["power_led"], True)
    if mode == startup.SAFE:
        startup.safe_state(reason, failed, power_led, _sleep)  # never returns
    han_led = board_io.output(digitalio, board, prof["han_led"])
    from han2x_core.storage import READ_ONLY_MESSAGE, SettingsStore

    store = SettingsStore(board_io.SETTINGS_PATH)
    settings, warning = store.load()
    if storage.getmount("/").readonly:  # USB write mode (boot.py): say so on the web page
        warning = READ_ONLY_MESSAGE if not warning else warning + " " + READ_ONLY_MESSAGE
    print("HAN2X", __version__, "on", prof["name"], "" if known else "(unknown board)")
    from han2x_core.han_reader import HanReader

    han = HanReader(board_io.pin(board, prof["han_rx"]))
    reset = board_io.output(digitalio, board, prof["w5500_reset"], True)  # held out of reset

    def make_network():  # after the HAN receiver's PIO ring (assembly.build)
        from han2x_core.network import Network

        sck, mosi, miso = (board_io.pin(board, name) for name in prof["spi"])
        cs = digitalio.DigitalInOut(board_io.pin(board, prof["w5500_cs"]))
        net = Network(busio.SPI(sck, MOSI=mosi, MISO=miso), cs,
                      uid=bytes(microcontroller.cpu.uid), settings=settings)
        print("HAN2X address", net.ip, "hostname", net.hostname, "mode", net.mode)
        return net

    from han2x_core import assembly

    # The web server and MQTT only while starts succeed: without the memory for them the
    # device serves Modbus alone rather than restarting for ever.
    app = assembly.build(han, settings, store, now, make_network, full=mode == startup.FULL,
                         energy_path=board_io.ENERGY_PATH,
                         io=(digitalio, board, microcontroller, watchdog, prof, han_led,
                             power_led))
    del assembly
    from han2x_core import unload

    unload("assembly")  # its code is not needed after the start (costs no heap)
    app.settings_warning = warning
    app.usb_write = board_io.usb_write_hook(microcontroller)  # the web page's drive button
    if app.energy_warning:
        print(app.energy_warning)
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


def _sleep(ms):
    import time

    time.sleep(ms / 1000)


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
