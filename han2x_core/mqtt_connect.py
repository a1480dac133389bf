"""What MQTT does once per connection (shell helpers of mqtt.MqttClient): open the socket
without waiting, send CONNECT once TCP is up, say why the broker refused, subscribe to Home
Assistant's status, publish the meter info and the discovery configs. (CONNECT and
SUBSCRIBE packets: MQTT 3.1.1 sections 3.1 and 3.8, with mqtt_wire's helpers.) Loaded by mqtt.py for a connection attempt
and dropped again when the last config is out or the attempt fails (as the web pages'
modules): its code and sensor table do not stay in the heap between connections.

Discovery: per-entity configs `<discovery>/sensor/han2x_<meter id>/<key>/config` (Home
Assistant's MQTT discovery, one retained message per sensor, all of them in one device per
meter); users' view in docs/integration.md.
"""

from micropython import const

from han2x_core import mqtt_wire as wire
from han2x_core.mqtt import ANSWER_MS, CONNACK, Q_DISCOVERY, Q_INFO, Q_SUBSCRIBE, TCP
from han2x_core.ticks import ticks_add, ticks_diff

_CONNECT = const(0x10)
_SUBSCRIBE = const(0x82)  # with the reserved flags 0010
_KEEPALIVE_S = const(60)
_CONNECT_MS = const(10000)  # TCP handshake
_SNSR_CLOSED = const(0x00)
_SNSR_ESTABLISHED = const(0x17)
_SNMR_TCP_ND = const(0x21)  # TCP, no delayed ACK: what the driver's SocketPool opens
_CMD_CONNECT = const(0x04)

# (topic, key, name, unit, device_class, state_class). "" = left out.
SENSORS = (
    ("power", "import_w", "Power import", "W", "power", "measurement"),
    ("power", "export_w", "Power export", "W", "power", "measurement"),
    ("power", "net_w", "Net power", "W", "power", "measurement"),
    ("power", "reactive_import_var", "Reactive power import", "var", "reactive_power",
     "measurement"),
    ("power", "reactive_export_var", "Reactive power export", "var", "reactive_power",
     "measurement"),
    ("power", "current_l1_a", "Current L1", "A", "current", "measurement"),
    ("power", "current_l2_a", "Current L2", "A", "current", "measurement"),
    ("power", "current_l3_a", "Current L3", "A", "current", "measurement"),
    ("power", "voltage_l1_v", "Voltage L1", "V", "voltage", "measurement"),
    ("power", "voltage_l2_v", "Voltage L2", "V", "voltage", "measurement"),
    ("power", "voltage_l3_v", "Voltage L3", "V", "voltage", "measurement"),
    # The energy dashboard's sensors: never decreasing, hourly from the meter.
    ("energy", "import_kwh", "Energy import", "kWh", "energy", "total_increasing"),
    ("energy", "export_kwh", "Energy export", "kWh", "energy", "total_increasing"),
    ("energy", "reactive_import_kvarh", "Reactive energy import", "kvarh", "",
     "total_increasing"),
    ("energy", "reactive_export_kvarh", "Reactive energy export", "kvarh", "",
     "total_increasing"),
    # Estimated now: grows between the hourly totals; "total" because after a restart it
    # resumes from the last hourly save (docs/registers.md), which is not a meter reset.
    ("estimate", "import_kwh", "Energy import (estimated now)", "kWh", "energy", "total"),
    ("estimate", "export_kwh", "Energy export (estimated now)", "kWh", "energy", "total"),
)
COUNT = const(17)
# The capacity tariff's, while the setting "tariff" is on (docs/tariff.md).
TARIFF_SENSORS = (
    ("tariff", "average_kw", "Capacity tariff month value", "kW", "power", "measurement"),
    ("tariff", "step_index", "Capacity tariff step", "", "", "measurement"),
    ("tariff", "hour_used_kwh", "Capacity tariff hour used", "kWh", "", "measurement"),
    ("tariff", "hour_estimate_kwh", "Capacity tariff hour estimate", "kWh", "",
     "measurement"),
    ("tariff", "kwh_left", "Capacity tariff kWh left", "kWh", "", "measurement"),
)
_MAKERS = {"aidon": "Aidon", "kaifa": "Kaifa", "kamstrup": "Kamstrup"}

