"""MQTT end to end: tools/simulate.py (the firmware on the PC's sockets) publishing to
Debian's mosquitto on 127.0.0.1; a subscriber (tests/support/mqtt_broker.py) checks the discovery
configs against Home Assistant's documented keys and the states against the registers read
with pymodbus. Broker restart, a broker that never answers CONNECT, a wrong password."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from pymodbus.client import ModbusTcpClient

from han2x_core import __version__
from han2x_core.mqtt_connect import SENSORS, TARIFF_SENSORS
from support.mqtt_broker import Broker, Subscriber
from test_energystate import list2, list3
from support.util import ROOT, free_port, wait_port

pytestmark = pytest.mark.slow

METER = "7359992890941742"
# The same power in both lists: whichever came last, the registers hold what was published.
FRAMES = [list3(5000123, 10, power_w=1500, meter_id=METER), list2(METER, 1500)]

# Home Assistant's MQTT sensor (integrations/sensor.mqtt): state_topic is required; with a
# device, unique_id is required and the device needs identifiers or connections.
HA_SENSOR_KEYS = {"name", "unique_id", "state_topic", "value_template", "unit_of_measurement",
                  "device_class", "state_class", "availability_topic", "device", "origin"}
HA_STATE_CLASSES = {"measurement", "total", "total_increasing"}
HA_DEVICE_CLASSES = {"power", "reactive_power", "current", "voltage", "energy"}


class Sim:
    """The simulator replaying FRAMES every 0.2 s with MQTT settings; Modbus and web on
    free ports."""

    def __init__(self, tmp, mqtt_port, extra=""):
        folder = tmp / ("sim%d" % free_port())
        folder.mkdir()
        capture = folder / "capture.txt"
        capture.write_text("".join(f.hex() + "\n" for f in FRAMES))
        (folder / "settings.toml").write_text(
            'mqtt_host = "127.0.0.1"\nmqtt_port = %d\n%s' % (mqtt_port, extra))
        self.port, self.http = free_port(), free_port()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tools", "simulate.py"), "--replay",
             str(capture), "--interval", "0.2", "--modbus-port", str(self.port),
             "--http-port", str(self.http), "--quiet", "--settings",
             str(folder / "settings.toml")],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_port(self.port, timeout=20)
            wait_port(self.http, timeout=10)
        except TimeoutError:
            self.proc.kill()
            raise AssertionError(self.proc.communicate()[0])

    def registers(self, start, count):
        client = ModbusTcpClient("127.0.0.1", port=self.port, timeout=3)
        assert client.connect()
        try:
            return client.read_holding_registers(start, count=count, device_id=1).registers
        finally:
            client.close()

    def status(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/api/status" % self.http,
                                    timeout=5) as r:
            return json.loads(r.read())

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def sim_factory(tmp_path):
    sims = []

    def make(port, extra=""):
        sims.append(Sim(tmp_path, port, extra))
        return sims[-1]

    yield make
    for s in sims:
        s.close()


def u32(words, i):
    return words[i] << 16 | words[i + 1]


def test_discovery_configs_and_states_match_the_registers(sim_factory):
    with Broker() as broker:
        sub = Subscriber(broker.port)
        sim = sim_factory(broker.port)
        prefix = "han2x/" + METER
        node = "han2x_" + METER
        configs = sub.wait_for(lambda m: m[0].startswith("homeassistant/sensor/"), 10)
        deadline = time.monotonic() + 10
        while len(sub.take("homeassistant/sensor/")) < len(SENSORS):
            assert time.monotonic() < deadline, len(sub.take("homeassistant/sensor/"))
            time.sleep(0.05)
        configs = {m[0]: (json.loads(m[1]), m[2]) for m in sub.take("homeassistant/sensor/")}
        assert len(configs) == len(SENSORS)
        # Retained: a subscriber that comes later (Home Assistant started after us) gets them.
        # (The energy totals go out after the configs: wait for them before it subscribes.)
        sub.wait_for(lambda m: m[0] == prefix + "/energy", 10)
        late = Subscriber(broker.port, ("homeassistant/#", "han2x/#"))
        expected = set(configs) | {prefix + "/status", prefix + "/info", prefix + "/energy"}
        deadline = time.monotonic() + 5
        while not expected <= {m[0] for m in late.take() if m[2]}:
            assert time.monotonic() < deadline, {m[0] for m in late.take() if m[2]}
            time.sleep(0.05)
        time.sleep(0.2)  # anything else retained would arrive with them
        retained = {m[0] for m in late.take() if m[2]}
        late.close()
        assert retained == expected
        uids = set()
        for topic, (cfg, _) in configs.items():
            assert topic.startswith("homeassistant/sensor/%s/" % node) and topic.endswith(
                "/config")
            assert set(cfg) <= HA_SENSOR_KEYS, set(cfg) - HA_SENSOR_KEYS
            assert cfg["state_topic"].startswith(prefix + "/") and cfg["unique_id"]
            uids.add(cfg["unique_id"])
            assert cfg["availability_topic"] == prefix + "/status"
            assert cfg["state_class"] in HA_STATE_CLASSES
            assert cfg.get("device_class", "power") in HA_DEVICE_CLASSES
            dev = cfg["device"]
            assert dev["identifiers"] == [node] and dev["manufacturer"] == "Aidon"
            assert dev["sw_version"] == __version__ and dev["serial_number"] == METER
            if cfg["state_topic"] == prefix + "/energy":
                assert cfg["state_class"] == "total_increasing"
                if cfg["unit_of_measurement"] == "kWh":
                    assert cfg["device_class"] == "energy"
        assert len(uids) == len(SENSORS)
        energy = [c for c, _ in configs.values() if c.get("device_class") == "energy"
                  and c["state_class"] == "total_increasing"]
        assert len(energy) == 2 and all(c["unit_of_measurement"] == "kWh" for c in energy)

        status = sub.wait_for(lambda m: m[0] == prefix + "/status")
        assert status[-1][1] == b"online"
        info = json.loads(sub.wait_for(lambda m: m[0] == prefix + "/info")[-1][1])
        assert info == {"meter": "aidon", "meter_id": METER, "meter_type": info["meter_type"],
                        "list_version": info["list_version"], "firmware": __version__}
        raw = sub.wait_for(lambda m: m[0] == prefix + "/raw")
        assert {bytes(m[1]) for m in raw} <= set(FRAMES) and raw[0][1][0] == 0x7E

        # States against Modbus: totals never decreasing, published retained.
        energy = json.loads(sub.wait_for(lambda m: m[0] == prefix + "/energy")[-1][1])
        words = sim.registers(61, 8)
        assert energy == {"import_kwh": u32(words, 0) / 1000, "export_kwh": u32(words, 2) / 1000,
                          "reactive_import_kvarh": u32(words, 4) / 1000,
                          "reactive_export_kvarh": u32(words, 6) / 1000}
        assert energy["import_kwh"] == 5000.12  # Aidon sends 10 Wh steps
        # Power: the values (constant in the replay) as Modbus serves them.
        power = json.loads(sub.wait_for(lambda m: m[0] == prefix + "/power")[-1][1])
        words = sim.registers(0, 20)
        assert power["import_w"] == u32(words, 0) == 1500
        assert power["current_l1_a"] == u32(words, 8) / 1000
        assert power["voltage_l2_v"] == u32(words, 16) / 10 == 230.0
        assert power["net_w"] == 1500
        est = json.loads(sub.wait_for(lambda m: m[0] == prefix + "/estimate")[-1][1])
        assert est["import_kwh"] >= energy["import_kwh"]
        # Every value_template names a key its state topic carries.
        states = {"power": power, "energy": energy, "estimate": est}
        for cfg, _ in configs.values():
            key = cfg["value_template"].split("value_json.")[1].split()[0]
            assert key in states[cfg["state_topic"].rsplit("/", 1)[1]]
        diag = sim.status()["device"]["mqtt"]
        assert diag.startswith("connected 127.0.0.1:%d" % broker.port), diag
        sub.close()


def test_home_assistant_online_republishes_discovery(sim_factory):
    with Broker() as broker:
        sub = Subscriber(broker.port)
        sim_factory(broker.port)
        first = sub.wait_for(lambda m: m[0].endswith("/import_kwh/config"))
        time.sleep(0.5)
        sub.publish("homeassistant/status", b"online")
        deadline = time.monotonic() + 10
        while len(sub.take("/import_kwh/config")) < 2:
            assert time.monotonic() < deadline, "discovery not re-published"
            time.sleep(0.05)
        assert len(first) == 1
        sub.close()


def test_broker_restart_reconnects_republishes_and_modbus_keeps_its_rate(sim_factory):
    port = free_port()
    broker = Broker(port).start()
    sim = sim_factory(port)
    sub = Subscriber(port)
    sub.wait_for(lambda m: m[0].endswith("/power"))
    client = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=2)
    assert client.connect()
    reads, errors, stop = [], [], threading.Event()

    def poll():
        while not stop.is_set():
            t = time.monotonic()
            rr = client.read_holding_registers(0, count=10, device_id=1)
            (errors if rr.isError() else reads).append(time.monotonic() - t)
            time.sleep(0.02)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        time.sleep(1.0)
        before = len(reads)
        broker.stop()
        sub.close()
        time.sleep(3.0)  # the device retries with back-off meanwhile
        during = len(reads) - before
        broker.start()
        sub = Subscriber(port)
        sub.wait_for(lambda m: m[0].endswith("/import_kwh/config"), 20)  # rediscovery
        sub.wait_for(lambda m: m[0].endswith("/power"), 5)
    finally:
        stop.set()
        thread.join()
        client.close()
        sub.close()
        broker.stop()
    assert not errors
    # Polling kept going at its rate while the broker was away (3 s at ~40 reads/s).
    assert during >= 0.5 * (before / 1.0) * 3.0, (before, during)
    assert max(reads) < 1.0


class SilentBroker:
    """Accepts TCP and never answers CONNECT; counts the connections it holds."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.conns = []
        self.accepted = []  # time of each accept
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.ls.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.append(time.monotonic())

    def open_count(self):
        """Connections the device still holds open (its side not closed)."""
        n = 0
        for c in self.conns:
            c.setblocking(False)
            try:
                while c.recv(4096):  # the CONNECT it sent, then b"" once it closed
                    pass
            except BlockingIOError:
                n += 1
            except OSError:
                pass
        return n

    def close(self):
        self.ls.close()
        for c in self.conns:
            c.close()


