"""HAN2X open firmware on the board: wiring only. Pins per board in docs/wiring.md; the
loop is han2x_core.app.App; every piece is tested on a PC (tests/test_board.py).

Start-up order: HAN input and Modbus first (the product), the web server last, so that a
heap too small for everything still serves Modbus. Every firmware import is inside the
guarded start-up, and a start that fails again and again backs off (han2x_core/startup.py:
Modbus only, then a safe state) instead of resetting for ever."""

import gc
import traceback

import board
import busio
import digitalio
import microcontroller
import storage
import supervisor
import watchdog


def main(startup):
    mode, failed, reason = startup.begin(microcontroller.nvm)  # failed until startup.ok()
    if failed:  # first: a start that fails early must still show that it is counted
        print("HAN2X: %d failed start(s) before this one (%s); starting %s" % (
            failed, reason or "reason unknown", mode))
    from han2x_core import FIRMWARE_VERSION, __version__, board_io
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
    from han2x_core.app import App
    from han2x_core.han_reader import HanReader
    from han2x_core.registers import Registers

    regs = Registers(settings["scaling_factor"], FIRMWARE_VERSION)
    han = HanReader(board_io.pin(board, prof["han_rx"]))
    app = App(han, regs, now, settings=settings, store=store)
    app.settings_warning = warning
    app.usb_write = board_io.usb_write_hook(microcontroller)  # the web page's drive button
    from han2x_core.scaling import ScalingSaver

    saver = ScalingSaver(app)  # a factor written over Modbus: saved at most once a minute
    regs.on_scaling_change = saver.changed
    app.add(saver)
    energy_warning = app.restore_energy(board_io.ENERGY_PATH)  # docs/registers.md
    if energy_warning:
        print(energy_warning)
    han.watch(app.hdlc)
    han.configure(settings)  # the PIO receiver and its ring before anything else
    from han2x_core.modbus_server import ModbusServer
    from han2x_core.network import Network

    sck, mosi, miso = (board_io.pin(board, name) for name in prof["spi"])
    reset = board_io.output(digitalio, board, prof["w5500_reset"], True)  # held out of reset
    cs = digitalio.DigitalInOut(board_io.pin(board, prof["w5500_cs"]))
    net = Network(busio.SPI(sck, MOSI=mosi, MISO=miso), cs, uid=bytes(microcontroller.cpu.uid),
                  settings=settings)
    print("HAN2X address", net.ip, "hostname", net.hostname, "mode", net.mode)
    modbus = ModbusServer(net.pool, regs, settings["modbus_port"], settings["modbus_max_clients"],
                          settings["modbus_idle_timeout_s"] * 1000, settings["modbus_unit_id"],
                          send_timeout_s=0.1)  # W5500 send() must not wait for ever
    app.add(net)
    net.attach(modbus)
    app.add(modbus)
    from han2x_core import indicators

    ind = indicators.Indicators(now, on_factory_reset=lambda t: board_io.factory_reset(app))
    if board_io.dhcp_requested(microcontroller):
        ind.blink(indicators.BLINK_DHCP, now)
    btn = board_io.button(digitalio, board, prof["button"])
    app.add(board_io.LedButton(ind, app, btn, han_led, power_led))
    app.add(board_io.BoardStatus(microcontroller, regs, now))
    # Last, and only while starts succeed: without the memory for the web server (and
    # MQTT, when on) the device serves Modbus alone rather than restarting for ever.
    if mode == startup.FULL:
        try:
            from han2x_core.web import WebServer

            # one browser at a time: 8 W5500 sockets = DHCP + 2 listeners + 4 Modbus + 1 web
            # (or MQTT, or fewer Modbus clients with the HAN stream; settings.sockets_needed)
            web = WebServer(net.pool, app, port=settings["web_port"], max_clients=1,
                            send_timeout_s=0.1)
        except (ImportError, MemoryError) as e:
            print("web page unavailable:", repr(e))
            gc.collect()
        else:
            net.attach(web)
            app.add(web)
        if settings["mqtt_host"]:  # opt-in: not even imported when off (docs/integration.md)
            try:
                from han2x_core.mqtt import MqttClient

                mqtt = MqttClient(net.pool, app, net.hostname, __version__)
            except (ImportError, MemoryError) as e:
                print("MQTT unavailable:", repr(e))
                gc.collect()
            else:
                net.attach(mqtt)  # its socket counts in settings.sockets_needed()
                app.add(mqtt)

    def han_stream(port):  # docs/integration.md: the module is loaded only when it is on
        from han2x_core.hanstream import HanStream

        stream = HanStream(net.pool, port, send_timeout_s=0.1)
        net.attach(stream)
        app.add(stream)
        return stream

    app.stream_factory = han_stream  # App.configure builds it when han_stream_port is set
    app.add(board_io.Watchdog(microcontroller, watchdog))  # last: fed after real progress
    app.configure(settings)
    stable_at = ticks_add(supervisor.ticks_ms(), startup.STABLE_MS)
    gc.collect()
    app.free_memory_min = low = gc.mem_free()
    regs.set_free_memory_min(low)
    while True:
        now = supervisor.ticks_ms()
        app.step(now)
        free = gc.mem_free()  # before the collection: this step's garbage counts too
        if free < low:
            app.free_memory_min = low = free
            regs.set_free_memory_min(low)
        gc.collect()
        if stable_at is not None and ticks_diff(now, stable_at) >= 0:
            stable_at = None
            startup.ok(microcontroller.nvm)  # a good start: the next one is a full one


def _sleep(ms):
    import time

    time.sleep(ms / 1000)


try:
    from han2x_core import startup

    main(startup)
except KeyboardInterrupt:  # Ctrl-C on the serial console: leave a REPL the watchdog spares
    if microcontroller.watchdog is not None:
        microcontroller.watchdog.mode = None
    startup.ok(microcontroller.nvm)  # stopped by hand: not a failed start
    print("HAN2X stopped; press Ctrl-D to start again")
except Exception as e:  # start-up failed (the loop itself never raises): log, restart
    traceback.print_exception(e)
    try:
        startup.failed(microcontroller.nvm, e)  # the reason, for a later safe state
    except Exception:
        pass
    microcontroller.reset()
