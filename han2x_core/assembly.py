"""The device, assembled once from what the board (or a PC) provides: registers, app, the
scaling saver, the energy state, the network, the Modbus server, the LEDs, button, board
status and watchdog, and the optional web server and MQTT. code.py, tools/simulate.py
(CPython sockets and the W5500 model) and tests/mpy/device_vm.py all call build().

code.py drops this module after the start (han2x_core.unload("assembly")): nothing built
here keeps a function of this module, so its code costs the board no heap once the loop
runs. Keep it that way: no lambdas or nested functions that outlive build() (the factory
reset is a LedButton method, the raw HAN stream is built by App). (shell)
"""

import gc

from han2x_core import FIRMWARE_VERSION, __version__, board_io, indicators
from han2x_core.app import App
from han2x_core.modbus_server import ModbusServer
from han2x_core.registers import Registers
from han2x_core.scaling import ScalingSaver


def build(han, settings, store, now, make_network, full=True, energy_path=None, io=None,
          on_frame=None, web_clients=1, send_timeout_s=0.1):
    """The app with every service added and configured; poll it with app.step(now_ms).

    han: the HAN input (readinto(buf) -> n); the board's HanReader also judges line formats
    by the app's frames (watch) and sets up its PIO receiver at once (configure).
    settings, store: validated settings and their storage.SettingsStore (or None).
    make_network(): called once the HAN receiver and the energy state are set up (the PIO
    ring before the W5500's buffers); returns the network: pool, attach(server), hostname,
    ip, poll(now_ms) (network.Network; tools/simulate.PcNetwork).
    full: the web server and MQTT (when mqtt_host is set) too; without the memory for them
    the device serves Modbus alone (docs/architecture.md, "Start-up order and memory").
    energy_path: energy_state.txt to restore (app.energy_warning says why it could not).
    io: the board's parts, or None on a PC: (digitalio, board, microcontroller, watchdog,
    prof, han_led, power_led), each as code.py has them (tests/mpy/device_vm.py: stand-ins).
    send_timeout_s: for every server's send (a W5500 send() must not wait for ever; None on
    the PC's own sockets); the raw HAN stream takes the Modbus server's.
    """
    regs = Registers(settings["scaling_factor"], FIRMWARE_VERSION)
    app = App(han, regs, now, on_frame=on_frame, settings=settings, store=store)
    saver = ScalingSaver(app)  # a factor written over Modbus: saved at most once a minute
    regs.on_scaling_change = saver.changed
    app.add(saver)
    app.scaling = saver
    if energy_path is not None:
        app.restore_energy(energy_path)  # docs/registers.md
    if hasattr(han, "watch"):  # the board's HanReader
        han.watch(app.hdlc)
        han.configure(settings)  # the PIO receiver and its ring before anything else
    net = make_network()
    modbus = ModbusServer(net.pool, regs, settings["modbus_port"], settings["modbus_max_clients"],
                          settings["modbus_idle_timeout_s"] * 1000, settings["modbus_unit_id"],
                          send_timeout_s=send_timeout_s)
    app.network = net
    app.modbus = modbus
    app.add(net)
    net.attach(modbus)
    app.add(modbus)
    if io is not None:
        _board_parts(app, now, *io)
    if full:
        _optional(app, net, web_clients, send_timeout_s)
    if io is not None:
        app.add(board_io.Watchdog(io[2], io[3]))  # last: fed after real progress
    app.configure(settings)
    return app


def _board_parts(app, now, digitalio, board, microcontroller, watchdog, prof, han_led,
                 power_led):
    ind = indicators.Indicators(now)
    if board_io.dhcp_requested(microcontroller):
        ind.blink(indicators.BLINK_DHCP, now)
    btn = board_io.button(digitalio, board, prof["button"])
    leds = board_io.LedButton(ind, app, btn, han_led, power_led)
    ind.on_factory_reset = leds.factory_reset
    app.add(leds)
    app.add(board_io.BoardStatus(microcontroller, app.registers, now))


def _optional(app, net, web_clients, send_timeout_s):
    """The web server, then MQTT (opt-in: not even imported while mqtt_host is empty,
    docs/integration.md); each one's own MemoryError or ImportError leaves it out."""
    try:
        from han2x_core.web import WebServer

        # one browser at a time on the board: 8 W5500 sockets = DHCP + 2 listeners + 4 Modbus
        # + 1 web (or MQTT, or fewer Modbus clients with the HAN stream; settings.sockets_needed)
        web = WebServer(net.pool, app, port=app.settings["web_port"], max_clients=web_clients,
                        send_timeout_s=send_timeout_s)
    except (ImportError, MemoryError) as e:
        print("web page unavailable:", repr(e))
        gc.collect()
    else:
        net.attach(web)
        app.add(web)
        app.web = web
    if app.settings["mqtt_host"]:
        try:
            from han2x_core.mqtt import MqttClient

            mqtt = MqttClient(net.pool, app, net.hostname, __version__)
        except (ImportError, MemoryError) as e:
            print("MQTT unavailable:", repr(e))
            gc.collect()
        else:
            net.attach(mqtt)  # its socket counts in settings.sockets_needed()
            app.add(mqtt)
            app.mqtt = mqtt
