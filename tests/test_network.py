"""han2x_core.network on the real adafruit_wiznet5k driver and the W5500 model:
boot, DHCP (lease, renewal, failure, expiry), live re-configuration, link loss."""

import os
import socket
import threading
import time

import pytest

from tools.sim.dhcp_server import DISCOVER, REQUEST, DhcpServer
from support.net_helpers import UID, EchoService, make_network, now_ms, run
from han2x_core import dhcp as dhcp_core
from han2x_core.network import default_hostname, mac_from_uid

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def sipr(model):
    return ".".join(str(b) for b in model.common[0x0F:0x13])


def echo_once(model, port=502, payload=b"hello", timeout=2.0):
    """Connect to device port through the bridge, send, read the echo (in a thread while
    the caller keeps polling)."""
    with socket.create_connection(("127.0.0.1", model.host_port(port)), timeout=timeout) as c:
        c.sendall(payload)
        return c.recv(64)


def echo_while_polling(model, parts, port=502):
    result = {}

    def client():
        try:
            result["echo"] = echo_once(model, port)
        except OSError as e:
            result["error"] = e

    t = threading.Thread(target=client)
    t.start()
    run(parts, 5.0, until=lambda: not t.is_alive())
    t.join(1.0)
    return result.get("echo"), result.get("error")


@pytest.fixture
def dhcp_server():
    srv = DhcpServer()
    yield srv
    srv.stop()


def test_mac_and_hostname_are_stable_and_local():
    mac = mac_from_uid(UID)
    assert mac == mac_from_uid(bytes(UID)) and len(mac) == 6
    assert mac[0] & 0x02 and not mac[0] & 0x01  # locally administered, unicast
    assert mac != mac_from_uid(b"\xe6\x61\x41\x04\x03\x5c\x2b\x28")
    assert default_hostname(mac) == "han2x-%s" % mac[3:].hex()


def test_boots_on_the_factory_static_address_and_serves():
    model, net = make_network()
    assert net.ip == "192.168.1.232" and sipr(model) == "192.168.1.232"
    assert net.mode == "static" and net.link_up
    assert net.hostname == default_hostname(net.mac)
    assert any("192.168.1.232" in line for line in net.lines)  # the serial console line
    echo = EchoService(net.pool, 502)
    net.attach(echo)
    assert echo_while_polling(model, [net, echo]) == (b"hello", None)
    model.close()


def test_dhcp_obtains_an_address_and_hostname(dhcp_server):
    model, net = make_network(settings={"dhcp": True, "hostname": ""})
    model.udp_map[67] = dhcp_server.port
    assert net.mode == "dhcp-fallback" and net.ip == "192.168.1.232"
    echo = EchoService(net.pool, 502)
    net.attach(echo)
    assert run([net, echo], 5.0, until=lambda: net.mode == "dhcp")
    assert net.ip == "10.9.8.100" and sipr(model) == "10.9.8.100"
    assert net.gateway == "10.9.8.1" and net.dns == "10.9.8.53"
    assert dhcp_server.log[0][2] == net.hostname  # routers list it under han2x-xxxxxx
    assert all(dst[:2] == (b"\xff\xff\xff\xff", 67) for dst in model.udp_sent)
    assert echo.starts == 2 and net.generation == 1  # re-listened on the new address
    assert echo_while_polling(model, [net, echo]) == (b"hello", None)
    assert any("10.9.8.100" in line for line in net.lines)
    assert run.max_poll_s < 0.5  # blocking driver paths take >= 1 s; CI boxes are busy
    model.close()


def test_lease_is_renewed_before_it_ends(dhcp_server):
    dhcp_server.lease_s = 3  # T1 at 1.5 s -> renew at the next whole second
    model, net = make_network(settings={"dhcp": True})
    model.udp_map[67] = dhcp_server.port
    assert run([net], 5.0, until=lambda: net.mode == "dhcp")
    gen = net.generation
    assert run([net], 6.0, until=lambda: dhcp_server.count(REQUEST) >= 3)
    renewals = [e for e in dhcp_server.log if e[0] == REQUEST and e[3] != bytes(4)]
    assert renewals and renewals[0][3] == bytes((10, 9, 8, 100))  # ciaddr = our lease
    run([net], 0.3)
    assert net.mode == "dhcp" and net.ip == "10.9.8.100"
    assert net.generation == gen  # same address: servers keep running
    assert dhcp_server.count(DISCOVER) == 1
    model.close()


