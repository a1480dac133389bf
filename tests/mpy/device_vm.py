"""The whole device on the MicroPython VM: code.py's wiring minus the hardware.

Usage: micropython -X heapsize=192k tests/mpy/device_vm.py MODBUS_PORT WEB_PORT DIR [k=v ...]
  frames=ID,ID,...   corpus ids (tests/data/frames.json) the HAN source can send
  schedule=0,1,2,... the order they are sent in (indices into frames=)
  frame_ms=250       one telegram starts every frame_ms; it arrives in chunks of
  chunk=24           bytes, at most one chunk per loop step (a UART fills a buffer slowly)
  max_s=40           stop after this many seconds whatever happens
  heap_ms=250        how often to print a heap line
  start_ms=0         no telegram before this (bench/bench_heap.py measures the idle loop)
  stop=4242          stop when a Modbus client writes this scaling factor and the scaling
                     saver has saved it in DIR/settings.toml (a second later, as on the board)
  core=FOLDER        import han2x_core from FOLDER (compiled to .mpy, with its www/)

The device as code.py builds it (han2x_core.assembly.build: App, Registers, ModbusServer,
WebServer, board_io's LED/button, temperature and watchdog services) on 127.0.0.1. What is
left out is what needs the hardware: the W5500 (a network stand-in whose attach() starts a
server at once) and the PIO HAN reader (a corpus feed instead). Pins, cpu and watchdog are
small stand-ins.

The socket pool is MicroPython's socket module in CircuitPython's shape (vmsock.Pool): bind()
takes an (host, port) tuple and connections have recv_into() that raises OSError(EAGAIN)
when nothing is waiting, as CircuitPython's socketpool and adafruit_wiznet5k's do. The
web server needs both (MicroPython's own sockets bind a sockaddr and only have readinto()).

Lines on stdout (tests/test_device_vm.py and bench/bench_heap.py read them):
  imports free F used U          after every import, gc.collect()ed
  started free F                 after building and starting everything
  listening MODBUS WEB
  heap T FREE PEAK Q FRAMES MBREQ WEBREQ ALLOC STEPS
      T ms since start; FREE gc.mem_free() after the loop's gc.collect(); PEAK the most
      gc.mem_alloc() seen at the end of a step (before its collect) since the last line, i.e.
      the heap high-water mark with the board's collect-every-step loop; Q 1 when the heap
      is quiescent (no web connection open, page modules released); counters; ALLOC the
      bytes allocated by all steps so far (each step's gc.mem_alloc() growth: nothing is
      collected within a step unless the heap fills), STEPS the steps so far.
  done REASON key value ...      counters when it stops (REASON: stop, max_s)
"""

import gc
import sys
import time

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
ROOT = HERE + "/../.."
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from vmsock import Pool  # noqa: E402  (a test shim, before the import figure)


def load_frames(ids):
    """The corpus frames with these ids, as bytes (parsed before anything else is loaded:
    the corpus parser's garbage would otherwise fragment the heap the device needs)."""
    from corpus import entries

    want = {}
    for e in entries():
        if e["id"] in ids:
            want[e["id"]] = bytes.fromhex(e["hex"])
        e = None
    del sys.modules["corpus"]
    missing = [i for i in ids if i not in want]
    if missing:
        raise SystemExit("not in the corpus: %s" % missing)
    return [want[i] for i in ids]


def _args(argv):
    opts = {"frames": "", "schedule": "", "frame_ms": "250", "chunk": "24", "max_s": "40",
            "heap_ms": "250", "stop": "4242", "start_ms": "0", "core": ""}
    for a in argv[4:]:
        k, v = a.split("=", 1)
        if k not in opts:
            raise SystemExit("unknown option " + k)
        opts[k] = v
    return int(argv[1]), int(argv[2]), argv[3], opts


ARGS = _args(sys.argv)
if ARGS[3]["core"]:  # a folder holding han2x_core compiled to .mpy (with its www/)
    sys.path.insert(0, ARGS[3]["core"])