# CONNACK return codes 1-5 (MQTT 3.1.1, 3.2.2.3), as the diagnostics page says them.
_REFUSED = ("unacceptable protocol version", "client id rejected", "server unavailable",
            "bad user name or password", "not authorised")


def refused(code):
    return _REFUSED[code - 1] if 0 < code <= len(_REFUSED) else "code %d" % code


def _q(text):
    """A JSON string literal (meter texts come from the meter: escape them)."""
    out = str(text).replace("\\", "\\\\").replace('"', '\\"')  # allocates: short text
    return '"' + "".join(c if 32 <= ord(c) < 127 else "?" for c in out) + '"'


def info(latest, version):
    """The info topic's JSON: what the meter says it is, and our firmware."""
    return '{"meter":%s,"meter_id":%s,"meter_type":%s,"list_version":%s,"firmware":%s}' % (
        _q(latest.get("meter") or ""), _q(latest.get("meter_id") or ""),
        _q(latest.get("meter_type") or ""), _q(latest.get("list_version") or ""),
        _q(version))


def node_id(meter_id):
    """han2x_<meter id> with only [a-zA-Z0-9_-] (Home Assistant's node_id rule)."""
    return "han2x_" + "".join(c if c.isalpha() or c.isdigit() else "_" for c in meter_id)


def discovery(i, disc, prefix, latest, version):
    """(topic, payload) of sensor i's retained discovery config."""
    topic, key, name, unit, dclass, sclass = SENSORS[i] if i < COUNT else TARIFF_SENSORS[
        i - COUNT]
    node = node_id(latest.get("meter_id") or "")
    uid = node + ("_est_" if topic == "estimate" else "_") + key
    meter = latest.get("meter") or ""
    extra = ',"device_class":"%s"' % dclass if dclass else ""
    extra += ',"unit_of_measurement":"%s"' % unit if unit else ""
    payload = (  # allocates: ~600 bytes per config, once per connection and sensor
        '{"name":"%s","unique_id":"%s","state_topic":"%s/%s",'
        '"value_template":"{{ value_json.%s }}"%s,'
        '"state_class":"%s","availability_topic":"%s/status",'
        '"device":{"identifiers":["%s"],"name":%s,"manufacturer":%s,"model":%s,'
        '"serial_number":%s,"sw_version":%s},"origin":{"name":"HAN2X open firmware",'
        '"sw_version":%s}}' % (
            name, uid, prefix, topic, key, extra, sclass, prefix, node,
            _q("HAN2X " + (_MAKERS.get(meter, meter) or "meter")),
            _q(_MAKERS.get(meter, meter) or "unknown"), _q(latest.get("meter_type") or ""),
            _q(latest.get("meter_id") or ""), _q(version), _q(version)))
    return "%s/sensor/%s/%s/config" % (disc, node, uid[len(node) + 1:]), payload


def connect(buf, client_id, keepalive_s, will_topic, will_message, user="", password=""):
    """CONNECT with clean session and a retained QoS 0 will. Returns the packet length.
    Raises ValueError when it does not fit buf."""
    body = 12 + wire.text_len(client_id) + 4 + wire.text_len(will_topic) + len(will_message)
    flags = 0x02 | 0x04 | 0x20  # clean session, will flag, will retain (QoS 0)
    if user:
        flags |= 0x80
        body += 2 + wire.text_len(user)
        if password:
            flags |= 0x40
            body += 2 + wire.text_len(password)
    if body + 5 > len(buf):
        raise ValueError("MQTT CONNECT too long")
    pos = wire.fixed(buf, _CONNECT, body)
    pos = wire.string(buf, pos, b"MQTT")
    buf[pos] = 4  # protocol level 3.1.1
    buf[pos + 1] = flags
    buf[pos + 2] = keepalive_s >> 8
    buf[pos + 3] = keepalive_s & 0xFF
    pos = wire.string(buf, pos + 4, client_id)
    pos = wire.string(buf, pos, will_topic)
    pos = wire.string(buf, pos, will_message)
    if user:
        pos = wire.string(buf, pos, user)
        if password:
            pos = wire.string(buf, pos, password)
    return pos