def test_broker_that_never_answers_connect_costs_modbus_nothing_and_backs_off(sim_factory):
    silent = SilentBroker()
    try:
        sim = sim_factory(silent.port)
        client = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=2)
        assert client.connect()
        slowest = 0.0
        deadline = time.monotonic() + 35
        while time.monotonic() < deadline:
            t = time.monotonic()
            assert not client.read_holding_registers(0, count=10, device_id=1).isError()
            slowest = max(slowest, time.monotonic() - t)
            time.sleep(0.05)
        client.close()
        times = silent.accepted
        # 10 s CONNACK timeout, then 2 s, 4 s, ... of back-off: 3 attempts in 35 s, not more
        assert 2 <= len(times) <= 3, times
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(g >= 11.5 for g in gaps), gaps
        assert silent.open_count() <= 1  # each given-up connection was closed
        assert slowest < 0.5, slowest
        assert "no CONNACK" in sim.status()["device"]["mqtt"]
    finally:
        silent.close()


def test_wrong_password_is_shown_and_not_retried_in_a_storm(sim_factory):
    with Broker(users={"han2x": "right"}) as broker:
        sim = sim_factory(broker.port, 'mqtt_user = "han2x"\nmqtt_password = "wrong"\n')
        deadline = time.monotonic() + 10
        while "refused" not in (sim.status()["device"]["mqtt"] or ""):
            assert time.monotonic() < deadline, sim.status()["device"]["mqtt"]
            time.sleep(0.1)
        diag = sim.status()["device"]["mqtt"]
        assert "bad user name or password" in diag or "not authorised" in diag, diag
        time.sleep(5)
        assert broker.logins() == 1  # the next try waits 64 s
        with urllib.request.urlopen("http://127.0.0.1:%d/api/settings" % sim.http,
                                    timeout=5) as r:
            assert b"wrong" not in r.read()  # the password is never shown
        page = urllib.request.urlopen("http://127.0.0.1:%d/diagnostics" % sim.http,
                                      timeout=5).read().decode()
        assert "bad user name or password" in page or "not authorised" in page


