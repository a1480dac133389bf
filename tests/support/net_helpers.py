"""Shared by the network tests and the soak: a ms clock, a bounded poll loop, an echo
server over any socket pool, and a Network booted on the W5500 model."""

import errno
import time

from tools.sim.w5500_model import W5500Model, install_driver_shims

install_driver_shims()

UID = b"\xe6\x61\x41\x04\x03\x5c\x2b\x27"  # an RP2040 flash unique id, 8 bytes


def now_ms():
    return time.monotonic_ns() // 1_000_000 & (2**29 - 1)


def run(parts, seconds, until=None, sleep=0.001):
    """Poll every part until `until()` is true or `seconds` pass; returns until()'s last
    value (True when there is no condition). Records the slowest poll in run.max_poll_s."""
    deadline = time.monotonic() + seconds
    run.max_poll_s = 0.0
    while time.monotonic() < deadline:
        for part in parts:
            t = time.monotonic()
            part.poll(now_ms())
            run.max_poll_s = max(run.max_poll_s, time.monotonic() - t)
        if until is not None and until():
            return True
        time.sleep(sleep)
    return until() if until is not None else True


def make_network(model=None, settings=None, **kw):
    """A Network on a fresh model (ports 502 and 80 mapped to free host ports)."""
    from han2x_core.network import Network
    from support.util import free_port

    if model is None:
        model = W5500Model(port_map={502: free_port(), 80: free_port(), 503: free_port()})
    lines = []
    kw.setdefault("dhcp_retry_ms", 300)
    kw.setdefault("apply_delay_ms", 200)
    net = Network(model.spi, model.cs, uid=UID, settings=settings, log=lines.append, **kw)
    net.lines = lines
    return model, net


class EchoService:
    """A tiny non-blocking TCP echo server in the shape of our servers: start(host),
    stop(), poll(now_ms). Handles the wiznet pool's quirks like ModbusServer must."""

    def __init__(self, pool, port):
        self.pool, self.port = pool, port
        self.listener = None
        self.clients = []
        self.starts = 0
        self.buf = bytearray(256)

    def start(self, host):
        self.starts += 1
        s = self.pool.socket(self.pool.AF_INET, self.pool.SOCK_STREAM)
        try:
            s.bind((host, self.port))
            s.listen(1)
        except Exception:
            s.close()
            raise
        s.settimeout(0)
        self.listener = s

    def sockets(self):
        return self.clients + ([self.listener] if self.listener else [])

    def stop(self):
        for c in self.clients + ([self.listener] if self.listener else []):
            try:
                c.close()
            except Exception:
                pass
        self.clients, self.listener = [], None

    def poll(self, now_ms):
        if self.listener is None:
            return
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(0)
            self.clients.append(conn)
        except OSError as e:
            if e.args[0] != errno.EAGAIN:
                raise
        except RuntimeError:  # "All sockets in use."
            pass
        for c in list(self.clients):
            try:
                n = c.recv_into(self.buf)
            except OSError as e:
                if e.args[0] == errno.EAGAIN:
                    continue
                n = 0
            except Exception:
                n = 0
            if n:
                c.settimeout(1.0)  # never send with timeout 0/None on wiznet
                c.send(self.buf[:n])
                c.settimeout(0)
            else:
                self.clients.remove(c)
                c.close()