def subscribe(buf, packet_id, topic):
    """SUBSCRIBE to one topic at QoS 0. Returns the packet length."""
    pos = wire.fixed(buf, _SUBSCRIBE, 2 + 2 + wire.text_len(topic) + 1)
    buf[pos] = packet_id >> 8
    buf[pos + 1] = packet_id & 0xFF
    pos = wire.string(buf, pos + 2, topic)
    buf[pos] = 0
    return pos + 1


def open_socket(c, now_ms):
    """Start the TCP handshake to the broker (IDLE -> TCP) without waiting for it: on the
    W5500 through the driver's socket registers, because its connect() waits."""
    c.attempts += 1
    host, port = c._cfg[0], c._cfg[1]
    try:
        sock = c.pool.socket(c.pool.AF_INET, c.pool.SOCK_STREAM)
    except Exception as e:  # "All sockets in use.": try again later
        c._drop(now_ms, "no socket: %s" % e)
        return
    c.sock = sock
    try:
        if hasattr(sock, "_socknum"):  # adafruit_wiznet5k: start the handshake only
            eth = sock._interface
            eth.socket_open(sock._socknum, _SNMR_TCP_ND)
            eth._write_sndipr(sock._socknum, eth.unpretty_ip(host))
            eth._write_sndport(sock._socknum, port)
            eth._write_sncr(sock._socknum, _CMD_CONNECT)
        else:  # CPython
            sock.setblocking(False)
            sock.connect_ex((host, port))
    except Exception as e:
        c._drop(now_ms, "connect: %s" % e)
        return
    c.state = TCP
    c._at = ticks_add(now_ms, _CONNECT_MS)


def tcp(c, now_ms):
    """Watch the handshake; once up, send CONNECT (TCP -> CONNACK)."""
    sock = c.sock
    if hasattr(sock, "_socknum"):
        status = sock._interface.socket_status(sock._socknum)
        up = status == _SNSR_ESTABLISHED
        failed = status == _SNSR_CLOSED
    else:
        failed = sock.getsockopt(c.pool.SOL_SOCKET, c.pool.SO_ERROR) != 0
        up = False
        if not failed:
            try:
                sock.getpeername()
                up = True
            except OSError:
                pass
    cfg = c._cfg
    if failed:
        c._drop(now_ms, "broker %s:%d not reachable" % (cfg[0], cfg[1]))
        return
    if not up:
        if ticks_diff(now_ms, c._at) >= 0:
            c._drop(now_ms, "broker %s:%d: no answer" % (cfg[0], cfg[1]))
        return
    c._prefix = cfg[5] or "han2x/" + c.app.latest.get("meter_id", "")
    n = connect(c._tx, cfg[4], _KEEPALIVE_S, c._prefix + "/status", b"offline",
                     cfg[2], cfg[3])
    c.reader.clear()
    c._send(memoryview(c._tx)[:n], now_ms)
    c.state = CONNACK
    c._at = ticks_add(now_ms, ANSWER_MS)


def hello(c, q, p, now_ms):
    """After CONNACK, one message per call (per poll): the subscription to Home
    Assistant's status, the meter info, then the discovery configs. Done: this module is
    dropped (mqtt.py loads it again for the next connection)."""
    latest = c.app.latest
    disc = c._cfg[6]
    if q & Q_SUBSCRIBE:
        c._queue &= ~Q_SUBSCRIBE
        n = subscribe(c._tx, 1, disc + "/status")
        c._send(memoryview(c._tx)[:n], now_ms)
    elif q & Q_INFO:
        c._queue &= ~Q_INFO
        c._publish(p + "/info", info(latest, c.version), True, now_ms)
    else:
        i = c._disc_next
        c._disc_next += 1
        count = COUNT + (len(TARIFF_SENSORS) if getattr(c.app, "tariff", None) else 0)
        if c._disc_next >= count or not disc:
            c._queue &= ~Q_DISCOVERY
        if disc:
            topic, payload = discovery(i, disc, p, latest, c.version)
            c._publish(topic, payload, True, now_ms)
    if not c._queue & (Q_SUBSCRIBE | Q_INFO | Q_DISCOVERY):
        c.unload()
