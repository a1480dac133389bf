"""The raw HAN stream (han2x_core/hanstream.py) against its real client, amshan's own reader
(PyPI amshan, package `han`: its TCP connection and HDLC frame reader, as Home Assistant's
integration uses them), and /data.json against evcc's amsleser field paths, read with jq.
Both compared with what our Modbus registers give for the same telegrams."""

import asyncio
import base64
import json
import queue
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from han2x_core.settings import DEFAULTS, sockets_needed, validate
from support.net_helpers import modbus_read
from test_soak import connect
from tools import simulate
from support.util import free_port

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


class Clock:
    """The simulated meter's clock, moved by the test: one telegram at a time."""

    t = 0.0

    def __call__(self):
        return self.t


class Running:
    """A simulate.py device (CPython sockets, or the W5500 model with w5500=True) with its
    loop in a thread."""

    def __init__(self, meter="aidon", speed=1.0, clock=None, stream=True, w5500=False,
                 **settings):
        self.clock = clock
        self.han = simulate.SimulatedHan(meter, 3, speed, seed=3,
                                         monotonic=clock or time.monotonic)
        s = dict(DEFAULTS)
        s.update(modbus_max_clients=3, web_port=free_port(), modbus_port=free_port(),
                 han_stream_port=free_port() if stream else 0)
        s.update(settings)
        s, errors = validate(s)
        assert errors == {}
        self.settings = s
        args = simulate.build_parser().parse_args(["--quiet"] + (["--w5500"] if w5500 else []))
        args.http_port = s["web_port"]
        if w5500:
            import gc

            # The driver's gc.collect() (every send) runs for real, as on the board; freeze
            # the test process's own objects so it costs what the firmware's heap costs
            # (as tests/support/net_helpers.Device does; docs/w5500-model.md).
            gc.freeze()
            self.ports = {p: free_port() for p in (s["modbus_port"], s["web_port"],
                                                  s["han_stream_port"])}
            self.dev = simulate.build_w5500_device(args, settings=s, han=self.han,
                                                   port_map=self.ports)
        else:
            self.ports = {p: p for p in (s["modbus_port"], s["web_port"], s["han_stream_port"])}
            self.dev = simulate.build_device(args, settings=s, han=self.han)
        self.app = self.dev.app
        self.stream = self.dev.services.get("han_stream")
        self.max_step_s = 0.0
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def port(self, key):
        return self.ports[self.settings[key]]

    def _loop(self):
        deadline = time.monotonic() + 120
        while not self._stop and time.monotonic() < deadline:
            t = time.monotonic()
            self.dev.step()
            self.max_step_s = max(self.max_step_s, time.monotonic() - t)
            self.dev.wait(0.001)

    def next_telegram(self):
        """Let the simulated meter send its next telegram now."""
        self.clock.t = self.han._next[0]

    def registers(self):
        return modbus_read(self.port("modbus_port"), 0, 77)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join(10)
        self.dev.close()
        model = getattr(self.dev, "model", None)
        if model is not None:
            model.close()