def test_dhcp_failure_keeps_serving_on_the_fallback_and_retries(dhcp_server):
    dhcp_server.respond = False
    model, net = make_network(settings={"dhcp": True, "ip": "192.168.1.77"})
    model.udp_map[67] = dhcp_server.port
    echo = EchoService(net.pool, 502)
    net.attach(echo)
    run([net, echo], 2.5)
    assert net.mode == "dhcp-fallback" and net.ip == "192.168.1.77"
    assert sipr(model) == "192.168.1.77"
    # backoff 0.3, 0.6, 1.2 s ...: a few DISCOVERs, not a flood
    assert 2 <= dhcp_server.count(DISCOVER) <= 5
    assert echo_while_polling(model, [net, echo]) == (b"hello", None)
    assert run.max_poll_s < 0.5  # blocking driver paths take >= 1 s; CI boxes are busy
    dhcp_server.respond = True
    assert run([net, echo], 6.0, until=lambda: net.mode == "dhcp")
    assert net.ip == "10.9.8.100"
    model.close()


def test_expired_lease_falls_back_then_recovers(dhcp_server):
    dhcp_server.lease_s = 2
    model, net = make_network(settings={"dhcp": True})
    model.udp_map[67] = dhcp_server.port
    assert run([net], 5.0, until=lambda: net.mode == "dhcp")
    dhcp_server.respond = False
    assert run([net], 5.0, until=lambda: net.mode == "dhcp-fallback")
    assert net.ip == "192.168.1.232" and sipr(model) == "192.168.1.232"
    assert any("lost" in line for line in net.lines)
    dhcp_server.respond = True
    assert run([net], 8.0, until=lambda: net.mode == "dhcp")
    model.close()


def test_nak_at_renewal_moves_to_the_new_lease(dhcp_server):
    """The server forgot us (new scope): the renewal is refused, the device falls back, asks
    again, gets another address and re-listens there."""
    dhcp_server.lease_s = 2
    model, net = make_network(settings={"dhcp": True})
    model.udp_map[67] = dhcp_server.port
    echo = EchoService(net.pool, 502)
    net.attach(echo)
    assert run([net, echo], 5.0, until=lambda: net.mode == "dhcp")
    dhcp_server.leases.clear()
    dhcp_server.first_ip = bytes((10, 9, 8, 150))
    assert run([net, echo], 6.0, until=lambda: net.ip == "10.9.8.150")
    assert net.mode == "dhcp" and sipr(model) == "10.9.8.150"
    assert net.dhcp.naks >= 1 and any("lost" in line for line in net.lines)
    assert echo.starts >= 3  # static fallback at boot, first lease, (fallback,) new lease
    assert echo_while_polling(model, [net, echo]) == (b"hello", None)
    model.close()


def test_static_address_change_applies_within_10_s():
    model, net = make_network()
    echo = EchoService(net.pool, 502)
    net.attach(echo)
    start = time.monotonic()
    net.configure({"dhcp": False, "ip": "10.1.2.3", "netmask": "255.255.0.0",
                   "gateway": "10.1.0.1", "dns": "10.1.0.1"})
    assert net.ip != "10.1.2.3" and sipr(model) != "10.1.2.3"  # queued: poll() applies it
    assert run([net, echo], 10.0, until=lambda: sipr(model) == "10.1.2.3")
    assert time.monotonic() - start < 10.0
    assert net.ip == "10.1.2.3" and net.netmask == "255.255.0.0"
    assert bytes(model.common[0x01:0x05]) == b"\x0a\x01\x00\x01"  # GAR
    assert echo.starts == 2
    assert echo_while_polling(model, [net, echo]) == (b"hello", None)
    net.configure({"dhcp": False, "ip": "10.1.2.3", "netmask": "255.255.0.0",
                   "gateway": "10.1.0.1", "dns": "10.1.0.1"})
    run([net, echo], 0.5)
    assert echo.starts == 2  # unchanged settings change nothing
    model.close()


def test_switching_between_static_and_dhcp_live(dhcp_server):
    model, net = make_network()
    model.udp_map[67] = dhcp_server.port
    net.configure({"dhcp": True})
    assert run([net], 8.0, until=lambda: net.mode == "dhcp")
    net.configure({"dhcp": False, "ip": "192.168.1.50"})
    assert run([net], 8.0, until=lambda: sipr(model) == "192.168.1.50")
    assert net.mode == "static" and net.dhcp.state == dhcp_core.IDLE
    model.close()


def test_cable_unplug_and_replug_recover(dhcp_server):
    model, net = make_network(settings={"dhcp": True})
    model.udp_map[67] = dhcp_server.port
    echo = EchoService(net.pool, 502)
    net.attach(echo)
    assert run([net, echo], 5.0, until=lambda: net.mode == "dhcp")
    c = socket.create_connection(("127.0.0.1", model.host_port(502)), timeout=2)
    run([net, echo], 0.2)
    model.set_link(False)
    assert run([net, echo], 2.0, until=lambda: not net.link_up)
    assert any("link down" in line for line in net.lines)
    with pytest.raises(OSError):
        c.sendall(b"x")
        c.recv(1)
    c.close()
    run([net, echo], 0.5)  # polling while down must not raise out or hang
    model.set_link(True)
    assert run([net, echo], 2.0, until=lambda: net.link_up)
    assert echo_while_polling(model, [net, echo]) == (b"hello", None)
    assert run([net, echo], 5.0, until=lambda: net.dhcp.state == dhcp_core.BOUND)
    assert net.ip == "10.9.8.100"
    model.close()


