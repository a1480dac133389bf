"""MQTT publishing with Home Assistant discovery (shell; loaded only when mqtt_host is set).

Our own publish-mostly client on one socket of the pool (lib/README.md says why not
adafruit_minimqtt). poll(now_ms) never blocks: the TCP connect is started and then watched
(on the W5500 through the driver's socket registers, because its connect() waits for the
handshake), CONNACK and PINGRESP are waited for across polls, and each poll sends at most
one message. A failed attempt waits 2, 4 ... 64 s before the next; a refused login waits
the longest. Users' view: docs/integration.md; packets: mqtt_wire.py; state payloads:
mqtt_ha.py; what is done once per connection (opening it, meter info, discovery):
mqtt_connect.py, loaded for it and dropped again.
"""

import sys

from micropython import const

from han2x_core import mqtt_ha as ha
from han2x_core import mqtt_wire as wire
from han2x_core.app import _drop as _unload
from han2x_core.netio import would_block
from han2x_core.ticks import ticks_add, ticks_diff

_TYPE_CHECKING = const(0)  # mypy: true (pyproject always_true); the compiler drops the block
if _TYPE_CHECKING:
    from cpmodules import Any

_PING_MS = const(30000)  # PINGREQ after this long without sending
ANSWER_MS = const(10000)  # CONNACK / PINGRESP must come within this
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
Q_INFO = const(2)
Q_DISCOVERY = const(4)
_Q_ENERGY = const(8)
_Q_POWER = const(16)
_Q_RAW = const(32)
Q_SUBSCRIBE = const(64)


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
        self.sock = None  # type: Any
        self._tx = bytearray(320)  # CONNECT (the longest settings fit), PUBLISH headers
        self._pay = bytearray(ha.SIZE)  # the power, energy and estimate JSON (fixed)
        self._rx = bytearray(64)  # one recv chunk (fixed)
        self.reader = wire.Reader(128)  # broker packets: CONNACK, SUBACK, PINGRESP, status
        self.attempts = 0
        self.sessions = 0
        self.published = 0
        self.last_error = ""
        self._cfg = None  # type: Any
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
               settings.get("mqtt_interval_s", 0), settings.get("tariff"))  # tariff: configs
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

    def unload(self):
        """Drop mqtt_connect.py (loaded again by the next connection attempt)."""
        if "han2x_core.mqtt_connect" in sys.modules:  # MicroPython's delattr: KeyError
            _unload("mqtt_connect")

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
                from han2x_core import mqtt_connect  # until the configs are out (unload)

                mqtt_connect.open_socket(self, now_ms)
            return
        try:
            if state == TCP:
                from han2x_core import mqtt_connect

                mqtt_connect.tcp(self, now_ms)
            elif state == CONNACK or state == UP:
                self._receive(now_ms)
                if self.state == UP:
                    self._publish_next(now_ms)
        except MemoryError:
            raise
        except Exception as e:  # the peer reset, the link went down, a bad packet
            self._drop(now_ms, "%s: %s" % (type(e).__name__, e))

    # ----- connection (opening it: mqtt_connect.py) -----
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
        self.unload()
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
            if not would_block(e):
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
        if self._ping_at is not None and ticks_diff(now_ms, self._ping_at) >= ANSWER_MS:
            raise OSError("no PINGRESP from the broker")

    def _packet(self, first, now_ms):
        body = self.reader.body()
        kind = first & 0xF0
        if kind == wire.CONNACK and self.state == CONNACK:
            code = body[1] if len(body) > 1 else 255
            if code:
                self._backoff_ms = _BACKOFF_MAX_MS  # a wrong login does not heal by retrying
                from han2x_core import mqtt_connect

                self._drop(now_ms, "broker refused the login: " + mqtt_connect.refused(code))
                return
            self.state = UP
            self.sessions += 1
            self.last_error = ""
            self._backoff_ms = self._backoff_min
            self._disc_next = 0
            self._queue = _Q_ONLINE | Q_INFO | Q_DISCOVERY | _Q_ENERGY | _Q_POWER
            self._queue |= Q_SUBSCRIBE if self._cfg[6] else 0
        elif kind == wire.PINGRESP:
            self._ping_at = None
        elif kind == wire.PUBLISH:
            topic, payload = wire.publish_topic(body)
            disc = self._cfg[6]
            if (disc and bytes(payload) == b"online" and len(topic) == len(disc) + 7
                    and bytes(topic) == (disc + "/status").encode()):
                self._disc_next = 0  # Home Assistant restarted: it forgot the configs
                self._queue |= Q_DISCOVERY | Q_INFO | _Q_ENERGY | _Q_POWER

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
        elif q & (Q_SUBSCRIBE | Q_INFO | Q_DISCOVERY):
            from han2x_core import mqtt_connect

            mqtt_connect.hello(self, q, p, now_ms)
        elif q & _Q_RAW:
            self._queue &= ~_Q_RAW
            self._publish(p + "/raw", app.last_frame, False, now_ms)
        elif q & _Q_POWER:
            self._queue &= ~_Q_POWER
            self._power_at = now_ms
            pay = memoryview(self._pay)  # the JSON is written into this fixed buffer
            self._publish(p + "/power", pay[:ha.power(regs, pay)], False, now_ms)
            n = ha.energy(regs, ha.ESTIMATES, pay)
            if n:  # the estimate rides with the power
                self._publish(p + "/estimate", pay[:n], False, now_ms)
            n = ha.tariff(regs, pay)
            if n:  # and the capacity tariff's figures, while it is on
                self._publish(p + "/tariff", pay[:n], False, now_ms)
        elif q & _Q_ENERGY:
            self._queue &= ~_Q_ENERGY
            n = ha.energy(regs, ha.TOTALS, self._pay)
            if n:
                self._publish(p + "/energy", memoryview(self._pay)[:n], True, now_ms)
        elif ticks_diff(now_ms, self._sent_ms) >= _PING_MS and self._ping_at is None:
            self._send(wire.PINGREQ, now_ms)
            self._ping_at = now_ms

