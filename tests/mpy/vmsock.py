"""MicroPython's socket module in the shape of CircuitPython's socket pool, for the code that
runs our servers on the unix port (tests/mpy/device_vm.py, bench/mpy_http.py): bind() takes
a (host, port) tuple, accept() hands out connections whose recv_into() reads what is there
and raises EAGAIN when nothing is, as CircuitPython's socketpool and the WIZnet driver do."""

import socket

EAGAIN = 11


class Conn:
    """An accepted connection. MicroPython's readinto() on a socket with a timeout waits until
    the whole buffer is full, so a socket with a timeout (adafruit_httpserver uses 1 s) reads
    with recv() and copies; a non-blocking one uses readinto()."""

    def __init__(self, sock):
        self._sock = sock
        self._timeout = None
        self.send = sock.send
        self.close = sock.close

    def settimeout(self, t):
        self._timeout = t
        self._sock.settimeout(t)

    def setblocking(self, flag):
        self._timeout = None if flag else 0
        self._sock.setblocking(flag)

    def recv_into(self, buf, nbytes=0):
        nbytes = nbytes or len(buf)
        if self._timeout == 0:
            n = self._sock.readinto(buf, nbytes)
            if n is None:  # MicroPython: nothing waiting; CircuitPython raises EAGAIN
                raise OSError(EAGAIN)
            return n
        data = self._sock.recv(nbytes)
        buf[:len(data)] = data
        return len(data)


class Listener(socket.socket):
    def bind(self, addr):
        if isinstance(addr, tuple):
            addr = socket.getaddrinfo(addr[0], addr[1])[0][-1]
        super().bind(addr)

    def accept(self):
        sock, addr = super().accept()
        return Conn(sock), addr


class Pool:
    AF_INET = socket.AF_INET
    SOCK_STREAM = socket.SOCK_STREAM
    SOL_SOCKET = socket.SOL_SOCKET
    SO_REUSEADDR = socket.SO_REUSEADDR

    def socket(self, family=socket.AF_INET, kind=socket.SOCK_STREAM, proto=0):
        return Listener(family, kind)

    def getaddrinfo(self, host, port, *args):
        return socket.getaddrinfo(host, port)