FRAMES = load_frames([s for s in ARGS[3]["frames"].split(",") if s])
gc.collect()
_F0 = gc.mem_free()

# As code.py imports them (minus han_reader and network: hardware; web in assembly.build).
from han2x_core import __version__, board_io  # noqa: E402
from han2x_core.settings import validate  # noqa: E402
from han2x_core.storage import SettingsStore  # noqa: E402
from han2x_core import assembly  # noqa: E402

_MASK = (1 << 29) - 1


def now_ms():
    return time.ticks_ms() & _MASK  # supervisor.ticks_ms(): wraps at 2**29


# ---- board stand-ins (digitalio, board, microcontroller, watchdog) ---------------------------

class _Pin:
    def __init__(self, name):
        self.name = name


class _Board:
    board_id = "wiznet_w5500_evb_pico"

    def __getattr__(self, name):
        return _Pin(name)


class _IO:
    def __init__(self, pin):
        self.pin = pin
        self.value = True  # the button's pull-up: not pressed

    def switch_to_output(self, value=False, drive_mode=None):
        self.value = value

    def switch_to_input(self, pull=None):
        self.value = True


class _Digitalio:
    DigitalInOut = _IO

    class Pull:
        UP = "up"


class _Wdt:
    timeout = None
    mode = None
    feeds = 0

    def feed(self):
        self.feeds += 1


class _Cpu:
    temperature = 27.5


class _Microcontroller:
    cpu = _Cpu()
    nvm = bytearray(8)
    watchdog = _Wdt()

    @staticmethod
    def reset():  # the web page's drive button (app.usb_write) ends the VM
        raise SystemExit("microcontroller.reset()")


class _Watchdog:
    class WatchDogMode:
        RESET = "reset"


# ---- the HAN source: corpus frames in chunks over time ----------------------------------------

class CorpusHan:
    """readinto(buf) -> n like han_reader.HanReader: telegram schedule[i] starts every frame_ms
    and comes out `chunk` bytes per call; copies without allocating."""

    def __init__(self, frames, schedule, frame_ms, chunk, now, start_ms=0):
        self.frames = frames
        self.schedule = schedule
        self.frame_ms = frame_ms
        self.chunk = chunk
        self.clock = now
        self.next_ms = time.ticks_add(now(), start_ms)
        self.sent = 0  # telegrams completely handed out
        self.cur = None
        self.pos = 0
        self.bytes_ok = 0

    def done(self):
        return self.sent >= len(self.schedule)

    def readinto(self, buf):
        if self.cur is None:
            if self.done() or time.ticks_diff(self.clock(), self.next_ms) < 0:
                return 0
            self.cur = self.frames[self.schedule[self.sent]]
            self.pos = 0
            self.next_ms = time.ticks_add(self.next_ms, self.frame_ms)
        cur = self.cur
        pos = self.pos
        n = min(self.chunk, len(buf), len(cur) - pos)
        for i in range(n):
            buf[i] = cur[pos + i]
        self.pos = pos + n
        self.bytes_ok += n
        if self.pos >= len(cur):
            self.cur = None
            self.sent += 1
        return n


class _Net:
    """What network.Network gives the servers, on the VM's sockets: attach() starts a server
    at once, as Network does with the link up."""

    name = "network"
    mode = "vm"
    ip = "127.0.0.1"

    def __init__(self, hostname):
        self.hostname = hostname
        self.pool = Pool()

    def attach(self, server):
        server.start(self.ip)

    def poll(self, now_ms):
        pass


class _NoWeb:
    _conns = ()
    requests = errors = 0
    last_error = ""

    def stop(self):
        pass


def _drop_assembly():
    """As code.py: the assembly module is not kept after the start."""
    global assembly
    assembly = None
    from han2x_core import unload

    unload("assembly")


