"""Password guessing: one failure counter per client address for every way of presenting
the password (login form, HTTP Basic), with a growing wait (docs/web.md, "Threat model").

Loaded the first time a password is presented (a device without one never loads it). The
state is four addresses; an address not among them takes over the counter of the one it
replaces, and while all four must wait, so must every other address: guessing from many
addresses gets no faster than from four.
"""

from micropython import const

from han2x_core.ticks import ticks_diff

_ADDRS = const(4)  # client addresses remembered
_FREE = const(3)  # wrong passwords before the first wait (typing mistakes)
_MAX_MS = const(60000)  # the longest wait: from then on one guess a minute per address
_FORGET_MS = const(3600000)  # an address quiet this long starts again from 0


def wait_ms(fails):
    """The wait after the fails-th wrong password: 0, 0, 1 s, 2 s, 4 s ... 60 s."""
    if fails < _FREE:
        return 0
    return min(1000 << min(fails - _FREE, 6), _MAX_MS)


class Guard:
    def __init__(self):
        self.ips = [None] * _ADDRS
        self.fails = [0] * _ADDRS
        self.last = [0] * _ADDRS  # ms of the last wrong password
        self.refused = 0  # attempts answered 429 without looking at the password

    def _slot(self, ip, now_ms):
        """This address's slot, or -1; forgets slots quiet for _FORGET_MS."""
        found = -1
        for i in range(_ADDRS):
            if self.ips[i] is None:
                continue
            age = ticks_diff(now_ms, self.last[i])
            if age < 0 or age > _FORGET_MS:  # (negative: the tick counter wrapped)
                self.ips[i] = None
                self.fails[i] = 0
            elif self.ips[i] == ip:
                found = i
        return found

    def _left(self, i, now_ms):
        return max(0, wait_ms(self.fails[i]) - ticks_diff(now_ms, self.last[i]))

    def left_ms(self, ip, now_ms):
        """How long this address must wait before its next password is looked at (0 = now)."""
        i = self._slot(ip, now_ms)
        if i >= 0:
            return self._left(i, now_ms)
        least = None
        for i in range(_ADDRS):
            if self.ips[i] is None:
                return 0
            left = self._left(i, now_ms)
            if least is None or left < least:
                least = left
        return least

    def failed(self, ip, now_ms):
        i = self._slot(ip, now_ms)
        if i < 0:  # a new address takes a free slot, or the longest-quiet one's counter
            i = 0
            for j in range(_ADDRS):
                if self.ips[j] is None:
                    i = j
                    self.fails[j] = 0
                    break
                if ticks_diff(self.last[j], self.last[i]) < 0:
                    i = j
            self.ips[i] = ip
        self.fails[i] += 1
        self.last[i] = now_ms

    def passed(self, ip, now_ms):
        i = self._slot(ip, now_ms)
        if i >= 0:
            self.ips[i] = None
            self.fails[i] = 0


def check(routes, conn, password, now_ms):
    """True or False for a presented password; None (not looked at) while conn's address
    must wait, routes.retry_s then says how long."""
    from han2x_core.webconn import equal

    guard = routes.guard
    if guard is None:
        guard = routes.guard = Guard()
    ip = conn.addr[0] if isinstance(conn.addr, tuple) else conn.addr
    left = guard.left_ms(ip, now_ms)
    if left > 0:
        guard.refused += 1
        routes.retry_s = (left + 999) // 1000
        return None
    if routes.password is not None and equal(password, routes.password):
        guard.passed(ip, now_ms)
        return True
    guard.failed(ip, now_ms)
    return False

