"""MicroPython half of bench_heap.py's HAN stream figure (192 KB heap): the App with the
stream off, then turned on as App.configure does it (code.py's factory on vmsock's pool),
a client connected, and telegram bytes fed and sent. Prints:
  off_loaded 0|1        whether han2x_core.hanstream is in sys.modules with the stream off
  on_cost BYTES         heap held once on (module + HanStream with its ring buffer)
  sending_cost BYTES    heap growth over 20 more telegrams sent to a client, after 5 (0 = the
                        stream holds nothing more while it runs)
"""

import gc
import socket
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../tests/mpy")
sys.path.insert(0, HERE + "/..")

from vmsock import Pool  # noqa: E402

from han2x_core import FIRMWARE_VERSION  # noqa: E402
from han2x_core.app import App  # noqa: E402
from han2x_core.registers import Registers  # noqa: E402
from han2x_core.settings import DEFAULTS  # noqa: E402

FRAME = bytes.fromhex("7ea0d2410883130413e6e7000f40000000000000" + "00" * 190 + "7e")


class Feed:
    def __init__(self):
        self.data = b""

    def readinto(self, buf):
        n = min(len(buf), len(self.data))
        buf[:n] = self.data[:n]
        self.data = self.data[n:]
        return n


def used():
    gc.collect()
    return gc.mem_alloc()


han = Feed()
app = App(han, Registers(firmware_version=FIRMWARE_VERSION), 0, settings=dict(DEFAULTS))
pool = Pool()


def factory(port):
    from han2x_core.hanstream import HanStream

    stream = HanStream(pool, port)
    stream.start("127.0.0.1")
    app.add(stream)
    return stream


app.stream_factory = factory
base = used()
app.configure(dict(DEFAULTS))
print("off_loaded", int("han2x_core.hanstream" in sys.modules))
on = dict(DEFAULTS)
on["han_stream_port"] = int(sys.argv[1])
on["modbus_max_clients"] = 3
base = used()
app.configure(on)
print("on_cost", used() - base)
client = socket.socket()
client.connect(socket.getaddrinfo("127.0.0.1", on["han_stream_port"])[0][-1])
for _ in range(5):
    app.step(0)
got = 0
for i in range(25):
    if i == 5:
        base = used()
    han.data = FRAME
    for _ in range(3):
        app.step(i * 10)
    got += len(client.recv(4096))
print("sending_cost", used() - base, "received", got)
client.close()
