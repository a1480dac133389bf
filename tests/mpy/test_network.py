"""network.py's own code on MicroPython, over a fake driver (the real one needs CPython or
the board): static bring-up, a DHCP lease through socket 0, the console lines."""

from han2x_core import dhcp
from han2x_core.network import Network, mac_from_uid


class FakeEth:
    def __init__(self, spi, cs, reset=None, is_dhcp=True, mac=None):
        self.mac = mac
        self.link_status = True
        self.config = None
        self.src_port = 0
        self.sent = []
        self.inbox = []

    @property
    def ifconfig(self):
        return self.config

    @ifconfig.setter
    def ifconfig(self, value):
        self.config = value

    def socket_connect(self, n, dest, port, mode):
        assert n == 0 and dest == b"\xff\xff\xff\xff" and port == 67 and self.src_port == 68

    def socket_write(self, n, data):
        self.sent.append(bytes(data))
        return len(data)

    def socket_available(self, n, mode):
        return len(self.inbox[0]) + 8 if self.inbox else 0

    def read_udp(self, n, length):
        data = self.inbox.pop(0)
        return len(data), data

    def socket_close(self, n):
        pass


class FakeService:
    def __init__(self):
        self.hosts = []

    def start(self, host):
        self.hosts.append(host)

    def stop(self):
        pass


def _ack(request, kind):
    r = bytearray(300)
    r[0] = 2
    r[4:8] = request[4:8]
    r[16:20] = b"\x0a\x00\x00\x09"
    r[28:34] = request[28:34]
    r[236:240] = b"c\x82Sc"
    r[240:249] = b"\x35\x01" + bytes((kind,)) + b"\x36\x04\x0a\x00\x00\x01"
    r[249:255] = b"\x03\x04\x0a\x00\x00\x01"
    r[255] = 255
    return bytes(r)


def test_static_then_dhcp():
    lines = []
    net = Network(None, None, uid=b"\x01\x02\x03\x04\x05\x06\x07\x08", log=lines.append,
                  wiznet=FakeEth, socket_pool=lambda eth: "pool", apply_delay_ms=0)
    assert net.ip == "192.168.1.232" and net.eth.config[0] == b"\xc0\xa8\x01\xe8"
    assert net.mac == mac_from_uid(b"\x01\x02\x03\x04\x05\x06\x07\x08")
    svc = FakeService()
    net.attach(svc)
    assert svc.hosts == ["192.168.1.232"]
    net.configure({"dhcp": True})
    t = 1000
    for _ in range(3):
        net.poll(t)
        t += 10
    assert net.mode == "dhcp-fallback" and len(net.eth.sent) == 1
    net.eth.inbox.append(_ack(net.eth.sent[-1], 2))
    net.poll(t)
    net.poll(t + 10)
    net.eth.inbox.append(_ack(net.eth.sent[-1], 5))
    net.poll(t + 20)
    net.poll(t + 30)
    assert net.mode == "dhcp" and net.ip == "10.0.0.9", (net.mode, net.ip)
    assert svc.hosts == ["192.168.1.232", "10.0.0.9"]
    assert "10.0.0.9" in lines[-2] and net.dhcp.state == dhcp.BOUND


class _JanitorEth:
    def __init__(self):
        self._sockets_reserved = [False] * 7
        self.status = [0] * 8
        self.closed = []

    def socket_status(self, n):
        return self.status[n]

    def socket_disconnect(self, n):
        pass

    def socket_close(self, n):
        self.status[n] = 0
        self.closed.append(n)

    def release_socket(self, n):
        self._sockets_reserved[n - 1] = False


class _Sock:
    def __init__(self, n):
        self._socknum = n


class _Owner:
    def __init__(self, nums):
        self.socks = [_Sock(n) for n in nums]

    def sockets(self):
        return self.socks


def test_janitor_reclaims_only_orphans_seen_twice():
    from han2x_core.sockjanitor import SocketJanitor

    eth = _JanitorEth()
    for n in (1, 2, 5):  # 1, 2 owned (listener, client); 5 lost by the accept race
        eth._sockets_reserved[n - 1] = True
        eth.status[n] = 0x17
    eth.status[1] = 0x14
    j = SocketJanitor(eth)
    owner = _Owner((1, 2))
    assert j.check([owner]) == 0  # first sighting: only a suspect
    assert j.check([owner]) == 1 and eth.closed == [5]
    assert eth._sockets_reserved == [True, True, False, False, False, False, False]
    assert j.check([owner, object()]) == 0  # a service without sockets(): hands off