def main():
    modbus_port, web_port, folder, opts = ARGS
    gc.collect()
    print("imports free", gc.mem_free(), "used", _F0 - gc.mem_free())
    schedule = [int(s) for s in opts["schedule"].split(",") if s]
    frames = FRAMES
    max_ms = int(opts["max_s"]) * 1000
    heap_ms = int(opts["heap_ms"])
    stop_value = int(opts["stop"])

    # ---- code.py's main(), in its order: assembly.build, then the module dropped ---------
    now = now_ms()
    board = _Board()
    prof, known = board_io.profile_for(board.board_id)
    power_led = board_io.output(_Digitalio, board, prof["power_led"], True)
    han_led = board_io.output(_Digitalio, board, prof["han_led"])
    store = SettingsStore(folder + "/settings.toml")
    settings, warning = store.load()
    # The PC's ports instead of 502 and 80 (validated like every setting).
    settings["modbus_port"] = modbus_port
    settings["web_port"] = web_port
    settings, errors = validate(settings)
    if errors:
        raise SystemExit("bad settings: %s" % errors)
    print("HAN2X", __version__, "on", prof["name"], "" if known else "(unknown board)")
    han = CorpusHan(frames, schedule, int(opts["frame_ms"]), int(opts["chunk"]), now_ms,
                    int(opts["start_ms"]))
    app = assembly.build(han, settings, store, now, lambda: _Net("han2x-vm"),
                         io=(_Digitalio, board, _Microcontroller, _Watchdog, prof, han_led,
                             power_led))
    _drop_assembly()
    app.settings_warning = warning
    app.usb_write = board_io.usb_write_hook(_Microcontroller, folder + "/usb_write.txt")
    regs = app.registers
    modbus = app.modbus
    web = app.web
    web_up = web is not None
    if not web_up:
        web = _NoWeb()  # counters for the lines below
    dog = [s for s in app.services if isinstance(s, board_io.Watchdog)][0]
    gc.collect()
    print("started free", gc.mem_free())
    print("listening", modbus_port, web_port if web_up else 0)

    t0 = now_ms()
    next_heap = t0
    peak = 0
    allocated = 0
    steps = 0
    reason = "max_s"
    gc.collect()
    while True:
        t = now_ms()
        before = gc.mem_alloc()
        app.step(t)
        used = gc.mem_alloc()  # heap in use before the collect: this step's high-water mark
        if used > peak:
            peak = used
        allocated += used - before
        steps += 1
        gc.collect()  # code.py collects after every step
        elapsed = time.ticks_diff(t, t0)
        if time.ticks_diff(t, next_heap) >= 0:
            next_heap = time.ticks_add(t, heap_ms)
            quiet = 1 if (not any(web._conns) and "han2x_core.webpages" not in sys.modules) else 0
            print("heap", elapsed, gc.mem_free(), peak, quiet, app.hdlc.frames_ok,
                  modbus.requests, web.requests, allocated, steps)
            peak = 0
        if regs.scaling == stop_value and app.scaling.scaling_unsaved is None:
            reason = "stop"  # written over Modbus and saved by the ScalingSaver, as on the board
            break
        if elapsed > max_ms:
            break
        time.sleep_ms(1)  # the board never sleeps; the PC shares its cores with the test
    modbus.stop()
    web.stop()
    gc.collect()
    print("done", reason,
          "frames_ok", app.hdlc.frames_ok, "hcs_errors", app.hdlc.hcs_errors,
          "fcs_errors", app.hdlc.fcs_errors, "discarded", app.hdlc.discarded_bytes,
          "decode_errors", app.decode_errors, "han_errors", app.han_errors,
          "service_errors", app.service_errors, "fed", han.sent,
          "modbus_requests", modbus.requests, "modbus_errors", modbus.errors,
          "web_requests", web.requests, "web_errors", web.errors,
          "feeds", dog.feeds, "loops", app.loops, "free", gc.mem_free())
    print("last_error", repr(app.last_error), repr(web.last_error))


main()