def test_servers_attached_while_link_is_down_start_when_it_comes_up():
    model, net = make_network()
    model.set_link(False)
    run([net], 0.6)
    echo = EchoService(net.pool, 502)
    net.attach(echo)
    assert echo.listener is None
    model.set_link(True)
    assert run([net, echo], 3.0, until=lambda: echo.listener is not None)
    assert echo_while_polling(model, [net, echo]) == (b"hello", None)
    model.close()


def test_dhcp_core_ignores_garbage_and_foreign_replies():
    c = dhcp_core.DhcpClient(b"\x02\x48\x01\x02\x03\x04", "han2x-010203", 1000)
    c.start(now_ms())
    buf = bytearray(dhcp_core.BUF_SIZE)
    n = c.build(buf, now_ms())
    assert buf[242] == 1 and b"han2x-010203" in bytes(buf[:n])
    for junk in (b"", b"\x02" * 300, bytes(buf[:n])):
        assert c.receive(bytearray(junk), len(junk), 0) == dhcp_core.EV_NONE
    assert c.state == dhcp_core.SELECTING


def test_start_up_budget_on_the_model():
    """The driver's real sleeps (1 s + chip probes) and our bring-up: a client is answered
    well within 5 s of creating the Network (board boot and imports come on top; see
    docs/network.md)."""
    from tools.sim.w5500_model import install_driver_shims

    install_driver_shims(sleep_scale=1.0)
    try:
        start = time.monotonic()
        model, net = make_network()
        echo = EchoService(net.pool, 502)
        net.attach(echo)
        assert echo_while_polling(model, [net, echo]) == (b"hello", None)
        elapsed = time.monotonic() - start
    finally:
        install_driver_shims()
    assert 1.0 <= elapsed < 2.0
    model.close()


_FRESH_DRIVER = r"""
import sys
sys.path.append(ROOT)
import tools._host  # the tests' path set-up: root and tests/ after the stdlib
from tools.sim.w5500_model import W5500Model
from han2x_core.network import Network

model = W5500Model(port_map={502: PORT})
net = Network(model.spi, model.cs, uid=UID, log=None)  # what code.py does
loaded = sorted(m for m in sys.modules if m.startswith("adafruit_wiznet5k"))
print("LOADED", ",".join(loaded))
import adafruit_wiznet5k
print("LEFT", [n for n in dir(adafruit_wiznet5k) if n.endswith(("_dhcp", "_dns", "_debug"))])
import socket, threading
from support.net_helpers import EchoService, run  # the driver still serves a connection
svc = EchoService(net.pool, 502)
net.attach(svc)
got = []
def client():
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as c:
        c.sendall(b"hello")
        got.append(c.recv(64))
threading.Thread(target=client, daemon=True).start()
run([net, svc], 20, until=lambda: got)
print("ECHO", got)
print("OURDHCP", "han2x_core.dhcp" in sys.modules)  # a static address never loads it
"""


def test_driver_runs_without_its_dhcp_dns_and_debug_modules(tmp_path):
    """The unmodified driver, imported by network.py in a fresh interpreter (as on the
    board), leaves its DHCP, DNS and debug modules out of sys.modules, and still serves."""
    import subprocess
    import sys

    from support.util import ROOT, free_port

    script = tmp_path / "fresh.py"
    script.write_text("ROOT, TESTS, PORT, UID = %r, %r, %d, %r\n" % (
        ROOT, os.path.join(ROOT, "tests"), free_port(), UID) + _FRESH_DRIVER)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert out["LOADED"].split(",") == [
        "adafruit_wiznet5k", "adafruit_wiznet5k.adafruit_wiznet5k",
        "adafruit_wiznet5k.adafruit_wiznet5k_socketpool"]
    assert out["LEFT"] == "[]"  # no stand-in left on the package either
    assert out["ECHO"] == "[b'hello']"
    assert out["OURDHCP"] == "False"


def test_network_mirrors_dhcp_constants():
    """network.py compares with dhcp.py's values without importing dhcp.py (a static
    address never loads it): the copies must be the same values."""
    from han2x_core import network

    assert (network._IDLE, network._EV_BOUND, network._EV_RENEWED, network._EV_LOST) == (
        dhcp_core.IDLE, dhcp_core.EV_BOUND, dhcp_core.EV_RENEWED, dhcp_core.EV_LOST)