@pytest.mark.parametrize("factor", [1000, 2500])
def test_state_payloads_say_what_the_registers_hold(factor):
    """mqtt_ha writes the JSON into a fixed buffer digit by digit: for every captured frame
    the power, energy and estimate payloads parse as JSON and carry the registers' values
    (A and V with their decimals, null for what the meter does not send); the largest
    values fit mqtt_ha.SIZE."""
    import struct

    from han2x_core import mqtt_ha as ha
    from han2x_core.registers import Registers
    from support.util import load_corpus

    def word32(regs, offset):
        out = bytearray(4)
        assert regs.read(offset, 2, out, 0) == 0
        return struct.unpack(">I", out)[0]

    out = bytearray(ha.SIZE)
    for case in load_corpus():
        regs = Registers(scaling=factor)
        regs.update(dict(case["expected"]), 1000)
        power = json.loads(bytes(out[:ha.power(regs, out)]))
        present = regs.value(52)
        for i, key in enumerate(("import_w", "export_w", "reactive_import_var",
                                 "reactive_export_var", "current_l1_a", "current_l2_a",
                                 "current_l3_a", "voltage_l1_v", "voltage_l2_v",
                                 "voltage_l3_v")):
            if not present >> i & 1:
                assert power[key] is None, (case["id"], key)
                continue
            scale = 1000 if 4 <= i < 7 else 10 if i >= 7 else 1
            assert power[key] == pytest.approx(word32(regs, 2 * i) / scale), (case["id"], key)
        net = struct.unpack(">i", struct.pack(">I", word32(regs, 59)))[0]
        assert power["net_w"] == (net if present & 3 else None)
        n = ha.energy(regs, ha.TOTALS, out)
        assert bool(n) == bool(regs.value(50) & (4 | 32))
        if n:
            energy = json.loads(bytes(out[:n]))
            assert energy == {k.decode(): pytest.approx(word32(regs, 61 + 2 * i) / 1000)
                              for i, k in enumerate(ha.ENERGY_KEYS)}
            est = json.loads(bytes(out[:ha.energy(regs, ha.ESTIMATES, out)]))
            assert est["import_kwh"] == pytest.approx(word32(regs, 69) / 1000)
    regs = Registers(scaling=1000000)  # the largest numbers the registers can hold
    regs.update({"active_power_import_w": 10 ** 9, "active_power_export_w": 10 ** 9,
                 "reactive_power_import_var": 10 ** 9, "reactive_power_export_var": 10 ** 9,
                 "current_l1_ma": -10 ** 9, "current_l2_ma": 10 ** 9, "current_l3_ma": 10 ** 9,
                 "voltage_l1_dv": 10 ** 9, "voltage_l2_dv": 10 ** 9, "voltage_l3_dv": 10 ** 9},
                1000)
    power = json.loads(bytes(out[:ha.power(regs, out)]))
    assert power["import_w"] == 0xFFFFFFFF and power["current_l1_a"] == 0xFFFFFFFF / 1000


