"""MQTT publishing with Home Assistant discovery (shell; loaded only when mqtt_host is set).

Our own publish-mostly client on one socket of the pool (lib/README.md says why not
adafruit_minimqtt). poll(now_ms) never blocks: the TCP connect is started and then watched
(on the W5500 through the driver's socket registers, because its connect() waits for the
handshake), CONNACK and PINGRESP are waited for across polls, and each poll sends at most
one message. A failed attempt waits 2, 4 ... 64 s before the next; a refused login waits
the longest. Users' view: docs/integration.md; packets: mqtt_wire.py; payloads: mqtt_ha.py.
"""

import errno

from micropython import const

from han2x_core import mqtt_ha as ha
from han2x_core import mqtt_wire as wire
from han2x_core.ticks import ticks_add, ticks_diff

_KEEPALIVE_S = const(60)
_PING_MS = const(30000)  # PINGREQ after this long without sending
_ANSWER_MS = const(10000)  # CONNACK / PINGRESP must come within this
_CONNECT_MS = const(10000)  # TCP handshake
_BACKOFF_MIN_MS = const(2000)
_BACKOFF_MAX_MS = const(64000)
_SEND_TIMEOUT_S = 0.1  # as the servers: the W5500's send() must never wait for ever

# States
OFF = const(0)  # stopped by the network (no address yet, or being moved)
IDLE = const(1)  # waiting for the meter id or for the back-off to end
TCP = const(2)
CONNACK = const(3)
UP = const(4)
_NAMES = ("off", "waiting", "connecting", "logging in", "connected")

# Queued publications (bits)
_Q_ONLINE = const(1)
_Q_INFO = const(2)
_Q_DISCOVERY = const(4)
_Q_ENERGY = const(8)
_Q_POWER = const(16)
_Q_RAW = const(32)
_Q_SUBSCRIBE = const(64)

_SNSR_CLOSED = const(0x00)
_SNSR_ESTABLISHED = const(0x17)
_SNMR_TCP_ND = const(0x21)  # TCP, no delayed ACK: what the driver's SocketPool opens
_CMD_CONNECT = const(0x04)


