#!/usr/bin/env python3
"""The whole HAN2X device on a PC: a HAN source -> App (decode, registers) -> Modbus TCP.

Usage: tools/simulate.py [--modbus-port 5020] [--host 127.0.0.1]
                         [--meter aidon|kaifa|kamstrup] [--phases 3] [--speed 1]
                         [--replay FILE [--interval 2]] [--serial PORT [--line 8E1]]
                         [--quiet] [--max-seconds N]
The HAN source is a simulated meter (default), a capture replayed in a loop (--replay: hex
text or raw binary, as tools/decode.py reads), or a USB M-Bus adapter (--serial, 2400 baud).
--speed makes the meter (or the replay) run faster than real time; the device's own clock
(estimation, timeouts) stays real. Prints where it listens and one line per telegram.
Ctrl-C or SIGTERM stops it cleanly.
"""

import argparse
import os
import select
import signal
import socket
import sys
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tools._host  # noqa: E402,F401  (root and tests/ after the stdlib: docs/architecture.md)
from tools._host import ROOT as _ROOT  # noqa: E402

from han2x_core import FIRMWARE_VERSION, __version__  # noqa: E402
from han2x_core.assembly import build  # noqa: E402
from han2x_core.settings import DEFAULTS, validate  # noqa: E402
from han2x_core.storage import SettingsStore  # noqa: E402

_MASK = (1 << 29) - 1
LOOP_WAIT_S = 0.002  # the PC loop waits this long for a socket between steps (the board
# never waits; the PC should not burn a core)


def now_ms():
    """The device clock: wrapping milliseconds, like supervisor.ticks_ms()."""
    return time.monotonic_ns() // 1_000_000 & _MASK


# ---- HAN sources: readinto(buf) -> n, never blocking --------------------------------------------

class _FrameFeed:
    """Hands out queued frame bytes through readinto()."""

    def __init__(self):
        self._pending = bytearray()

    def _queue(self, frame):
        self._pending += frame

    def _due(self):
        """Queue whatever frames are due now (subclasses)."""

    def readinto(self, buf):
        self._due()
        n = min(len(buf), len(self._pending))
        if n:
            buf[:n] = self._pending[:n]
            del self._pending[:n]
        return n


class SimulatedHan(_FrameFeed):
    """tools/sim/metersim.py's meter at its real cadence, `speed` times faster."""

    def __init__(self, meter="aidon", phases=3, speed=1.0, seed=1, start=None,
                 monotonic=time.monotonic):
        super().__init__()
        from tools.sim.metersim import MeterSimulator

        kwargs = {"vendor": meter, "phases": phases, "seed": seed}
        if start is not None:
            kwargs["start"] = start
        self.describe = "simulated %s meter, %d phase%s" % (meter, phases,
                                                           "" if phases == 1 else "s")
        self._telegrams = MeterSimulator(**kwargs).telegrams()
        self._speed = speed
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._next = next(self._telegrams)

    def _due(self):
        elapsed = (self._monotonic() - self._t0) * self._speed
        while self._next[0] <= elapsed:
            self._queue(self._next[1])
            self._next = next(self._telegrams)


class ReplayHan(_FrameFeed):
    """Captured frames, in order, one every `interval` seconds (divided by speed), looping."""

    def __init__(self, frames, interval=2.0, speed=1.0, monotonic=time.monotonic):
        super().__init__()
        if not frames:
            raise ValueError("no frames to replay")
        self.frames = frames
        self.describe = "replay of %d frames, one every %gs" % (len(frames), interval)
        self._period = interval / speed
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._sent = 0

    def _due(self):
        due = int((self._monotonic() - self._t0) / self._period) + 1 if self._period > 0 else 1
        while self._sent < due:
            self._queue(self.frames[self._sent % len(self.frames)])
            self._sent += 1


class HanSourceError(Exception):
    """The HAN source cannot start (no adapter, no file): the message says which and why."""