def test_capacity_tariff_figures_are_published_as_modbus_serves_them(sim_factory):
    """With the tariff on, P/tariff carries /api/status's tariff names with the values of
    registers 40081-40092, and five more discovery configs point at it."""
    with Broker() as broker:
        sub = Subscriber(broker.port)
        sim = sim_factory(broker.port, "tariff = true\n")
        prefix = "han2x/" + METER
        want = len(SENSORS) + len(TARIFF_SENSORS)
        deadline = time.monotonic() + 15
        while len(sub.take("homeassistant/sensor/")) < want:
            assert time.monotonic() < deadline, len(sub.take("homeassistant/sensor/"))
            time.sleep(0.05)
        configs = [json.loads(m[1]) for m in sub.take("homeassistant/sensor/")]
        assert len(configs) == want
        msg = json.loads(sub.wait_for(lambda m: m[0] == prefix + "/tariff")[-1][1])
        mine = [c for c in configs if c["state_topic"] == prefix + "/tariff"]
        assert len(mine) == len(TARIFF_SENSORS)
        for cfg in mine:
            assert cfg["value_template"].split("value_json.")[1].split()[0] in msg
        words = sim.registers(80, 12)
        assert words[0] & 1 and msg["step_index"] == words[1] >= 1
        assert msg["average_kw"] == u32(words, 2) / 1000
        assert msg["step_to_kw"] == (None if u32(words, 4) == 0xFFFFFFFF else
                                     u32(words, 4) / 1000)
        assert msg["will_cross"] in (True, False) and msg["restored"] in (True, False)
        for key in ("hour_used_kwh", "hour_estimate_kwh"):
            assert msg[key] >= 0
        status = sim.status()["tariff"]
        names = set(status) | {"step_" + k for k in status["step"]}
        assert set(msg) <= names, set(msg) - names
        sub.close()