class Device:
    """The firmware wired as code.py wires it (App + Network + ModbusServer + WebServer),
    on the W5500 model, its loop in a thread. Use as a context manager. Test code runs in
    the loop thread through call(fn), so nothing races with app.step()."""

    def __init__(self, settings=None, web=True, max_s=90.0, han=None, ports=None, mqtt_kw=None,
                 **net_kw):
        import gc

        # The driver's gc.collect() runs for real. On the board the heap holds only the
        # firmware; here it also holds pytest, hypothesis, selenium... (~100 ms a full
        # collection). Freezing what exists now leaves the collections the firmware's own.
        gc.freeze()
        import threading

        from han2x_core import FIRMWARE_VERSION
        from han2x_core.app import App
        from han2x_core.modbus_server import ModbusServer
        from han2x_core.registers import Registers
        from han2x_core.settings import DEFAULTS
        from support.util import free_port

        self.settings = dict(DEFAULTS)
        self.settings.update(settings or {})
        s = self.settings
        extra = ports or {}
        ports = {p: free_port() for p in (502, 80, 1502, 8080, s["modbus_port"], s["web_port"])}
        ports.update(extra)  # e.g. the device's MQTT port -> a broker on the host
        self.model = W5500Model(port_map=ports)
        self.model, self.net = make_network(self.model, settings=s, **net_kw)
        self.app = App(han, Registers(firmware_version=FIRMWARE_VERSION), now_ms(),
                       settings=s)
        self.app.add(self.net)
        self.modbus = ModbusServer(self.net.pool, self.app.registers, port=s["modbus_port"],
                                   max_clients=s["modbus_max_clients"],
                                   idle_timeout_ms=s["modbus_idle_timeout_s"] * 1000,
                                   unit_id=s["modbus_unit_id"], send_timeout_s=0.1)
        self.net.attach(self.modbus)
        self.app.add(self.modbus)
        self.app.network = self.net
        self.app.modbus = self.modbus
        self.web = None
        if web:
            from han2x_core.web import WebServer

            self.web = WebServer(self.net.pool, self.app, port=s["web_port"], max_clients=1,
                                 send_timeout_s=0.1)
            self.net.attach(self.web)
            self.app.add(self.web)
            self.app.web = self.web
        self.mqtt = None
        if s["mqtt_host"]:  # as code.py
            from han2x_core import __version__
            from han2x_core.mqtt import MqttClient

            self.mqtt = MqttClient(self.net.pool, self.app, self.net.hostname, __version__,
                                   **(mqtt_kw or {}))
            self.net.attach(self.mqtt)
            self.app.add(self.mqtt)
            self.app.mqtt = self.mqtt
        self._calls = []
        self._stop = False
        self._max_s = max_s
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.loops = 0
        self.max_step_s = 0.0

    def port(self, device_port):
        return self.model.host_port(device_port)

    def _loop(self):
        deadline = time.monotonic() + self._max_s
        while not self._stop and time.monotonic() < deadline:
            while self._calls:
                fn, box = self._calls.pop(0)
                try:
                    box.append((True, fn()))
                except Exception as e:  # handed back to the caller
                    box.append((False, e))
            t = time.monotonic()
            self.app.step(now_ms())
            self.max_step_s = max(self.max_step_s, time.monotonic() - t)
            self.loops += 1
            time.sleep(0.0001)

    def call(self, fn, timeout=5.0):
        """Run fn() in the device loop thread; return its result or raise its error."""
        box = []
        self._calls.append((fn, box))
        deadline = time.monotonic() + timeout
        while not box and time.monotonic() < deadline:
            time.sleep(0.001)
        if not box:
            raise TimeoutError("device loop did not run the call")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join(5.0)
        self.model.close()

    def sockets_in_use(self):
        """(hardware sockets reserved in the driver, sorted chip states of all 8): which
        socket numbers the listeners sit on changes with every accept(), so not those."""
        from adafruit_wiznet5k.adafruit_wiznet5k import WIZNET5K

        return self.call(lambda: (sum(WIZNET5K._sockets_reserved),
                                  sorted(self.model.status(n) for n in range(8))))


def modbus_read(port, start=0, count=2, unit=1, tid=1, timeout=3.0, sock=None):
    """One FC03 request over a fresh (or given) connection; returns the register words."""
    import socket
    import struct

    from support.modbus_frames import mbap_read
    from support.util import recv_exact

    own = sock is None
    if own:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    wait = timeout if own else sock.gettimeout()  # a given socket keeps its own
    try:
        sock.sendall(mbap_read(tid, start, count, unit))
        head = recv_exact(sock, 9, wait)  # an exception answer is these 9 bytes
        if head[7] & 0x80:
            raise ValueError("Modbus exception %d" % head[8])
        t, _, _, _, fc, n = struct.unpack(">HHHBBB", head)
        if t != tid or fc != 3 or n != 2 * count:
            raise ValueError("bad response %r" % head)
        return list(struct.unpack(">%dH" % count, recv_exact(sock, 2 * count, wait)))
    finally:
        if own:
            sock.close()