class SerialReceiver:
    """One line format on a USB M-Bus adapter through pyserial: 2400 baud, non-blocking.
    The receiver interface of han2x_core.han_uart, so the board's HanReader drives it."""

    def __init__(self, port, line):
        import serial

        parity = serial.PARITY_EVEN if line == "8E1" else serial.PARITY_NONE
        self.line, self.polarity = line, "normal"
        self.bytes_ok = self.errors = self.framing_errors = self.parity_errors = 0
        self.serial = serial.Serial(port, 2400, bytesize=8, parity=parity, stopbits=1,
                                    timeout=0)

    def readinto(self, buf):
        waiting = self.serial.in_waiting
        if not waiting:
            return 0
        data = self.serial.read(min(waiting, len(buf)))
        buf[:len(data)] = data
        self.bytes_ok += len(data)
        return len(data)

    def deinit(self):
        self.serial.close()


def serial_han(port, line=None):
    """The board's HanReader over a USB M-Bus adapter: with line None the settings' han_line
    (default auto: 8E1, then 8N1, kept once CRC-valid frames arrive, as on the board); a
    given line wins over the settings. Normal polarity only (busio's rule, too)."""
    from han2x_core.han_reader import HanReader

    class SerialHan(HanReader):
        def configure(self, settings):
            super().configure({"han_input": "uart", "han_polarity": "normal",
                               "han_line": line or settings.get("han_line", "auto")})

        def close(self):
            self.stop()

    han = SerialHan(port, make_receiver=lambda kind, pin, ln, pol: SerialReceiver(pin, ln))
    han.source = "serial %s, 2400 baud" % port
    return han


def load_frames(path):
    from tools.decode import read_capture

    with open(path, "rb") as f:
        return read_capture(f.read())


# ---- the device ----------------------------------------------------------------------------

class Device:
    """What build_device returns: the app (han2x_core.assembly.build, as on the board) and
    handles on its parts."""

    def __init__(self, app, model=None):
        self.app = app
        self.registers = app.registers
        self.han = app.han
        self.modbus = app.modbus
        self.settings = app.settings
        self.model = model  # --w5500: the chip model

    @property
    def services(self):
        """The app's named services that exist now (the HAN stream once it is on)."""
        a = self.app
        named = {"modbus": a.modbus, "scaling": a.scaling, "network": a.network,
                 "web": a.web, "mqtt": a.mqtt, "han_stream": a.raw_tap}
        return {name: part for name, part in named.items() if part is not None}

    def step(self):
        self.app.step(now_ms())

    def wait(self, seconds=LOOP_WAIT_S):
        """Sleep until a socket has something (or `seconds` pass): the PC loop's idle."""
        socks = []
        for service in self.services.values():
            busy = getattr(service, "busy", None)
            if busy is not None and busy():
                return
            get = getattr(service, "sockets", None)
            if get is not None:
                socks.extend(get())
        if not socks:
            time.sleep(seconds)
            return
        try:
            select.select(socks, [], [], seconds)
        except (OSError, ValueError):  # a socket closed under us: next step handles it
            time.sleep(seconds / 4)

    def close(self):
        for service in self.services.values():
            stop = getattr(service, "stop", None)
            if stop is not None:
                stop()
        close = getattr(self.han, "close", None)
        if close is not None:
            close()


def build_settings(args, base=None):
    """Settings from the defaults (or a loaded file) with the command line's overrides.

    Without --modbus-port / --http-port the file's ports are used, so a port changed on
    the web page survives a restart; ports below 1024 (the board's 502 and 80) need root on
    a PC and become 5020 and 8080."""
    settings = dict(base if base is not None else DEFAULTS)
    for key, flag, pc_port in (("modbus_port", "modbus_port", 5020),
                               ("web_port", "http_port", 8080)):
        value = getattr(args, flag, None)
        if value is None:
            value = settings[key] if settings[key] >= 1024 else pc_port
        if value:  # --http-port 0: no web page; the setting stays
            settings[key] = value
    stream = getattr(args, "han_stream_port", None)
    if stream is not None:
        settings["han_stream_port"] = stream
    clean, errors = validate(settings)
    if stream and list(errors) == ["modbus_max_clients"]:
        errors = {}  # the stream's sockets come from Modbus, as on the board (clean has it)
    if errors:
        raise SystemExit("bad settings: %s" % errors)
    return clean


