"""The board's start-up, up to the loop: pins, settings, HAN input, the device built
(assembly.build). code.py calls start() and then drops this module: its code, and every
local of the start-up, is gone before the loop's first step (docs/architecture.md, "Start-up
order and memory"). (shell)

Start-up order: HAN input and Modbus first (the product), the web server last, so that a heap
too small for everything still serves Modbus. A start that fails again and again backs off
(startup.py: Modbus only, then a safe state) instead of resetting for ever.
"""


def start(startup):
    """The App, built and configured on this board; code.py steps it. Raises what the
    start-up raised (code.py counts it as a failed start). Never returns in the safe state."""
    import board
    import busio
    import digitalio
    import microcontroller
    import storage
    import supervisor
    import watchdog

    mode, failed, reason = startup.begin(microcontroller.nvm)  # failed until startup.ok()
    if failed:  # first: a start that fails early must still show that it is counted
        print("HAN2X: %d failed start(s) before this one (%s); starting %s" % (
            failed, reason or "reason unknown", mode))
    from han2x_core import __version__, board_io, unload

    now = supervisor.ticks_ms()
    prof, known = board_io.profile_for(board.board_id)
    power_led = board_io.output(digitalio, board, prof["power_led"], True)
    if mode == startup.SAFE:
        startup.safe_state(reason, failed, power_led, _sleep)  # never returns
    han_led = board_io.output(digitalio, board, prof["han_led"])
    from han2x_core.storage import READ_ONLY_MESSAGE, SettingsStore

    loaded = SettingsStore(board_io.SETTINGS_PATH)
    settings, warning = loaded.load()
    store = board_io.SettingsFile(loaded.path, loaded.extra)  # loads storage.py to save
    del SettingsStore, loaded
    unload("storage")
    if storage.getmount("/").readonly:  # USB write mode (boot.py): say so on the web page
        warning = READ_ONLY_MESSAGE if not warning else warning + " " + READ_ONLY_MESSAGE
    print("HAN2X", __version__, "on", prof["name"], "" if known else "(unknown board)")
    from han2x_core.han_reader import HanReader

    han = HanReader(board_io.pin(board, prof["han_rx"]))
    reset = board_io.output(digitalio, board, prof["w5500_reset"], True)  # out of reset

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
    unload("assembly")  # its code is not needed after the start (costs no heap)
    app.reset = reset  # the pin stays held: a collected DigitalInOut may let it go
    app.settings_warning = warning
    app.usb_write = board_io.usb_write_hook(microcontroller)  # the web page's drive button
    if app.energy_warning:
        print(app.energy_warning)
    return app


def _sleep(ms):
    import time

    time.sleep(ms / 1000)
