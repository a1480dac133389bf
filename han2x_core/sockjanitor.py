"""Give back W5500 hardware sockets that adafruit_wiznet5k lost (shell helper).

The driver's accept() swaps sockets and then raises if the new listening socket is not in
LISTEN at once (a SYN arriving right then): the accepted client's Socket object is lost
with its hardware socket open and reserved. CircuitPython never runs __del__ on Python
classes, so each such race costs one of the 7 sockets until power-off. See docs/network.md.
"""

from micropython import const

_SNSR_CLOSED = const(0x00)


class SocketJanitor:
    """check(services) closes hardware sockets 1-7 that no service owns on two checks in a
    row (call it about once a second). A service owns the sockets its sockets() returns.
    Does nothing unless every service has sockets(): it cannot tell who owns what."""

    def __init__(self, eth):
        self.eth = eth
        self.reclaimed = 0
        self._suspects = 0  # bit n: hardware socket n looked orphaned at the last check

    def check(self, services):
        """Returns the number of sockets reclaimed now."""
        if not services:
            return 0
        owned = []
        for service in services:
            sockets = getattr(service, "sockets", None)
            if sockets is None:
                return 0
            for sock in sockets():
                owned.append(getattr(sock, "_socknum", -1))
        eth = self.eth
        reserved = eth._sockets_reserved  # the driver's table for sockets 1..7 (7.4.x)
        suspects = 0
        for n in range(1, len(reserved) + 1):
            if n not in owned and (reserved[n - 1] or eth.socket_status(n) != _SNSR_CLOSED):
                suspects |= 1 << n
        confirmed = suspects & self._suspects
        self._suspects = suspects & ~confirmed
        done = 0
        for n in range(1, len(reserved) + 1):
            if confirmed >> n & 1:
                if eth.socket_status(n) != _SNSR_CLOSED:
                    eth.socket_disconnect(n)
                    eth.socket_close(n)  # the chip closes at once; the driver waits <= 5 s
                eth.release_socket(n)
                done += 1
        self.reclaimed += done
        return done
