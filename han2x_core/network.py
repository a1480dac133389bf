"""W5500 bring-up and upkeep over adafruit_wiznet5k: static/DHCP, live re-apply, link.

Shell: takes the SPI bus and pins; imports the driver inside. poll(now_ms) never blocks:
DHCP is han2x_core.dhcp on hardware socket 0 (the driver's own client blocks for up to a
minute), settings changes are applied a moment after they arrive (so the web page can
answer first, well within the 10 s promise), and attached servers are restarted on the new
address. Policy, socket budget and start-up budget: docs/network.md.
"""

from micropython import const

from han2x_core.sockjanitor import SocketJanitor
from han2x_core.ticks import ticks_add, ticks_diff

_TYPE_CHECKING = const(0)  # mypy: true (pyproject always_true); the compiler drops the block
if _TYPE_CHECKING:
    from cpmodules import Any

_SOCK_DHCP = const(0)  # socket 0: never reserved by the driver's SocketPool
_SNMR_UDP = const(0x02)
_DHCP_SERVER_PORT = const(67)
_DHCP_CLIENT_PORT = const(68)
_LINK_CHECK_MS = const(500)
_RESTART_RETRY_MS = const(1000)
_APPLY_DELAY_MS = const(1500)  # let the settings page answer before the address moves
_JANITOR_MS = const(1000)
# dhcp.py's state and event values (tests/test_network.py checks they match), so that this
# module needs dhcp.py only once DHCP is on.
_IDLE = const(0)
_EV_BOUND = const(1)
_EV_RENEWED = const(2)
_EV_LOST = const(3)
_BROADCAST = b"\xff\xff\xff\xff"
_NET_KEYS = ("dhcp", "ip", "netmask", "gateway", "dns", "hostname")  # what it reads


def mac_from_uid(uid):
    """A stable, locally administered unicast MAC (02:48:xx:xx:xx:xx) from the RP2040's
    unique id bytes (microcontroller.cpu.uid): FNV-1a over the id, 32 bits kept."""
    h = 0x811C9DC5
    for b in bytes(uid or b""):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return bytes((0x02, 0x48, h >> 24 & 0xFF, h >> 16 & 0xFF, h >> 8 & 0xFF, h & 0xFF))


def default_hostname(mac):
    """han2x-xxxxxx from the last three MAC bytes (lower-case hex)."""
    return "han2x-%02x%02x%02x" % (mac[3], mac[4], mac[5])


def _aton(text):
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError("bad IPv4 address: %s" % text)
    return bytes(int(p) for p in parts)


def _ntoa(raw):
    return "%d.%d.%d.%d" % (raw[0], raw[1], raw[2], raw[3])


