"""The socket helper of modbus_server.py and web.py (hanstream.py too; shell helper): the
errno sets, listen(), the listening sockets of one port (Listeners) and send().

The W5500 has no backlog: a SYN to a port where no hardware socket is in LISTEN is answered
with RST. So a server keeps two sockets listening while its socket budget allows
(docs/network.md): its budget is max_clients + 1 hardware sockets, and the second listener
sits on the socket of a client slot that is empty. On the W5500 a connection is taken on the
listener's own hardware socket (take()), never through adafruit_wiznet5k's accept(), whose
socket swap loses clients. Where the port cannot be shared (CPython, MicroPython: they queue
connections in a backlog instead) one listener stays and accept() takes its connections.
"""

from micropython import const

from han2x_core.ticks import ticks_add, ticks_diff

W5500_SOCKETS = const(8)  # hardware sockets of the chip
_LISTENERS = const(2)
_RETRY_MS = const(1000)  # after the pool had no socket for a spare listener
# W5500 (take()): a look reads each listener's Sn_SR over SPI, milliseconds of the board's
# CPU per look, so while nobody has connected for _QUIET_MS a server looks only every
# _IDLE_MS, not every step (docs/network.md, "How often the servers look").
_IDLE_MS = const(100)
_QUIET_MS = const(2000)
# W5500 socket states (Sn_SR, datasheet 4.2)
_LISTEN = const(0x14)
_SYNRECV = const(0x16)
_ESTABLISHED = const(0x17)
_CLOSE_WAIT = const(0x1C)
_ADDR_IN_USE = (48, 98, 10048)  # EADDRINUSE (BSD, Linux/MicroPython, Windows)
# Checked in args[0]: on CPython the wiznet driver's OSError(EAGAIN) has .errno None.
# Would block: EAGAIN/EWOULDBLOCK (Linux 11, BSD 35), ETIMEDOUT (110: a recv or send with a
# timeout, MicroPython and adafruit_wiznet5k), EINPROGRESS (Linux 115, newlib 119).
_AGAIN = (11, 35, 110, 115, 119)
# Peer gone: EPIPE, ECONNRESET (BSD 54, Linux 104), ECONNABORTED (103), ENOTCONN (107, 128).
_GONE = (32, 54, 103, 104, 107, 128)


def would_block(e):
    """True for the OSError of a non-blocking call that has nothing to do yet."""
    return bool(e.args) and e.args[0] in _AGAIN


def peer_gone(e):
    """True for the OSError of a peer that reset or closed its connection."""
    return bool(e.args) and e.args[0] in _GONE


def send(sock, data, timeout_s):
    """Send what sock takes of data now: the count (0: nothing now), or -1 when the peer has
    gone. timeout_s: None or 0 on a non-blocking pool; on the W5500 a small value (0.1),
    as adafruit_wiznet5k's send() with timeout 0 waits for ever when the client stops
    reading. Its RuntimeError when that runs out is raised for the caller."""
    if timeout_s:
        sock.settimeout(timeout_s)
    gone = False
    try:
        n = sock.send(data)
    except OSError as e:
        gone = peer_gone(e)
        if not gone and not would_block(e):
            raise
        n = -1 if gone else 0
    finally:
        if timeout_s and not gone:
            sock.settimeout(0)
    return n or 0  # MicroPython's non-blocking send() may return None


def listen(pool, addr, backlog):
    """A non-blocking socket listening on addr; raises what bind/listen do (closed then)."""
    sock = pool.socket(pool.AF_INET, pool.SOCK_STREAM)
    try:
        try:
            sock.setsockopt(pool.SOL_SOCKET, pool.SO_REUSEADDR, 1)
        except (OSError, AttributeError):  # not every pool has it
            pass
        sock.bind(addr)
        sock.listen(backlog)
        sock.settimeout(0)
    except Exception:
        _close(sock)
        raise
    return sock