def wait_until(cond, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def u32(regs, offset):
    return regs[offset] << 16 | regs[offset + 1]


class AmshanClient:
    """amshan's TCP message connection (its default HdlcFrameReader) in its own event loop;
    each message decoded with its AutoDecoder, as the integration does, into `decoded`."""

    def __init__(self, port):
        self.port = port
        self.decoded = queue.Queue()
        self.ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.ready.wait(10)

    def _run(self):
        from han.autodecoder import AutoDecoder
        from han.tcp_connection_factory import create_tcp_message_connection

        async def main():
            messages = asyncio.Queue()
            self.transport, _ = await create_tcp_message_connection(
                messages, None, None, host="127.0.0.1", port=self.port)
            self.ready.set()
            decoder = AutoDecoder()
            while True:
                message = await messages.get()
                self.decoded.put(decoder.decode_message(message))

        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(main())
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass

    def close(self):
        self._loop.call_soon_threadsafe(self.transport.close)
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(5)


@pytest.mark.parametrize("meter", ["aidon", "kaifa", "kamstrup"])
def test_amshan_decodes_the_stream_as_our_registers_read(meter):
    with Running(meter, clock=Clock()) as dev:
        client = AmshanClient(dev.port("han_stream_port"))
        wait_until(lambda: dev.stream.connected)  # bytes before accept() go to nobody
        try:
            deadline = time.monotonic() + 60
            compared = set()
            while not {"power", "phases", "totals"} <= compared:
                assert time.monotonic() < deadline, compared
                dev.next_telegram()
                d = client.decoded.get(timeout=10)
                assert d is not None, "amshan could not decode the frame"
                regs = dev.registers()  # the device decoded it before forwarding its end
                assert d["active_power_import"] == u32(regs, 0)
                compared.add("power")
                if "current_l1" in d:
                    for i, (name, scale) in enumerate((("active_power_export", 1),
                                                       ("reactive_power_import", 1),
                                                       ("reactive_power_export", 1))):
                        assert round(d[name] * scale) == u32(regs, 2 + 2 * i), name
                    for n in (1, 2, 3):
                        if ("current_l%d" % n) in d:
                            assert round(abs(d["current_l%d" % n]) * 1000) == u32(regs, 6 + 2 * n)
                        assert round(d["voltage_l%d" % n] * 10) == u32(regs, 12 + 2 * n)
                    compared.add("phases")
                if "active_power_import_total" in d and "totals" not in compared:
                    # the first hourly list (later ones may be the meter's stale repeats)
                    for i, name in enumerate(("active_power_import_total",
                                              "active_power_export_total",
                                              "reactive_power_import_total",
                                              "reactive_power_export_total")):
                        assert d[name] == u32(regs, 61 + 2 * i), name  # Wh, 40062-40069
                    compared.add("totals")
        finally:
            client.close()
        status = dev.stream.status()
        assert status["clients"] == 1 and status["bytes_dropped"] == 0
        assert status["bytes_sent"] > 0 and status["errors"] == 0


def recv_some(sock, seconds=5.0):
    sock.settimeout(seconds)
    return sock.recv(4096)


def test_a_second_client_replaces_the_first():
    with Running("aidon", speed=20) as dev:
        port = dev.port("han_stream_port")
        first = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert recv_some(first)[:1] == b"\x7e"  # an HDLC flag: raw meter bytes
        second = socket.create_connection(("127.0.0.1", port), timeout=5)
        deadline = time.monotonic() + 5
        got = b""
        while got != b"" or time.monotonic() < deadline:
            try:
                got = recv_some(first, 1.0)
            except (ConnectionResetError, TimeoutError, socket.timeout):
                got = None
                break
            if got == b"":
                break
        assert got in (b"", None), "the first client was not closed"
        assert recv_some(second)  # the second gets the meter's bytes
        assert dev.stream.replaced == 1 and dev.stream.clients == 2
        first.close()
        second.close()


def pymodbus_rate(port, seconds):
    """Reads per second of one pymodbus client polling all 77 registers back to back."""
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
    assert client.connect()
    try:
        n = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rr = client.read_holding_registers(0, count=77, device_id=1)
            assert not rr.isError()
            n += 1
        return n / seconds
    finally:
        client.close()


def test_a_client_that_reads_nothing_does_not_stall_modbus_on_the_w5500():
    """At 100x the meter's pace, 3 s are 300 s of meter bytes for a client that reads
    nothing; on the W5500 model its window fills within a few KB. pymodbus keeps its rate;
    the stream drops and counts, or closes the client, and the heap buffer stays fixed."""
    with Running("aidon", speed=100, w5500=True, modbus_max_clients=2) as dev:
        port = dev.port("modbus_port")
        modbus_read(port, 42, 1)
        before = pymodbus_rate(port, 1.5)
        hog = socket.socket()
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        hog.connect(("127.0.0.1", dev.port("han_stream_port")))
        during = pymodbus_rate(port, 3.0)
        stream = dev.stream
        assert stream.clients == 1
        assert stream.bytes_sent > 0
        assert stream.bytes_dropped > 0 or stream.stalled == 1, stream.status()
        assert during > 0.5 * before, (before, during)
        assert dev.max_step_s < 0.5
        assert len(stream._ring) == 1024
        hog.close()


def test_stream_modbus_and_web_together_and_no_socket_leaks_after_500_cycles():
    """The real adafruit_wiznet5k driver on the W5500 model, wired as code.py: with the
    stream on and modbus_max_clients = 2, two Modbus clients, the stream client and a
    browser are all served at once; 500 stream connect/disconnect cycles leave exactly the
    sockets there were before."""
    from adafruit_wiznet5k.adafruit_wiznet5k import WIZNET5K

    with Running("kamstrup", speed=20, w5500=True, modbus_max_clients=2) as dev:
        mb = dev.port("modbus_port")
        modbus_read(mb, 42, 1)
        assert sockets_needed(dev.settings) == 7
        time.sleep(0.3)
        base = sum(WIZNET5K._sockets_reserved)
        # the listeners: Modbus and web two each (docs/network.md), the stream one; socket
        # 0 is DHCP's, never reserved
        assert base == 5
        a = socket.create_connection(("127.0.0.1", mb), timeout=5)
        b = socket.create_connection(("127.0.0.1", mb), timeout=5)
        s = socket.create_connection(("127.0.0.1", dev.port("han_stream_port")), timeout=5)
        assert modbus_read(mb, 0, 2, sock=a) == modbus_read(mb, 0, 2, sock=b)
        assert recv_some(s)
        with urllib.request.urlopen("http://127.0.0.1:%d/api/status" % dev.port("web_port"),
                                    timeout=10) as r:
            status = json.load(r)
        assert status["device"]["stream_clients"] == 1
        assert status["device"]["stream_bytes_sent"] > 0
        for c in (a, b, s):
            c.close()
        served = dev.stream.clients
        for _ in range(500):  # refused now and then, as the chip refuses while no socket
            c = connect(dev.port("han_stream_port"))  # listens: retried, as amshan does
            served += 1
            wait_until(lambda: dev.stream.clients == served)  # accepted: then it leaves
            c.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (
                dev.stream.connected or sum(WIZNET5K._sockets_reserved) != base):
            time.sleep(0.1)
        assert sum(WIZNET5K._sockets_reserved) == base
        assert dev.dev.services["network"].reclaimed == 0
        s = socket.create_connection(("127.0.0.1", dev.port("han_stream_port")), timeout=5)
        assert recv_some(s)[:1] == b"\x7e"
        s.close()
        assert modbus_read(mb, 42, 1)


AMSLESER = {  # evcc's templates/definition/meter/amsleser.yaml: its jq paths
    "power": ".w", "power_pv": ".e", "energy": ".ic", "energy_pv": ".ec",
    "currents": (".l1.i", ".l2.i", ".l3.i"), "voltages": (".l1.u", ".l2.u", ".l3.u"),
    "powers": (".l1.p", ".l2.p", ".l3.p"),
}


def jq(path, text):
    out = subprocess.run(["jq", "-c", path], input=text, capture_output=True, text=True,
                         timeout=10, check=True)
    return json.loads(out.stdout)


def get(url, auth=None):
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def test_data_json_read_with_the_amsleser_paths_equals_the_registers():
    with Running("aidon", clock=Clock(), stream=False, web_password="s3cret",
                 web_protect="all") as dev:
        url = "http://127.0.0.1:%d/data.json" % dev.port("web_port")
        dev.next_telegram()
        time.sleep(0.3)
        text = get(url, "evcc:s3cret")
        assert jq(AMSLESER["energy"], text) is None  # no totals known yet: not 0
        for _ in range(40):  # past the full hour: the hourly totals arrive
            dev.next_telegram()
            time.sleep(0.05)
        time.sleep(0.5)
        text = get(url, "evcc:s3cret")
        regs = dev.registers()
        assert jq(AMSLESER["power"], text) == u32(regs, 0)
        assert jq(AMSLESER["power_pv"], text) == u32(regs, 2)
        assert jq(AMSLESER["energy"], text) == u32(regs, 69) / 1000 > 0
        assert jq(AMSLESER["energy_pv"], text) == u32(regs, 71) / 1000
        for n in range(3):
            assert jq(AMSLESER["currents"][n], text) == u32(regs, 8 + 2 * n) / 1000
            assert jq(AMSLESER["voltages"][n], text) == u32(regs, 14 + 2 * n) / 10
        powers = [jq(p, text) for p in AMSLESER["powers"]]
        net = u32(regs, 0) - u32(regs, 2)
        assert abs(sum(powers) - net) <= 3 and all(p >= 0 for p in powers) == (net >= 0)
        with pytest.raises(urllib.error.HTTPError) as e:
            get(url)
        assert e.value.code == 401 and "Basic" in e.value.headers["WWW-Authenticate"]
        with pytest.raises(urllib.error.HTTPError) as e:
            get(url, "evcc:wrong")
        assert e.value.code == 401


def test_socket_budget_in_settings():
    s = dict(DEFAULTS)
    assert sockets_needed(s) == 7
    s["han_stream_port"] = 3001
    clean, errors = validate(s)
    assert "modbus_max_clients" in errors and "3" in errors["modbus_max_clients"]
    assert clean["modbus_max_clients"] == 3 and sockets_needed(clean) == 8
    s["modbus_max_clients"] = 3
    assert validate(s)[1] == {}
    s["han_stream_port"] = s["web_port"]
    assert "han_stream_port" in validate(s)[1]


def test_stream_module_is_loaded_only_when_on():
    import sys

    sys.modules.pop("han2x_core.hanstream", None)
    dev = Running("aidon", speed=20, stream=False)  # stepped here, no loop thread
    try:
        for _ in range(20):
            dev.dev.step()
        assert "han2x_core.hanstream" not in sys.modules and dev.app.raw_tap is None
        on = dict(dev.settings, han_stream_port=free_port())
        dev.app.configure(on)  # turned on from the settings page: built now, serving
        assert "han2x_core.hanstream" in sys.modules and dev.app.raw_tap is not None
        s = socket.create_connection(("127.0.0.1", on["han_stream_port"]), timeout=5)
        s.settimeout(0.05)
        got = b""
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            dev.dev.step()
            try:
                got = s.recv(100)
            except (TimeoutError, socket.timeout):
                pass
        assert got[:1] == b"\x7e"
        s.close()
        dev.app.configure(dict(on, han_stream_port=0))  # off again: stops listening
        dev.dev.step()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", on["han_stream_port"]), timeout=2).close()
    finally:
        dev.dev.close()
