"""MicroPython half of bench_heap.py's MQTT figures (part 5): run under the unix port with
`-X heapsize=192k`; arguments: a folder holding han2x_core (.mpy or source), a file of
captured frames (one hex line each).

Prints "name value" lines: the heap held by the device's core with MQTT off (and whether
han2x_core.mqtt got imported), then by importing han2x_core.mqtt and by one MqttClient,
what stays held once connected and the discovery configs are out (mqtt_connect.py dropped
again), and the bytes allocated per telegram while connected (a socket stand-in that answers
CONNACK and takes every byte: what the client itself costs, not a network stack's)."""

import errno
import gc
import sys

sys.path.insert(0, sys.argv[1])

from han2x_core import FIRMWARE_VERSION, __version__  # noqa: E402
from han2x_core.app import App  # noqa: E402
from han2x_core.registers import Registers  # noqa: E402
from han2x_core.settings import DEFAULTS  # noqa: E402


class Sock:
    def __init__(self):
        self.out = 0
        self.answer = b"\x20\x02\x00\x00"

    def setblocking(self, flag):
        pass

    def settimeout(self, t):
        pass

    def connect_ex(self, addr):
        return 115

    def getsockopt(self, level, opt):
        return 0

    def getpeername(self):
        return ("127.0.0.1", 1883)

    def send(self, data):
        self.out += len(data)
        return len(data)

    def recv_into(self, buf):
        if self.answer and self.out:
            n = len(self.answer)
            buf[:n] = self.answer
            self.answer = b""
            return n
        raise OSError(errno.EAGAIN)

    def close(self):
        pass


class Pool:
    AF_INET = 2
    SOCK_STREAM = 1
    SOL_SOCKET = 1
    SO_ERROR = 4

    def socket(self, family, kind):
        return Sock()


class Han:
    def __init__(self):
        self.queue = []

    def readinto(self, buf):
        if not self.queue:
            return 0
        frame = self.queue.pop(0)
        for i in range(len(frame)):
            buf[i] = frame[i]
        return len(frame)


def frames():
    """The frames bench_heap.py wrote, one hex line each (frames.json is too big to parse
    in this heap)."""
    out = []
    with open(sys.argv[2]) as f:
        for line in f:
            if line.strip():
                out.append(bytes.fromhex(line.strip()))
    return out


def main():
    corpus = frames()
    han = Han()
    settings = dict(DEFAULTS)
    app = App(han, Registers(1000, FIRMWARE_VERSION), 0, settings=settings)
    for f in corpus:
        han.queue.append(f)
        app.step(0)
    gc.collect()
    print("off_mqtt_imported", 1 if "han2x_core.mqtt" in sys.modules else 0)
    base = gc.mem_alloc()
    for i in range(50):
        app.step(i)
    gc.collect()
    print("off_held", gc.mem_alloc() - base)
    gc.collect()
    a = gc.mem_alloc()
    from han2x_core.mqtt import MqttClient

    gc.collect()
    b = gc.mem_alloc()
    settings["mqtt_host"] = "127.0.0.1"
    mqtt = MqttClient(Pool(), app, "han2x-bench", __version__)
    app.add(mqtt)
    gc.collect()
    c = gc.mem_alloc()
    print("import", b - a)
    print("instance", c - b)
    now = 100
    for _ in range(60):  # connect, CONNACK, discovery: every message once
        now += 10
        app.step(now)
    print("sessions", mqtt.sessions)
    print("published_at_connect", mqtt.published)
    print("connect_module_loaded", 1 if "han2x_core.mqtt_connect" in sys.modules else 0)
    gc.collect()
    print("held_connected", gc.mem_alloc() - a)  # import, client, buffers
    held0 = gc.mem_alloc()
    total0 = mqtt.published
    n = 0
    peak = 0
    for _ in range(10):
        for f in corpus:
            han.queue.append(f)
            gc.collect()
            before = gc.mem_alloc()
            for _ in range(4):  # the telegram, its raw frame, power + estimate
                now += 10
                app.step(now)
            peak = max(peak, gc.mem_alloc() - before)
            n += 1
    gc.collect()
    print("telegrams", n)
    print("published_per_telegram_x100", (mqtt.published - total0) * 100 // n)
    print("alloc_per_telegram_max", peak)
    print("held_after", gc.mem_alloc() - held0)


main()
