"""The W5500 model runs the unmodified adafruit_wiznet5k driver and shows its quirks."""

import errno
import socket
import time

import pytest

from tools.sim.dhcp_server import DhcpServer
from support.util import free_port
from tools.sim.w5500_model import CLOSE_WAIT, CLOSED, ESTABLISHED, LISTEN, W5500Model, \
    install_driver_shims

install_driver_shims()

from adafruit_wiznet5k.adafruit_wiznet5k import WIZNET5K  # noqa: E402
from adafruit_wiznet5k.adafruit_wiznet5k_socketpool import SocketPool  # noqa: E402

MAC = b"\x02\x48\x00\x11\x22\x33"
# A failed Socket() leaves a half-built object whose __del__ fails (a driver quirk).
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def chip():
    model = W5500Model(port_map={502: free_port(), 80: free_port()})
    yield model
    model.close()


def boot(model, **kw):
    eth = WIZNET5K(model.spi, model.cs, is_dhcp=False, mac=MAC, **kw)
    eth.ifconfig = (b"\xc0\xa8\x01\xe8", b"\xff\xff\xff\x00", b"\xc0\xa8\x01\x01",
                    b"\xc0\xa8\x01\x01")
    return eth, SocketPool(eth)


def until(fn, limit=2000):
    """Call fn until it returns without EAGAIN; bounded."""
    for _ in range(limit):
        try:
            return fn()
        except OSError as e:
            if e.args[0] != errno.EAGAIN:
                raise
    raise AssertionError("still EAGAIN after %d tries" % limit)


def listener(pool, port=502):
    s = pool.socket()
    s.bind((None, port))
    s.listen(1)
    s.settimeout(0)
    return s


def test_driver_detects_w5500_and_keeps_addresses(chip):
    eth, _ = boot(chip)
    assert eth.chip == "w5500"
    assert eth.mac_address == MAC
    assert eth.pretty_ip(eth.ip_address) == "192.168.1.232"
    assert eth.link_status
    assert chip.frames > 20


def test_reset_pin_resets_the_chip(chip):
    eth, _ = boot(chip, reset=chip.reset_pin)
    assert eth.chip == "w5500"


def test_driver_dhcp_goes_only_to_the_local_test_server(chip):
    with DhcpServer() as srv:
        chip.udp_map[67] = srv.port
        eth = WIZNET5K(chip.spi, chip.cs, is_dhcp=True, mac=MAC, hostname="han2x-112233")
        assert eth.pretty_ip(eth.ip_address) == "10.9.8.100"
        assert [e[0] for e in srv.log] == [1, 3]
        assert srv.log[0][2] == "han2x-112233"
    # The driver broadcast to 255.255.255.255:67; the model delivered it to 127.0.0.1 only.
    assert chip.udp_sent[0][:3] == (b"\xff\xff\xff\xff", 67, srv.port)


def test_tcp_accept_recv_send_and_peer_close(chip):
    _, pool = boot(chip)
    srv = listener(pool)
    c = socket.create_connection(("127.0.0.1", chip.host_port(502)), timeout=2)
    conn, addr = until(srv.accept)
    assert addr[0] == "127.0.0.1"
    assert chip.status(conn._socknum) == ESTABLISHED
    assert chip.status(srv._socknum) == LISTEN  # the listener moved to a new hw socket
    c.sendall(b"ping")
    conn.settimeout(0)
    buf = bytearray(16)
    assert until(lambda: conn.recv_into(buf)) == 4 and buf[:4] == b"ping"
    assert conn.send(b"pong!") == 5
    assert c.recv(16) == b"pong!"
    c.close()
    assert until(lambda: conn.recv_into(buf)) == 0  # EOF
    assert chip.status(conn._socknum) == CLOSE_WAIT
    conn.close()
    assert chip.status(conn._socknum) == CLOSED


def test_each_client_costs_a_socket_until_all_are_in_use(chip):
    _, pool = boot(chip)
    srv = listener(pool)
    clients, conns = [], []
    with pytest.raises(RuntimeError, match="All sockets in use"):
        for _ in range(8):
            clients.append(socket.create_connection(("127.0.0.1", chip.host_port(502)), 2))
            conns.append(until(srv.accept)[0])
    assert len(conns) == 6  # hw sockets 1-7 minus the listener; socket 0 is never reserved
    for conn in conns:
        conn.close()
    conns = [until(srv.accept)[0]]  # the 7th client, waiting, is now served
    for c in clients:
        c.close()


def test_stalled_peer_leaves_send_unfinished(chip):
    _, pool = boot(chip)
    srv = listener(pool)
    c = socket.create_connection(("127.0.0.1", chip.host_port(502)), timeout=2)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn, _ = until(srv.accept)
    conn.settimeout(0.2)  # with 0 or None the driver would wait here forever
    start = time.monotonic()
    with pytest.raises(RuntimeError):
        for _ in range(2000):  # the peer never reads: kernel buffers fill, then TX stalls
            conn.send(b"x" * 2048)
    assert time.monotonic() - start < 30
    c.close()


def test_link_down_raises_and_resets_clients(chip):
    eth, pool = boot(chip)
    srv = listener(pool)
    c = socket.create_connection(("127.0.0.1", chip.host_port(502)), timeout=2)
    conn, _ = until(srv.accept)
    chip.set_link(False)
    assert not eth.link_status
    assert chip.status(conn._socknum) == CLOSED
    assert chip.status(srv._socknum) == LISTEN
    other = pool.socket()
    other.bind((None, 80))
    with pytest.raises(ConnectionError):
        other.listen()  # every socket operation checks the link first
    with pytest.raises(OSError):
        c.sendall(b"x")
        c.recv(1)
    chip.set_link(True)
    assert eth.link_status


def test_port_is_refused_when_no_socket_holds_it(chip):
    _, pool = boot(chip)
    srv = listener(pool)
    srv.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", chip.host_port(502)), timeout=1)


def test_no_backlog_each_listening_socket_takes_one_syn_the_rest_are_reset(chip):
    """Four clients at once on a port where two sockets listen: the chip has no backlog,
    so two land (one on each socket) and the other two meet RST; a socket that listens
    afterwards does not get a client that came before it."""
    eth, pool = boot(chip)
    a, b = listener(pool), listener(pool)
    time.sleep(0.01)  # past the SYN round trip (syn_delay_s)
    clients = [socket.create_connection(("127.0.0.1", chip.host_port(502)), timeout=2)
               for _ in range(4)]
    assert a._status in (0x16, ESTABLISHED)  # reading one socket's status runs the chip
    late = listener(pool)
    time.sleep(0.01)
    assert late._status == LISTEN  # the SYNs came before it listened
    assert b._status in (0x16, ESTABLISHED)  # the other listener took the second
    reset = 0
    for c in clients:
        c.settimeout(1)
        try:
            c.sendall(b"x")
            if c.recv(1) == b"":
                reset += 1
        except (ConnectionResetError, BrokenPipeError):
            reset += 1
        except socket.timeout:
            pass  # landed: established, nobody answers
        c.close()
    assert reset == 2


def test_eagain_carries_errno_after_the_shim(chip):
    _, pool = boot(chip)
    srv = listener(pool)
    with pytest.raises(OSError) as info:
        srv.accept()
    assert info.value.errno == errno.EAGAIN and info.value.args[0] == errno.EAGAIN