class MqttClient:
    """The MQTT service. app: the App (registers, latest, last_frame, settings);
    pool: the socket pool (W5500 SocketPool or CPython's socket module); client_id: the
    default when mqtt_client_id is "" (the host name); version: firmware version text;
    backoff_min_ms: the first wait after a failure (tests shorten it).
    Counters for the diagnostics page: attempts, sessions, published, last_error."""

    name = "mqtt"

    def __init__(self, pool, app, client_id, version, backoff_min_ms=_BACKOFF_MIN_MS):
        self.pool = pool
        self.app = app
        self.default_id = client_id
        self.version = version
        self.state = IDLE
        self.sock = None
        self._tx = bytearray(256)  # CONNECT, SUBSCRIBE, PUBLISH headers (fixed)
        self._rx = bytearray(64)  # one recv chunk (fixed)
        self.reader = wire.Reader(128)  # broker packets: CONNACK, SUBACK, PINGRESP, status
        self.attempts = 0
        self.sessions = 0
        self.published = 0
        self.last_error = ""
        self._cfg = None
        self._prefix = ""
        self._queue = 0
        self._disc_next = 0
        self._backoff_min = backoff_min_ms
        self._backoff_ms = backoff_min_ms
        self._at = 0  # state deadline (TCP, CONNACK) or the next attempt (IDLE)
        self._at_set = False
        self._sent_ms = 0
        self._ping_at = None  # when a PINGREQ went out unanswered
        self._telegrams = -1
        self._hourly = -1
        self._power_at = None
        self.configure(app.settings)

    # ----- service API -----
    def configure(self, settings):
        cfg = (settings.get("mqtt_host", ""), settings.get("mqtt_port", 1883),
               settings.get("mqtt_user", ""), settings.get("mqtt_password", ""),
               settings.get("mqtt_client_id", "") or self.default_id,
               settings.get("mqtt_prefix", ""), settings.get("mqtt_discovery_prefix", ""),
               settings.get("mqtt_interval_s", 0))
        if cfg != self._cfg:
            self._cfg = cfg
            self._drop(None)  # a new broker or login: connect again at once
            self._backoff_ms = self._backoff_min
            self._at_set = False

    def start(self, host):
        """The network has an address (Network.attach, and after every change)."""
        if self.state == OFF:
            self.state = IDLE
            self._at_set = False

    def stop(self):
        self._drop(None)
        self.state = OFF

    def sockets(self):
        return [self.sock] if self.sock is not None else []

    def status(self):
        """One line for the diagnostics page."""
        text = "%s %s:%d" % (_NAMES[self.state], self._cfg[0], self._cfg[1])
        if self.last_error:
            text += "; last error: " + self.last_error
        return text

    def poll(self, now_ms):
        state = self.state
        if state == OFF or not self._cfg[0]:
            return
        if state == IDLE:
            if not self.app.latest.get("meter_id"):
                return  # topics and the HA device need the meter id
            if not self._at_set:
                self._at, self._at_set = now_ms, True
            if ticks_diff(now_ms, self._at) >= 0:
                self._open(now_ms)
            return
        try:
            if state == TCP:
                self._tcp(now_ms)
            elif state == CONNACK or state == UP:
                self._receive(now_ms)
                if self.state == UP:
                    self._publish_next(now_ms)
        except MemoryError:
            raise
        except Exception as e:  # the peer reset, the link went down, a bad packet
            self._drop(now_ms, "%s: %s" % (type(e).__name__, e))

    # ----- connection -----
    def _open(self, now_ms):
        self.attempts += 1
        host, port = self._cfg[0], self._cfg[1]
        try:
            sock = self.pool.socket(self.pool.AF_INET, self.pool.SOCK_STREAM)
        except Exception as e:  # "All sockets in use.": try again later
            self._drop(now_ms, "no socket: %s" % e)
            return
        self.sock = sock
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
            self._drop(now_ms, "connect: %s" % e)
            return
        self.state = TCP
        self._at = ticks_add(now_ms, _CONNECT_MS)

    def _tcp(self, now_ms):
        sock = self.sock
        if hasattr(sock, "_socknum"):
            status = sock._interface.socket_status(sock._socknum)
            up = status == _SNSR_ESTABLISHED
            failed = status == _SNSR_CLOSED
        else:
            err = sock.getsockopt(self.pool.SOL_SOCKET, self.pool.SO_ERROR)
            failed = err != 0
            up = False
            if not failed:
                try:
                    sock.getpeername()
                    up = True
                except OSError:
                    pass
        if failed:
            self._drop(now_ms, "broker %s:%d not reachable" % (self._cfg[0], self._cfg[1]))
            return
        if not up:
            if ticks_diff(now_ms, self._at) >= 0:
                self._drop(now_ms, "broker %s:%d: no answer" % (self._cfg[0], self._cfg[1]))
            return
        cfg = self._cfg
        self._prefix = cfg[5] or "han2x/" + self.app.latest.get("meter_id", "")
        n = wire.connect(self._tx, cfg[4], _KEEPALIVE_S, self._prefix + "/status", b"offline",
                         cfg[2], cfg[3])
        self.reader.clear()
        self._send(memoryview(self._tx)[:n], now_ms)
        self.state = CONNACK
        self._at = ticks_add(now_ms, _ANSWER_MS)

    def _drop(self, now_ms, error=None):
        """Close the socket; with now_ms, wait the back-off before the next attempt."""
        sock = self.sock
        self.sock = None
        if sock is not None:
            try:
                sock.close()
            except Exception:
                pass
        if error is not None:
            self.last_error = error
        if self.state != OFF:
            self.state = IDLE
        self._ping_at = None
        if now_ms is not None:
            self._at = ticks_add(now_ms, self._backoff_ms)
            self._at_set = True
            self._backoff_ms = min(self._backoff_ms * 2, _BACKOFF_MAX_MS)

    def _send(self, data, now_ms):
        sock = self.sock
        sock.settimeout(_SEND_TIMEOUT_S)
        try:
            view = memoryview(data)
            sent = 0
            while sent < len(view):
                n = sock.send(view[sent:])
                if not n:
                    raise OSError("send: broker not taking data")
                sent += n
        finally:
            sock.settimeout(0)
        self._sent_ms = now_ms

    def _receive(self, now_ms):
        sock = self.sock
        try:
            n = sock.recv_into(self._rx)
        except OSError as e:
            if e.args[0] not in (errno.EAGAIN, errno.ETIMEDOUT):
                raise
            n = -1
        if n == 0:
            raise OSError("broker closed the connection")
        if n > 0:
            pos = 0
            while pos < n:
                pos += self.reader.feed(memoryview(self._rx)[pos:n] if pos else self._rx,
                                        n - pos)
                while True:
                    first = self.reader.next()
                    if not first:
                        break
                    self._packet(first, now_ms)
        if self.state == CONNACK and ticks_diff(now_ms, self._at) >= 0:
            raise OSError("no CONNACK from the broker")
        if self._ping_at is not None and ticks_diff(now_ms, self._ping_at) >= _ANSWER_MS:
            raise OSError("no PINGRESP from the broker")

    def _packet(self, first, now_ms):
        body = self.reader.body()
        kind = first & 0xF0
        if kind == wire.CONNACK and self.state == CONNACK:
            code = body[1] if len(body) > 1 else 255
            if code:
                self._backoff_ms = _BACKOFF_MAX_MS  # a wrong login does not heal by retrying
                reason = wire.REFUSED[code] if code < len(wire.REFUSED) else "code %d" % code
                self._drop(now_ms, "broker refused the login: " + reason)
                return
            self.state = UP
            self.sessions += 1
            self.last_error = ""
            self._backoff_ms = self._backoff_min
            self._disc_next = 0
            self._queue = _Q_ONLINE | _Q_INFO | _Q_DISCOVERY | _Q_ENERGY | _Q_POWER
            self._queue |= _Q_SUBSCRIBE if self._cfg[6] else 0
        elif kind == wire.PINGRESP:
            self._ping_at = None
        elif kind == wire.PUBLISH:
            topic, payload = wire.publish_topic(body)
            disc = self._cfg[6]
            if (disc and bytes(payload) == b"online" and len(topic) == len(disc) + 7
                    and bytes(topic) == (disc + "/status").encode()):
                self._disc_next = 0  # Home Assistant restarted: it forgot the configs
                self._queue |= _Q_DISCOVERY | _Q_INFO | _Q_ENERGY | _Q_POWER

    # ----- publishing -----
    def _publish(self, topic, payload, retain, now_ms):
        if isinstance(payload, str):
            payload = payload.encode()  # allocates: a copy of the JSON text
        n = wire.publish_header(self._tx, topic, len(payload), retain)
        self._send(memoryview(self._tx)[:n], now_ms)
        self._send(payload, now_ms)
        self.published += 1

    def _publish_next(self, now_ms):
        """One message per poll (two: power and its estimate): bounded work in the loop."""
        app = self.app
        regs = app.registers
        if regs.telegrams != self._telegrams:  # a new telegram
            self._telegrams = regs.telegrams
            self._queue |= _Q_RAW
            interval = self._cfg[7]
            if not interval or self._power_at is None or ticks_diff(
                    now_ms, self._power_at) >= interval * 1000:
                self._queue |= _Q_POWER
        if regs.hourly != self._hourly:
            self._hourly = regs.hourly
            self._queue |= _Q_ENERGY
        q = self._queue
        p = self._prefix
        if q & _Q_ONLINE:
            self._queue &= ~_Q_ONLINE
            self._publish(p + "/status", b"online", True, now_ms)
        elif q & _Q_SUBSCRIBE:
            self._queue &= ~_Q_SUBSCRIBE
            n = wire.subscribe(self._tx, 1, self._cfg[6] + "/status")
            self._send(memoryview(self._tx)[:n], now_ms)
        elif q & _Q_INFO:
            self._queue &= ~_Q_INFO
            self._publish(p + "/info", ha.info(app.latest, self.version), True, now_ms)
        elif q & _Q_DISCOVERY:
            i = self._disc_next
            self._disc_next += 1
            if self._disc_next >= ha.COUNT or not self._cfg[6]:
                self._queue &= ~_Q_DISCOVERY
            if self._cfg[6]:
                topic, payload = ha.discovery(i, self._cfg[6], p, app.latest, self.version)
                self._publish(topic, payload, True, now_ms)
        elif q & _Q_RAW:
            self._queue &= ~_Q_RAW
            self._publish(p + "/raw", app.last_frame, False, now_ms)
        elif q & _Q_POWER:
            self._queue &= ~_Q_POWER
            self._power_at = now_ms
            self._publish(p + "/power", ha.power(regs), False, now_ms)
            estimate = ha.energy(regs, ha.ESTIMATES)
            if estimate is not None:  # the estimate rides with the power
                self._publish(p + "/estimate", estimate, False, now_ms)
        elif q & _Q_ENERGY:
            self._queue &= ~_Q_ENERGY
            totals = ha.energy(regs, ha.TOTALS)
            if totals is not None:
                self._publish(p + "/energy", totals, True, now_ms)
        elif ticks_diff(now_ms, self._sent_ms) >= _PING_MS and self._ping_at is None:
            self._send(wire.PINGREQ, now_ms)
            self._ping_at = now_ms