def build_han(args, settings=None):
    """The HAN source of the command line; HanSourceError when it cannot start."""
    if args.replay:
        try:
            frames = load_frames(args.replay)
        except OSError as e:
            raise HanSourceError("cannot read the replay file %s: %s" % (
                args.replay, e.strerror or e)) from e
        if not frames:
            raise HanSourceError("the replay file %s holds no HAN frames (hex text or raw "
                                 "binary, as tools/decode.py reads)" % args.replay)
        return ReplayHan(frames, args.interval, args.speed)
    if args.serial:
        try:
            han = serial_han(args.serial, args.line and args.line.upper())
            han.configure(settings or DEFAULTS)  # opens the port now
        except ImportError as e:
            raise HanSourceError("--serial needs pyserial (make run installs it from "
                                 "requirements-run.txt): %s" % e) from e
        except OSError as e:  # serial.SerialException is an OSError
            raise HanSourceError(
                "cannot open the serial port %s (the USB M-Bus adapter): %s. Is the adapter "
                "plugged in? Linux names it /dev/ttyUSB0 or /dev/ttyACM0 (ls /dev/tty*; your "
                "user may need the dialout group), macOS /dev/cu.usbserial-..., Windows COM3"
                % (args.serial, e)) from e
        return han
    return SimulatedHan(args.meter, args.phases, args.speed, seed=args.seed)


def describe_han(han):
    text = han.describe
    if callable(text):  # the board's HanReader: the line format in use, or being tried
        text = "%s, %s" % (han.source, text())
    return text


def build_w5500_device(args, on_frame=None, store=None, settings=None, han=None,
                       port_map=None):
    """--w5500: the board's wiring (assembly.build, as code.py) on the W5500 model
    (tools/sim/w5500_model.py, docs/w5500-model.md) with the real adafruit_wiznet5k driver:
    Network, ModbusServer and WebServer on its SocketPool. Device port P is served on
    127.0.0.1:P (so ports below 1024 need root; build_settings already maps 502/80 to
    5020/8080), or on 127.0.0.1:port_map[P] (tools/screenshots.py: the board's own 502/80 on
    free ports)."""
    from tools.sim.w5500_model import W5500Model, install_driver_shims

    install_driver_shims()  # no 1 s boot sleep; board-like EAGAIN errno; no __del__
    from han2x_core.network import Network

    settings = settings if settings is not None else build_settings(args)
    model = W5500Model(port_map=port_map, port_offset=0)
    han = han or build_han(args, settings)
    app = build(han, settings, store, now_ms(),
                lambda: Network(model.spi, model.cs, uid=b"simulate", settings=settings),
                full=getattr(args, "http_port", 0) != 0, on_frame=on_frame, web_clients=2)
    device = Device(app, model)
    device.wait = lambda seconds=LOOP_WAIT_S: time.sleep(seconds / 4)  # nothing to select()
    return device


def build_device(args, on_frame=None, store=None, settings=None, han=None):
    """Wire the device as code.py does (han2x_core.assembly.build): HAN source -> App ->
    Registers -> Modbus server (listening), and the web server unless --http-port 0."""
    if getattr(args, "w5500", False):
        return build_w5500_device(args, on_frame, store, settings, han)
    settings = settings if settings is not None else build_settings(args)
    han = han or build_han(args, settings)
    app = build(han, settings, store, now_ms(), lambda: PcNetwork(args.host),
                full=getattr(args, "http_port", 0) != 0, on_frame=on_frame, web_clients=2,
                send_timeout_s=None)
    return Device(app)


class OverridesStay:
    """The settings store on the PC: what the command line and the PC's port mapping put in
    force (--modbus-port, --http-port, --han-stream-port, 502 -> 5020, 80 -> 8080) is never
    written to the file. A save keeps the file's value of such a key unless the save changes
    it (a port set on the settings page is saved). Wraps a SettingsStore."""

    def __init__(self, store, saved, running):
        self.store = store
        self.saved = dict(saved)  # the file's settings
        self.running = dict(running)  # build_settings' result: the file's plus the overrides

    def load(self):
        return self.store.load()

    def save(self, settings):
        out = dict(settings)
        for key, value in self.running.items():
            if out.get(key) == value != self.saved.get(key):
                out[key] = self.saved[key]
        self.store.save(out)
        self.saved = out
        self.running = dict(settings)