class Network:
    """The Ethernet interface. Attributes: pool (SocketPool for every server), ip, netmask,
    gateway (strings in use now), hostname, mac (bytes), mode ("static", "dhcp" or
    "dhcp-fallback"), link_up, generation (+1 each time attached servers are restarted),
    dhcp (the DhcpClient), errors and last_error.

    spi, cs, reset: busio.SPI and DigitalInOut pins (reset adds ~5 s to start-up: avoid).
    mac: 6 bytes, or None to derive one from uid (bytes of microcontroller.cpu.uid).
    settings: optional settings dict applied at once (else defaults until configure()).
    wiznet, socket_pool: the driver classes (for tests); default adafruit_wiznet5k's
    WIZNET5K and SocketPool.
    """

    def __init__(self, spi, cs, reset=None, mac=None, uid=None, settings=None, log=print,
                 dhcp_retry_ms=4000, apply_delay_ms=_APPLY_DELAY_MS, wiznet=None,
                 socket_pool=None):
        if wiznet is None:  # the driver without its DHCP, DNS and debug modules
            from han2x_core.wiznet import import_driver

            wiznet, socket_pool = import_driver()

        self.mac = bytes(mac) if mac else mac_from_uid(uid)
        self._log = log
        # Blocking, at boot only: 1 s sleep, chip reset, then up to 5 s waiting for link.
        self.eth = wiznet(spi, cs, reset=reset, is_dhcp=False, mac=self.mac)
        self.pool = socket_pool(self.eth)
        self.link_up = bool(self.eth.link_status)
        self.hostname = default_hostname(self.mac)
        # The DHCP client (dhcp.py) and its buffers exist only once DHCP is turned on: a
        # static address never loads them (~4.6 KB of the board's heap).
        self.dhcp = None
        self._dhcp_retry_ms = dhcp_retry_ms
        self.mode = "static"
        self.ip = self.netmask = self.gateway = self.dns = ""
        self.generation = 0
        self.errors = 0
        self.last_error = ""
        self._apply_delay_ms = apply_delay_ms
        self._config = None  # type: Any  # the settings tuple in force
        self._pending = None  # a settings tuple waiting to be applied
        self._apply_at = None
        self._services = []
        self._restart = False
        self._restart_at = 0
        self._link_at = 0
        self._udp_open = False
        self._dhcp_kick = False
        self._janitor_at = 0
        self.janitor = SocketJanitor(self.eth)  # sockets lost in the driver's accept() race
        self.reclaimed = 0
        self._apply(self._settings_tuple(settings or {}), None)
        if not self.link_up:
            self._say("link down (no cable?); will serve as soon as it comes up")

    # ----- public API -----
    def configure(self, settings):
        """Queue the network part of settings (validated: settings.validate); poll()
        applies it within ~2 s. Nothing happens when it equals what is in force."""
        cfg = self._settings_tuple(settings)
        if cfg == self._config:
            self._pending = None
            return
        if cfg != self._pending:
            self._pending = cfg
            self._apply_at = None  # the delay starts at the next poll

    def attach(self, service):
        """Own the listening of a server with start(host) and stop() (Modbus, web): it is
        started now (or, if the link is down, as soon as possible) and restarted after
        every change of address."""
        self._services.append(service)
        self._start_one(service)

    def poll(self, now_ms):
        """Link check, queued settings, DHCP, server restarts. Bounded; never blocks."""
        try:
            self._poll(now_ms)
        except Exception as e:  # the driver raises ConnectionError/RuntimeError
            self.errors += 1
            self.last_error = "%s: %s" % (type(e).__name__, e)
            self._udp_open = False

    # ----- internals -----
    def _dhcp_client(self):
        """The DHCP client, made (with its buffers) the first time DHCP is turned on."""
        if self.dhcp is None:
            from han2x_core import dhcp

            self._txbuf = bytearray(dhcp.BUF_SIZE)
            self._rxbuf = bytearray(576)
            self.dhcp = dhcp.DhcpClient(self.mac, self.hostname, self._dhcp_retry_ms)
        return self.dhcp

    def _settings_tuple(self, s):
        if any(k not in s for k in _NET_KEYS):  # tools and tests: code.py passes them all
            from han2x_core.settings import DEFAULTS

            full = dict(DEFAULTS)
            full.update(s)
            s = full
        return tuple(s[k] for k in _NET_KEYS)

    def _say(self, text):
        if self._log is not None:
            self._log("han2x network: " + text)

    def _poll(self, now_ms):
        if self._dhcp_kick:
            self._dhcp_kick = False
            self._dhcp_client().start(now_ms)
        if ticks_diff(now_ms, self._link_at) >= 0:
            self._link_at = ticks_add(now_ms, _LINK_CHECK_MS)
            up = bool(self.eth.link_status)
            if up != self.link_up:
                self.link_up = up
                self._say("link up" if up else "link down")
                if up and self._config[0]:
                    self._dhcp_client().start(now_ms)  # maybe another network: ask again
                if not up:
                    self._udp_open = False
        if self._pending is not None:
            if self._apply_at is None:
                self._apply_at = ticks_add(now_ms, self._apply_delay_ms)
            elif ticks_diff(now_ms, self._apply_at) >= 0:
                cfg, self._pending = self._pending, None
                self._apply(cfg, now_ms)
        if self.link_up and self.dhcp is not None and self.dhcp.state != _IDLE:
            self._poll_dhcp(now_ms)
        if self._restart and self.link_up and ticks_diff(now_ms, self._restart_at) >= 0:
            self._restart_services(now_ms)
        if ticks_diff(now_ms, self._janitor_at) >= 0:
            self._janitor_at = ticks_add(now_ms, _JANITOR_MS)
            self._janitor()

    def _janitor(self):
        n = self.janitor.check(self._services)
        if n:
            self.reclaimed = self.janitor.reclaimed
            self.last_error = "reclaimed %d orphaned socket(s)" % n

    def _apply(self, cfg, now_ms):
        old = self._config
        self._config = cfg
        # Validated (settings.validate: a DNS label of at most 63), and sent whole: no cut.
        self.hostname = cfg[5].lower() or default_hostname(self.mac)
        if cfg[0]:
            self._dhcp_client().hostname = self.hostname.encode()
            # DHCP: serve on the address in use (or the static one) until a lease comes.
            if old is None or not old[0]:
                if old is None:
                    self._set_address(cfg[1], cfg[2], cfg[3], cfg[4], "dhcp-fallback")
                self.mode = "dhcp-fallback"
                if now_ms is None:
                    self._dhcp_kick = True  # no clock yet: start at the first poll
                else:
                    self._dhcp_client().start(now_ms)
                self._say("DHCP on, as %s; meanwhile serving on %s" % (self.hostname, self.ip))
            return
        if self.dhcp is not None:
            self.dhcp.hostname = self.hostname.encode()
            self.dhcp.stop()
        self._close_udp()
        self._set_address(cfg[1], cfg[2], cfg[3], cfg[4], "static")

    def _set_address(self, ip, netmask, gateway, dns, mode):
        raw = (_aton(ip), _aton(netmask), _aton(gateway), _aton(dns))
        moved = ip != self.ip
        self.eth.ifconfig = raw
        self.ip, self.netmask, self.gateway, self.dns = ip, netmask, gateway, dns
        self.mode = mode
        self._say("%s/%s gw %s (%s) mac %s host %s" % (
            ip, netmask, gateway, mode, ":".join("%02x" % b for b in self.mac),
            self.hostname))
        if moved and self._services:
            self._restart = True
            self._restart_at = 0

    def _fallback(self):
        cfg = self._config
        self._close_udp()
        self._set_address(cfg[1], cfg[2], cfg[3], cfg[4], "dhcp-fallback")
        self._say("DHCP lease lost; serving on %s, still asking" % self.ip)

    def _poll_dhcp(self, now_ms):
        c = self._dhcp_client()
        if c.tick(now_ms) == _EV_LOST:
            self._fallback()
        if c.due(now_ms):
            n = c.build(self._txbuf, now_ms)
            # Always broadcast, renewals too: a unicast makes the chip ARP for the server,
            # stalling socket_write for RTR x RCR (~1.8 s) when the server is gone.
            eth = self.eth
            eth.src_port = _DHCP_CLIENT_PORT
            try:
                eth.socket_connect(_SOCK_DHCP, _BROADCAST, _DHCP_SERVER_PORT, _SNMR_UDP)
            finally:
                eth.src_port = 0
            self._udp_open = True
            eth.socket_write(_SOCK_DHCP, memoryview(self._txbuf)[:n])  # allocates (rare)
        for _ in range(2):
            if not self._udp_open or self.eth.socket_available(_SOCK_DHCP, _SNMR_UDP) <= 0:
                break
            n, data = self.eth.read_udp(_SOCK_DHCP, len(self._rxbuf))
            if not n:
                break
            self._rxbuf[:n] = data
            ev = c.receive(self._rxbuf, n, now_ms)
            if ev == _EV_BOUND:
                self._close_udp()
                self._set_address(_ntoa(c.ip), _ntoa(c.netmask), _ntoa(c.gateway),
                                  _ntoa(c.dns), "dhcp")
                self._say("DHCP lease %d s from %s" % (c.lease_s, _ntoa(c.server_id)))
            elif ev == _EV_RENEWED:
                self._close_udp()
                self.mode = "dhcp"
            elif ev == _EV_LOST:
                self._fallback()

    def _close_udp(self):
        if self._udp_open:
            self._udp_open = False
            self.eth.socket_close(_SOCK_DHCP)

    def _start_one(self, service):
        if not self.link_up:
            self._restart = True
            return False
        try:
            service.start(self.ip)
            return True
        except Exception as e:  # link went down under us; try again shortly
            self.errors += 1
            self.last_error = "start %s: %s" % (type(service).__name__, e)
            self._restart = True
            return False

    def _restart_services(self, now_ms):
        self._restart = False
        self.generation += 1
        for service in self._services:
            try:
                service.stop()
            except Exception as e:
                self.errors += 1
                self.last_error = "stop %s: %s" % (type(service).__name__, e)
        for service in self._services:
            self._start_one(service)
        if self._restart:
            self._restart_at = ticks_add(now_ms, _RESTART_RETRY_MS)