class Listeners:
    """The listening sockets (`socks`) on `addr`; accept() and top_up() take the budget
    left: the hardware sockets the server may still hold beside its clients. note(text) is
    the server's error counter (its _note); every_ms its accept throttle (due())."""

    def __init__(self, pool, backlog, note, every_ms):
        self.pool = pool
        self.backlog = backlog
        self.note = note
        self.every_ms = every_ms
        self.socks = []
        self.addr = None  # what open() bound
        self.port = None  # the port bound (the one the pool chose when 0 was asked)
        self.shared = True  # False once the pool refused a second socket on the port
        self.adopted = 0  # connections taken on the listener's own hardware socket
        self.tries = 0  # polls that looked for a new connection (due())
        self._retry_ms = None
        self._accept_ms = -1  # the last look; -1 = look at the next poll
        self._came_ms = None  # when the last connection came in; None: quiet (_QUIET_MS)
        self._chip = False  # the sockets are adafruit_wiznet5k's: take(), never accept()

    def open(self, host, port):
        """Close what listens, listen on host:port with one socket; raises what
        getaddrinfo, bind and listen do."""
        self.close()
        pool = self.pool
        addr = pool.getaddrinfo(host, port)[0][-1]
        sock = listen(pool, addr, self.backlog)
        self.socks.append(sock)
        self._chip = hasattr(sock, "_status")
        self.addr = addr
        self.port = port
        if port == 0:  # the spare listener binds the port the pool chose
            try:
                self.port = sock.getsockname()[1]
                self.addr = pool.getaddrinfo(host, self.port)[0][-1]
            except (OSError, AttributeError):
                pass

    def close(self):
        """Stop listening (addr None: the server is stopped)."""
        self.addr = None
        self.port = None
        socks, self.socks = self.socks, []
        for sock in socks:
            _close(sock)

    def top_up(self, left, now_ms):
        """Listen on one more socket while fewer than two listen and `left` (the server's
        budget less its clients) has room. The first listener is the server's (open());
        this never raises: a spare is a bonus."""
        socks = self.socks
        if not socks or len(socks) >= _LISTENERS or len(socks) >= left or not self.shared:
            return
        if self._retry_ms is not None and ticks_diff(now_ms, self._retry_ms) < 0:
            return
        try:
            socks.append(listen(self.pool, self.addr, self.backlog))
            self._retry_ms = None
        except Exception as e:  # noqa: BLE001
            if isinstance(e, OSError) and e.args and e.args[0] in _ADDR_IN_USE:
                self.shared = False  # the pool queues connections in a backlog instead
            else:  # adafruit_wiznet5k: "All sockets in use.", or the link is down
                self._retry_ms = ticks_add(now_ms, _RETRY_MS)

    def due(self, now_ms):
        """True when the server should look for new connections now. accept() with nothing
        waiting raises (an exception object: heap) and a look costs SPI reads on the W5500:
        look at most every every_ms, and at once again after a connection came. On the W5500
        every _IDLE_MS only, once nobody has connected for _QUIET_MS."""
        if not self.socks:
            return False
        came = self._came_ms
        if came is not None and ticks_diff(now_ms, came) >= _QUIET_MS:
            self._came_ms = came = None
        if self._accept_ms >= 0:
            wait = _IDLE_MS if self._chip and came is None else self.every_ms
            if ticks_diff(now_ms, self._accept_ms) < wait:
                return False
        self._accept_ms = now_ms
        self.tries += 1
        return True

    def _came(self):
        """A connection came in (at the look due() allowed): look again at the next poll,
        and every every_ms until it is quiet again."""
        if self._accept_ms >= 0:
            self._came_ms = self._accept_ms
        self._accept_ms = -1

    def accept(self):
        """A waiting connection as (sock, addr), or None. Never raises but MemoryError: an
        accept that fails is counted (note) and the server goes on serving."""
        socks = self.socks
        for sock in socks:
            if self._chip:
                got = self.take(sock)
                if got is not None or sock not in socks:  # taken, or closed: next look
                    return got
                continue
            try:
                got = sock.accept()
            except OSError as e:
                if would_block(e):
                    continue
                self.note("accept: %s" % (e,))
                return None
            self._came()
            return got
        return None

    def take(self, sock):
        """adafruit_wiznet5k without its accept(): a listener whose hardware socket holds an
        established connection becomes that connection, and the server listens again on
        another socket (top_up(), or the server's own re-listen when none is left). The
        driver's accept() swaps sockets and listens again itself, and raises "Failed to
        open new listening socket" when a SYN lands in between: the client it accepted is
        lost with its hardware socket (the janitor frees it seconds later, unanswered), and
        the new listener's client too (the Modbus server's "accept: Failed to open new
        listening socket" on the emulated board). Here nothing is lost, a look with nobody
        connecting costs one register read and no exception object (accept() raises
        EAGAIN), and no socket is taken beyond the budget. A listener the client reset
        (CLOSED) is closed for a new one."""
        status = sock._status  # Sn_SR
        if status == _LISTEN:
            return None
        if status == _SYNRECV:  # established within a round trip: look at the next poll
            self._accept_ms = -1
            return None
        self.socks.remove(sock)
        if status in (_ESTABLISHED, _CLOSE_WAIT):  # CLOSE_WAIT: sent its request, then FIN
            self.adopted += 1
            self._came()
            return sock, sock.getpeername()
        _close(sock)
        return None


def sockets_needed(s):
    """W5500 hardware sockets the enabled services hold at most (docs/network.md, "Socket
    budget"): DHCP (socket 0), each listener, each Modbus client, the HAN stream's client,
    MQTT's connection. The web page's one connection is not counted: it takes a free socket
    when there is one (one is free at the defaults) and waits otherwise. Every service that
    takes sockets adds its share here: this is the one place of the rule (settings.py
    re-exports it for validate(); it lives here so that web.py need not load settings.py)."""
    n = 1 + 1 + s["modbus_max_clients"] + 1  # DHCP, Modbus listener and clients, web listener
    if s.get("han_stream_port"):
        n += 2  # its listener and its one client
    if s.get("mqtt_host"):
        n += 1  # its one connection to the broker
    return n


def _close(sock):
    try:
        sock.close()
    except Exception:  # noqa: BLE001 - closing must not raise into the loop
        pass
