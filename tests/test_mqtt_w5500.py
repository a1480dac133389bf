"""MQTT on the board's network stack: the real adafruit_wiznet5k driver on the W5500 model
(tools/sim/w5500_model.py), wired as code.py wires it. MQTT + Modbus + web within the socket
budget (settings.sockets_needed), and 1,000 broker reconnects without a leaked socket."""

import json
import socket
import sys
import threading
import time

import pytest

from han2x_core import FIRMWARE_VERSION
from han2x_core.settings import W5500_SOCKETS, sockets_needed
from support.mqtt_broker import Broker, Subscriber
from support.net_helpers import Device, modbus_read
from test_energystate import FrameHan, list2, list3
from test_w5500_services import curl

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

METER = "7359992890941742"
MQTT = {"mqtt_host": "192.168.1.10", "mqtt_port": 1883}


def device(broker_port, **kw):
    han = FrameHan()
    han.send(list3(4000000, 10, meter_id=METER))
    dev = Device(dict(MQTT, **kw.pop("settings", {})), han=han, ports={1883: broker_port},
                 **kw)
    return dev, han


def test_mqtt_modbus_and_web_share_the_sockets_within_the_budget():
    with Broker() as broker:
        sub = Subscriber(broker.port)
        dev, han = device(broker.port)  # modbus_max_clients 4: the most with MQTT on
        assert sockets_needed(dev.settings) == W5500_SOCKETS  # DHCP + 2 + 4 + MQTT
        with dev:
            sub.wait_for(lambda m: m[0].endswith("/import_kwh/config"), 10)
            held = []
            for _ in range(3):  # one after the other: the chip has no backlog (two listen)
                held.append(socket.create_connection(("127.0.0.1", dev.port(502)), timeout=3))
                assert modbus_read(0, 42, 1, sock=held[-1]) == [FIRMWARE_VERSION]
            assert curl(dev.port(80)) == "200"  # the web page still gets a socket
            dev.call(lambda: han.send(list2(METER, 2345)))
            power = sub.wait_for(lambda m: m[0].endswith("/power") and b"2345" in m[1], 5)
            assert json.loads(power[-1][1])["import_w"] == 2345
            # The connect-time module (CONNECT, discovery configs) is dropped once the last
            # config is out, and loaded again when Home Assistant asks for the configs.
            sub.wait_for(lambda m: m[0].endswith("/est_export_kwh/config"), 10)
            loaded = lambda: "han2x_core.mqtt_connect" in sys.modules  # noqa: E731
            assert not dev.call(loaded)
            sub.publish("homeassistant/status", b"online")
            deadline = time.monotonic() + 10
            while len(sub.take("/est_export_kwh/config")) < 2:
                assert time.monotonic() < deadline, "discovery not re-published"
                time.sleep(0.05)
            assert not dev.call(loaded)
            reserved, _ = dev.sockets_in_use()
            # SocketPool's sockets 1-7: 2 listeners + 3 Modbus + MQTT (+ web, closing)
            assert reserved <= W5500_SOCKETS - 1
            for s in held:
                s.close()
        sub.close()


class FlakyBroker:
    """Answers each CONNECT with CONNACK 0 and then closes: one reconnect per connection."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.sessions = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.ls.settimeout(0.2)
        while self.running:
            try:
                conn, _ = self.ls.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(2)
                    if first[:1] == b"\x10":  # CONNECT: answer, then hang up
                        conn.sendall(b"\x20\x02\x00\x00")
                        self.sessions += 1
                except OSError:
                    pass

    def close(self):
        self.running = False
        self.thread.join(2)
        self.ls.close()


def test_a_thousand_broker_reconnects_leak_no_socket():
    broker = FlakyBroker()
    dev, _ = device(broker.port, mqtt_kw={"backoff_min_ms": 1}, max_s=180.0)
    try:
        with dev:
            deadline = time.monotonic() + 150
            while broker.sessions < 1000 and time.monotonic() < deadline:
                time.sleep(0.2)
                assert modbus_read(dev.port(502), 42, 1) == [FIRMWARE_VERSION]
            assert broker.sessions >= 1000, broker.sessions
            mqtt = dev.mqtt
            assert mqtt.sessions >= 1000 and mqtt.attempts >= mqtt.sessions
            dev.call(mqtt.stop)
            reserved, states = dev.sockets_in_use()
            # the servers' listening sockets only (idle: two each, docs/network.md); MQTT's
            # socket given back, and every other one closed on the chip
            listening = dev.call(lambda: len(dev.modbus.sockets()) + len(dev.web.sockets()))
            assert reserved == listening and mqtt.sockets() == [], (reserved, listening)
            assert states.count(0x00) == 8 - listening, states
            assert dev.net.reclaimed == 0  # none needed the janitor
            # The slowest loop step while it reconnected: a bounded pause, not a wait for
            # the broker (the driver's own connect() would wait for the handshake).
            assert dev.max_step_s < 0.5, dev.max_step_s
    finally:
        broker.close()