class PcNetwork:
    """The PC's stand-in for the board's Network service: where the simulator listens, and
    the host name a board would give DHCP (han2x- and the last three bytes of its MAC; the
    MAC as --w5500 makes it). `stays`: saved network settings do not move the simulator,
    and the settings page says so."""

    name = "network"
    stays = True
    mode = "pc"
    pool = socket  # the servers listen on the PC's own sockets

    def __init__(self, host):
        from han2x_core.network import default_hostname, mac_from_uid

        self.ip = host
        self.mac = mac_from_uid(b"simulate")
        self.hostname = default_hostname(self.mac)

    def attach(self, server):
        """As Network.attach with the link up: the server listens at once."""
        server.start(self.ip)

    def poll(self, now_ms):
        pass


class _PcBoard:
    """The microcontroller module for board_io.usb_write_hook on the PC: no restart."""

    def __init__(self, marker):
        self.marker = marker

    def reset(self):
        print("%s written: a board would restart now, its drive writable by the computer "
              "for one start (the simulator goes on)" % self.marker, flush=True)


def usb_write_hook(settings_path):
    """App.usb_write on the PC (the web page's "open the drive" button): the board's hook,
    writing usb_write.txt next to the settings file; the restart only says so."""
    from han2x_core import board_io

    marker = os.path.join(os.path.dirname(os.path.abspath(settings_path)), "usb_write.txt")
    return board_io.usb_write_hook(_PcBoard(marker), marker)


def energy_path(settings_path):
    """The energy state file next to the settings file, as on the board's drive."""
    from han2x_core import board_io

    return os.path.join(os.path.dirname(os.path.abspath(settings_path)),
                        board_io.ENERGY_PATH.lstrip("/"))


