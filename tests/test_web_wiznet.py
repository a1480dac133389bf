"""The same WebServer on the real adafruit_wiznet5k driver over the W5500 model: pages,
JSON and bad input served through the chip's sockets, next to the Modbus server."""

import http.client
import json
import socket
import struct
import threading

import pytest

from support.net_helpers import make_network, now_ms, run
from han2x_core import FIRMWARE_VERSION
from han2x_core.app import App
from han2x_core.registers import Registers
from han2x_core.settings import DEFAULTS
from han2x_core.web import WebServer
from support.webdevice import FeedHan, frame

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

AIDON_L2 = "aidon-6534-l2-elwiz-x077"


class _Stepper:
    def __init__(self, app):
        self.app = app

    def poll(self, now):
        self.app.step(now)


def _in_thread(parts, fn):
    result = {}

    def client():
        try:
            result["value"] = fn()
        except Exception as e:  # reported by the caller
            result["error"] = e

    t = threading.Thread(target=client)
    t.start()
    run(parts, 10.0, until=lambda: not t.is_alive())
    t.join(1.0)
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_pages_json_and_bad_input_on_the_w5500():
    from han2x_core.modbus_server import ModbusServer

    model, net = make_network()
    han = FeedHan()
    regs = Registers(firmware_version=FIRMWARE_VERSION)
    app = App(han, regs, now_ms(), settings=dict(DEFAULTS))
    app.add(net)
    app.network = net  # what the pages show (assembly.build sets it on the board)
    modbus = ModbusServer(net.pool, regs, port=502, max_clients=2)
    web = WebServer(net.pool, app, port=80, max_clients=1, send_timeout_s=0.5)
    net.attach(modbus)
    net.attach(web)
    app.add(modbus)
    app.add(web)
    parts = [_Stepper(app)]
    han.push(bytes.fromhex(frame(AIDON_L2)["hex"]))
    assert run(parts, 5.0, until=lambda: app.hdlc.frames_ok == 1)
    web_port = model.host_port(80)

    def get(path):
        c = http.client.HTTPConnection("127.0.0.1", web_port, timeout=5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    status, body = _in_thread(parts, lambda: get("/api/status"))
    assert status == 200
    data = json.loads(body)
    assert data["reading"]["active_power_import_w"] == frame(AIDON_L2)["expected"][
        "active_power_import_w"]
    assert data["device"]["ip"] == "192.168.1.232"
    # what a router's lease list shows, to find or reserve the device (docs/network.md)
    mac = ":".join("%02x" % b for b in net.mac)
    assert mac.startswith("02:48:") and len(mac) == 17
    assert data["device"]["mac"] == mac
    assert data["device"]["hostname"] == "han2x-" + mac[9:].replace(":", "")
    assert data["device"]["net_mode"] == "static"
    status, body = _in_thread(parts, lambda: get("/diagnostics"))
    for key, value in (("mac", mac), ("hostname", data["device"]["hostname"]),
                       ("net_mode", "static")):
        assert ('data-k="dev.%s" data-f="s">%s<' % (key, value)).encode() in body, key
    status, body = _in_thread(parts, lambda: get("/"))
    assert status == 200 and body.endswith(b"</html>") and len(body) > 2000
    status, body = _in_thread(parts, lambda: get("/static/app.js"))
    assert status == 200 and b"drawChart" in body

    def garbage():
        with socket.create_connection(("127.0.0.1", web_port), timeout=5) as s:
            s.sendall(b"\x00\x01garbage\r\n\r\n")
            return s.recv(64)

    assert _in_thread(parts, garbage).startswith(b"HTTP/1.1 400")

    def modbus_read():
        with socket.create_connection(("127.0.0.1", model.host_port(502)), timeout=5) as s:
            s.sendall(struct.pack(">HHHBBHH", 7, 0, 6, 1, 3, 0, 2))
            return s.recv(64)

    answer = _in_thread(parts, modbus_read)
    assert answer[:2] == b"\x00\x07" and answer[7] == 3
    assert web.errors == 0, web.last_error
    web.stop()
    modbus.stop()
    model.close()


def test_all_w5500_sockets_in_use_makes_the_page_wait_not_fail():
    """Modbus listener + 4 Modbus clients + web listener leave one socket of the seven: two
    browsers at once are served one after the other, and nothing counts as an error."""
    from han2x_core.modbus_server import ModbusServer

    model, net = make_network()
    regs = Registers(firmware_version=FIRMWARE_VERSION)
    app = App(FeedHan(), regs, now_ms(), settings=dict(DEFAULTS))
    app.add(net)
    app.network = net
    modbus = ModbusServer(net.pool, regs, port=502, max_clients=4)
    web = WebServer(net.pool, app, port=80, max_clients=2, send_timeout_s=0.5)
    for service in (modbus, web):
        net.attach(service)
        app.add(service)
    parts = [_Stepper(app)]
    held = []

    def connect_modbus():
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", model.host_port(502)), timeout=5)
            s.sendall(struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 0, 2))
            assert s.recv(64)[7] == 3
            held.append(s)
        return True

    assert _in_thread(parts, connect_modbus)
    results = []

    def two_browsers():
        threads = []
        for path in ("/", "/api/status"):
            def get(path=path):
                c = http.client.HTTPConnection("127.0.0.1", model.host_port(80), timeout=10)
                c.request("GET", path)
                r = c.getresponse()
                results.append((r.status, len(r.read())))
                c.close()
            t = threading.Thread(target=get)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(15)
        return True

    _in_thread(parts, two_browsers)
    assert sorted(s for s, _n in results) == [200, 200], results
    assert web.errors == 0, web.last_error
    for s in held:
        s.close()
    web.stop()
    modbus.stop()
    model.close()
