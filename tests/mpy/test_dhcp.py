"""The DHCP client core on MicroPython: a full DISCOVER/OFFER/REQUEST/ACK, renewal timers
across the tick wrap, and garbage ignored."""

from han2x_core import dhcp

MAC = b"\x02\x48\x01\x02\x03\x04"
SERVER = b"\x0a\x00\x00\x01"


def _reply(request, kind, yiaddr, lease_s):
    r = bytearray(300)
    r[0] = 2
    r[4:8] = request[4:8]
    r[16:20] = yiaddr
    r[28:34] = MAC
    r[236:240] = b"c\x82Sc"
    r[240:249] = b"\x35\x01" + bytes((kind,)) + b"\x36\x04" + SERVER
    r[249:255] = b"\x33\x04" + bytes((lease_s >> 24, lease_s >> 16 & 255, lease_s >> 8 & 255,
                                       lease_s & 255))
    r[255] = 255
    return r


def _bind(c, t, lease_s):
    buf = bytearray(dhcp.BUF_SIZE)
    c.build(buf, t)
    assert c.receive(_reply(buf, 2, b"\x0a\x00\x00\x05", lease_s), 300, t) == dhcp.EV_NONE
    assert c.state == dhcp.REQUESTING and c.due(t)
    n = c.build(buf, t)
    assert buf[242] == 3 and n < dhcp.BUF_SIZE
    return c.receive(_reply(buf, 5, b"\x0a\x00\x00\x05", lease_s), 300, t)


def test_lease_obtained():
    c = dhcp.DhcpClient(MAC, "han2x-010203", 4000)
    c.start(100)
    assert _bind(c, 100, 3600) == dhcp.EV_BOUND
    assert c.state == dhcp.BOUND and c.ip == b"\x0a\x00\x00\x05" and c.lease_s == 3600


def test_renewal_timer_across_tick_wrap():
    c = dhcp.DhcpClient(MAC, "han2x-010203", 4000)
    t = (1 << 29) - 5000  # five seconds before the tick counter wraps
    c.start(t)
    _bind(c, t, 20)
    for step in range(15):
        t = (t + 1000) & ((1 << 29) - 1)
        c.tick(t)
    assert c.state == dhcp.RENEWING and c.due(t)
    for step in range(4):  # the 20 s lease ends 5 s later, on the far side of the wrap
        t = (t + 1000) & ((1 << 29) - 1)
        assert c.tick(t) != dhcp.EV_LOST, step
    assert c.tick((t + 1000) & ((1 << 29) - 1)) == dhcp.EV_LOST


def test_garbage_is_ignored():
    c = dhcp.DhcpClient(MAC, "h", 4000)
    c.start(0)
    for junk in (bytearray(0), bytearray(b"\x02" * 300), bytearray(400)):
        assert c.receive(junk, len(junk), 0) == dhcp.EV_NONE
    assert c.state == dhcp.SELECTING