def format_reading(reading, now):
    """One line per telegram for the console."""
    parts = ["%s list %s" % (reading.get("meter"), reading.get("list"))]
    p_in = reading.get("active_power_import_w")
    if p_in is not None:
        parts.append("P+ %d W" % p_in)
    p_out = reading.get("active_power_export_w")
    if p_out:
        parts.append("P- %d W" % p_out)
    volts = [reading.get(k) for k in ("voltage_l1_dv", "voltage_l2_dv", "voltage_l3_dv")]
    if any(v is not None for v in volts):
        parts.append("U " + "/".join("-" if v is None else "%.1f" % (v / 10) for v in volts))
    amps = [reading.get(k) for k in ("current_l1_ma", "current_l2_ma", "current_l3_ma")]
    if any(a is not None for a in amps):
        parts.append("I " + "/".join("-" if a is None else "%.2f" % (a / 1000) for a in amps))
    energy = reading.get("active_energy_import_wh")
    if energy is not None:
        parts.append("E+ %.3f kWh" % (energy / 1000))
    clock = reading.get("meter_clock")
    if clock:
        parts.append("%04d-%02d-%02d %02d:%02d:%02d" % tuple(
            clock[k] for k in ("year", "month", "day", "hour", "minute", "second")))
    return time.strftime("%H:%M:%S ", time.localtime(now)) + "  ".join(parts)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--modbus-port", type=int, default=None,
                   help="Modbus TCP port (default: the settings file's; 5020 for 502)")
    p.add_argument("--meter", choices=("aidon", "kaifa", "kamstrup"), default="aidon",
                   help="simulated meter's layout")
    p.add_argument("--phases", type=int, choices=(1, 3), default=3)
    p.add_argument("--seed", type=int, default=1, help="simulated meter's random seed")
    p.add_argument("--speed", type=float, default=1.0, help="meter runs this many times "
                   "faster than real time")
    p.add_argument("--replay", metavar="FILE", help="replay captured frames in a loop")
    p.add_argument("--interval", type=float, default=2.0,
                   help="seconds between replayed frames (2)")
    p.add_argument("--serial", metavar="PORT", help="read a USB M-Bus adapter (pyserial)")
    p.add_argument("--line", choices=("auto", "8E1", "8N1", "8e1", "8n1"), default=None,
                   help="serial line format (default: the settings' han_line, auto: 8E1 or "
                   "8N1 detected from valid telegrams, as the board does)")
    p.add_argument("--http-port", type=int, default=None,
                   help="web page port (default: the settings file's; 8080 for 80; "
                   "0 = no web page)")
    p.add_argument("--han-stream-port", type=int, default=None,
                   help="serve the raw HAN stream on this port, for Home Assistant's amshan "
                   "(default: the settings file's han_stream_port; 0 = off)")
    p.add_argument("--quiet", action="store_true", help="no line per telegram")
    p.add_argument("--w5500", action="store_true", help="run the board's network stack: "
                   "the real adafruit_wiznet5k driver on the W5500 model (tools/sim/w5500_model.py)")
    simdata = os.environ.get("HAN2X_SIMDATA") or os.path.join(_ROOT, "simdata")
    p.add_argument("--settings", metavar="PATH", default=os.path.join(simdata, "settings.toml"),
                   help="settings file, as settings.toml on the board (simdata/settings.toml,"
                   " or in $HAN2X_SIMDATA; --modbus-port and --http-port override it); the "
                   "energy state file energy_state.txt is kept next to it")
    p.add_argument("--max-seconds", type=float, default=0,
                   help="stop by itself after this many seconds (0 = run until stopped)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.replay and args.serial:
        raise SystemExit("--replay and --serial exclude each other")
    if args.speed <= 0 or args.interval <= 0:
        raise SystemExit("--speed and --interval must be positive")

    def on_frame(reading, now):
        if not args.quiet:
            print(format_reading(reading, time.time()), flush=True)

    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    settings = {"modbus_port": args.modbus_port or 0, "web_port": args.http_port or 0}
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.settings)), exist_ok=True)
        store = SettingsStore(args.settings)
        base, warning = store.load()
        if warning:
            print(warning, file=sys.stderr)
        settings = build_settings(args, base)
        store = OverridesStay(store, base, settings)
    except OSError as e:
        print("cannot use the settings file %s: %s" % (args.settings, e), file=sys.stderr)
        return 1
    try:
        han = build_han(args, settings)
    except HanSourceError as e:
        print("HAN source: %s" % e, file=sys.stderr)
        return 1
    try:
        device = build_device(args, on_frame=on_frame, store=store, settings=settings, han=han)
        device.app.settings_warning = warning  # the page and /api/status show it, as on the board
        device.app.usb_write = usb_write_hook(args.settings)
        warning = device.app.restore_energy(energy_path(args.settings))
        if warning:
            print(warning, file=sys.stderr)
    except ImportError as e:
        print("%s: %s (--w5500 needs the test packages: make setup)" % (type(e).__name__, e),
              file=sys.stderr)
        return 1
    except OSError as e:
        print("cannot listen on %s (Modbus port %d, web port %d): %s" % (
            args.host, settings["modbus_port"], settings["web_port"], e), file=sys.stderr)
        return 1
    print("HAN2X open firmware %s (register 40043 = %d) on the PC" % (__version__,
                                                                      FIRMWARE_VERSION))
    print("HAN source: %s" % describe_han(device.han))
    print("Modbus TCP (MBAP and RTU-over-TCP) listening on %s:%d" % (
        args.host, device.modbus.bound_port), flush=True)
    if "han_stream" in device.services:
        print("Raw HAN stream (amshan) on %s:%d" % (args.host, device.services["han_stream"].port),
              flush=True)
    if "web" in device.services:
        print("Web page: http://%s:%d/" % (args.host, device.services["web"].port), flush=True)
    deadline = time.monotonic() + args.max_seconds if args.max_seconds > 0 else None
    try:
        while not stopping:
            device.step()
            device.wait()
            if deadline is not None and time.monotonic() > deadline:
                break
    except KeyboardInterrupt:
        pass
    finally:
        device.close()
        app = device.app
        print("stopped: %d telegrams, %d Modbus requests, %d decode errors" % (
            device.registers.telegrams, device.modbus.requests, app.decode_errors), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
