"""A small DHCP server for tests: UDP on 127.0.0.1 only, one thread, bounded lifetime.

The W5500 model redirects the device's DHCP traffic (broadcast or unicast to port 67) to
this server's port; replies go back to the sender's 127.0.0.1 address. Enough of RFC 2131
for a client: DISCOVER -> OFFER, REQUEST -> ACK or NAK (selecting, renewing, rebinding).
"""

import socket
import struct
import threading
import time

MAGIC = b"c\x82Sc"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7


def _ip(text):
    return bytes(int(x) for x in text.split("."))


def parse_options(pkt):
    """Options of a DHCP packet as {code: bytes}."""
    opts = {}
    i = 240
    while i < len(pkt):
        code = pkt[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        n = pkt[i + 1]
        opts[code] = bytes(pkt[i + 2:i + 2 + n])
        i += 2 + n
    return opts


class DhcpServer:
    """Leases addresses from `first_ip` upwards. Attributes tests may change at any time:
    `respond` (False = silent, as when no server is on the LAN), `lease_s`, `t1_s`, `t2_s`.
    Records every message in `log` as (type, mac_hex, hostname, ciaddr, requested_ip)."""

    def __init__(self, server_ip="10.9.8.1", first_ip="10.9.8.100", netmask="255.255.255.0",
                 router="10.9.8.1", dns="10.9.8.53", lease_s=3600, t1_s=None, t2_s=None,
                 max_life_s=120.0):
        self.server_ip = _ip(server_ip)
        self.first_ip = _ip(first_ip)
        self.netmask = _ip(netmask)
        self.router = _ip(router)
        self.dns = _ip(dns)
        self.lease_s = lease_s
        self.t1_s = t1_s
        self.t2_s = t2_s
        self.respond = True
        self.log = []
        self.leases = {}  # mac bytes -> ip bytes
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._stop = False
        self._deadline = time.monotonic() + max_life_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def count(self, msg_type):
        return sum(1 for entry in self.log if entry[0] == msg_type)

    def stop(self):
        self._stop = True
        self._thread.join(2.0)
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        while not self._stop and time.monotonic() < self._deadline:
            try:
                pkt, addr = self._sock.recvfrom(1500)
            except OSError:
                continue
            if addr[0] != "127.0.0.1" or len(pkt) < 244 or pkt[236:240] != MAGIC:
                continue
            reply = self.handle(pkt)
            if reply is not None and self.respond:
                self._sock.sendto(reply, addr)  # addr is always 127.0.0.1

    def handle(self, pkt):
        """Answer one client packet; returns the reply bytes or None."""
        if pkt[0] != 1:
            return None
        opts = parse_options(pkt)
        msg = opts.get(53, b"\x00")[0]
        mac = bytes(pkt[28:34])
        ciaddr = bytes(pkt[12:16])
        requested = opts.get(50)
        self.log.append((msg, mac.hex(), opts.get(12, b"").decode("ascii", "replace"),
                         ciaddr, requested))
        if not self.respond:
            return None
        if msg == DISCOVER:
            ip = self.leases.get(mac) or self._next_ip()
            self.leases[mac] = ip
            return self._reply(pkt, OFFER, ip)
        if msg == REQUEST:
            ip = self.leases.get(mac)
            wanted = requested or (ciaddr if ciaddr != bytes(4) else None)
            if ip is None or wanted != ip:
                return self._reply(pkt, NAK, bytes(4))
            return self._reply(pkt, ACK, ip)
        return None

    def _next_ip(self):
        base = struct.unpack(">I", self.first_ip)[0]
        return struct.pack(">I", base + len(self.leases))

    def _reply(self, req, msg, yiaddr):
        out = bytearray(240)
        out[0:4] = b"\x02\x01\x06\x00"
        out[4:8] = req[4:8]  # xid
        out[10:12] = req[10:12]  # flags
        out[16:20] = yiaddr
        out[20:24] = self.server_ip
        out[28:44] = req[28:44]  # chaddr
        out[236:240] = MAGIC
        out += bytes((53, 1, msg, 54, 4)) + self.server_ip
        if msg != NAK:
            out += bytes((1, 4)) + self.netmask + bytes((3, 4)) + self.router
            out += bytes((6, 4)) + self.dns + bytes((51, 4)) + struct.pack(">I", self.lease_s)
            if self.t1_s is not None:
                out += bytes((58, 4)) + struct.pack(">I", self.t1_s)
            if self.t2_s is not None:
                out += bytes((59, 4)) + struct.pack(">I", self.t2_s)
        out += b"\xff"
        return bytes(out)
