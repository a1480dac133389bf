"""A register-level W5500 model behind a fake SPI bus, bridged to real sockets on 127.0.0.1.

The unmodified adafruit_wiznet5k driver runs on it: pass `model.spi` and `model.cs` to
`WIZNET5K(...)`; the driver wraps them in the real adafruit_bus_device SPIDevice. Each
chip-select frame is `addr_hi, addr_lo, control, data...` (W5500 variable-length mode).
Device TCP port P is served on host port `port_map.get(P, P + port_offset)`; UDP datagrams
the device sends to port P go to 127.0.0.1:`udp_map[P]` (dropped when P is not mapped), so
a DHCP broadcast to 255.255.255.255:67 reaches a test DHCP server and nothing else.
Nothing is ever sent to an address other than 127.0.0.1. See docs/w5500-model.md.
"""

import errno
import socket
import time

# Socket status (Sn_SR) and commands (Sn_CR), from the W5500 datasheet.
CLOSED, INIT, LISTEN, ESTABLISHED, CLOSE_WAIT, UDP = 0x00, 0x13, 0x14, 0x17, 0x1C, 0x22
OPEN, CMD_LISTEN, CONNECT, DISCON, CLOSE, SEND, RECV = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40
IR_CON, IR_DISCON, IR_RECV, IR_TIMEOUT, IR_SEND_OK = 0x01, 0x02, 0x04, 0x08, 0x10
MODE_TCP, MODE_UDP = 0x01, 0x02
BUF = 2048  # 2 KB per socket buffer, as the driver configures (Sn_RXBUF_SIZE = 2)
LOCALHOST = "127.0.0.1"
_HARMLESS = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINPROGRESS)


class FakeCS:
    """Chip-select pin: active low; the rising edge ends an SPI frame."""

    def __init__(self, model):
        self._model = model
        self._value = True

    def switch_to_output(self, value=True, drive_mode=None):
        self.value = value

    def switch_to_input(self, pull=None):
        pass

    def deinit(self):
        pass

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, value):
        value = bool(value)
        if value != self._value:
            self._model._select(not value)
        self._value = value


class FakeResetPin(FakeCS):
    """DigitalInOut-like reset pin: a low pulse resets the chip."""

    @FakeCS.value.setter
    def value(self, value):
        if value and not self._value:
            self._model.reset()
        self._value = bool(value)


class FakeSPI:
    """busio.SPI stand-in: lock, configure, and byte streams into the model's frame."""

    def __init__(self, model):
        self._model = model
        self.locked = False

    def try_lock(self):
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self):
        self.locked = False

    def configure(self, baudrate=100000, polarity=0, phase=0, bits=8):
        pass

    def write(self, buf, start=0, end=None):
        self._model._mosi(bytes(buf[start:end]))

    def readinto(self, buf, start=0, end=None, write_value=0):
        end = len(buf) if end is None else end
        buf[start:end] = self._model._miso(end - start)

    def write_readinto(self, out, into, out_start=0, out_end=None, in_start=0, in_end=None):
        data = bytes(out[out_start:out_end])
        hdr = max(0, min(len(data), 3 - len(self._model._hdr)))
        self._model._mosi(data[:hdr])
        n = (len(into) if in_end is None else in_end) - in_start
        into[in_start:in_start + n] = bytes(hdr) + self._model._miso(n - hdr)


class _Sock:
    """One hardware socket: registers, buffers and the host-side resource bridged to it."""

    def __init__(self):
        self.regs = bytearray(0x30)
        self.regs[0x1E] = self.regs[0x1F] = 2
        self.status = CLOSED
        self.ir = 0
        self.tx = bytearray(BUF)
        self.rx = bytearray(BUF)
        self.tx_rd = 0  # chip-owned pointers; TX_WR and RX_RD live in regs (driver-owned)
        self.rx_wr = 0
        self.pending = b""  # sent by SEND, not yet taken by the host kernel
        self.conn = None  # host TCP connection or UDP socket
        self.port = None  # device port this socket holds a host listener for
        self.listen_at = 0.0

    def reg16(self, off):
        return self.regs[off] << 8 | self.regs[off + 1]

    def set16(self, off, value):
        self.regs[off] = value >> 8 & 0xFF
        self.regs[off + 1] = value & 0xFF

    def rx_used(self):
        return (self.rx_wr - self.reg16(0x28)) & 0xFFFF


class W5500Model:
    """The chip. Pumping (accept, receive, flush) happens when the driver reads Sn_SR,
    Sn_RX_RSR (high byte), Sn_TX_FSR (high byte) or Sn_IR, so no thread is needed."""

    def __init__(self, port_map=None, port_offset=10000, udp_map=None, link=True,
                 peer_ip=LOCALHOST, syn_delay_s=0.001):
        self.port_map = dict(port_map or {})
        self.port_offset = port_offset
        self.udp_map = dict(udp_map or {})
        self.peer_ip = bytes(int(x) for x in peer_ip.split("."))
        self.link = link
        # A LISTEN socket takes a waiting host connection only this long after LISTEN: on
        # the chip a SYN needs a round trip. 0 makes a queued client land at once, which
        # hits the driver's accept() race (see docs/w5500-model.md) on every accept.
        self.syn_delay_s = syn_delay_s
        self.spi = FakeSPI(self)
        self.cs = FakeCS(self)
        self.reset_pin = FakeResetPin(self)
        self.frames = 0  # chip-select frames seen
        self.udp_sent = []  # (device dst ip, device dst port, host port or None, length)
        self._listeners = {}  # device port -> [host listening socket, holders]
        self._hdr = bytearray()
        self._selected = False
        self.common = bytearray(0x40)
        self.sockets = [_Sock() for _ in range(8)]
        self.reset()

    # ----- test controls -----
    def host_port(self, device_port):
        """The 127.0.0.1 port where device TCP port `device_port` is reachable."""
        return self.port_map.get(device_port, device_port + self.port_offset)

    def set_link(self, up):
        """Plug (True) or unplug (False) the cable. Unplugging aborts every TCP connection
        at once (the real chip gets there after its retransmission timeout, RTR x RCR)."""
        self.link = bool(up)
        if not up:
            for s in self.sockets:
                if s.status not in (CLOSED, INIT, LISTEN, UDP):
                    self._closed(s, IR_TIMEOUT, abort=True)

    def status(self, n):
        return self.sockets[n].status

    def reset(self):
        """Power-on / MR.RST: every socket closed, registers at their reset values."""
        for s in self.sockets:
            self._closed(s, 0)
        self.sockets = [_Sock() for _ in range(8)]
        self.common = bytearray(0x40)
        self.common[0x19:0x1C] = b"\x07\xd0\x08"  # RTR 2000 (200 ms), RCR 8
        self.common[0x39] = 0x04  # VERSIONR

    def close(self):
        """Release every host socket (end of a test)."""
        self.reset()

    # ----- SPI framing -----
    def _select(self, active):
        if active:
            self._hdr = bytearray()
        self._selected = active
        if active:
            self.frames += 1

    def _frame(self):
        addr = self._hdr[0] << 8 | self._hdr[1]
        ctrl = self._hdr[2]
        return addr, ctrl >> 3, ctrl & 0x04

    def _mosi(self, data):
        need = 3 - len(self._hdr)
        if need > 0:
            self._hdr += data[:need]
            data = data[need:]
            if len(self._hdr) == 3:
                self._cursor = self._frame()[0]
        if not data or len(self._hdr) < 3:
            return
        addr, block, write = self._frame()
        if not write:
            return  # MOSI bytes during a read phase are ignored by the chip
        if block and block & 3 == 2:  # TX buffer: bulk copy with wrap
            s = self.sockets[block >> 2]
            for i, b in enumerate(data):
                s.tx[(self._cursor + i) % BUF] = b
        else:
            for i, b in enumerate(data):
                self._poke(block, self._cursor + i, b)
        self._cursor += len(data)

    def _miso(self, n):
        if len(self._hdr) < 3:
            return bytes(n)
        addr, block, write = self._frame()
        if write:
            return bytes(n)
        if block and block & 3 == 3:  # RX buffer
            s = self.sockets[block >> 2]
            out = bytes(s.rx[(self._cursor + i) % BUF] for i in range(n))
        else:
            out = bytes(self._peek(block, self._cursor + i) for i in range(n))
        self._cursor += n
        return out

    def _peek(self, block, a):
        if block == 0:
            if a == 0x2E:  # PHYCFGR: bit 0 link, bits 1-2 100 Mbit full duplex
                return 0xB8 | (0x07 if self.link else 0)
            return self.common[a] if a < 0x40 else 0
        if block & 3 != 1:
            return 0
        s = self.sockets[block >> 2]
        if a in (0x02, 0x03, 0x20, 0x26):
            self._pump(s)
        if a == 0x02:
            return s.ir
        if a == 0x03:
            return s.status
        if a in (0x20, 0x21):
            free = BUF - ((s.reg16(0x24) - s.tx_rd) & 0xFFFF) - len(s.pending)
            return (max(free, 0) >> (8 if a == 0x20 else 0)) & 0xFF
        if a in (0x22, 0x23):
            return (s.tx_rd >> (8 if a == 0x22 else 0)) & 0xFF
        if a in (0x26, 0x27):
            return (s.rx_used() >> (8 if a == 0x26 else 0)) & 0xFF
        if a in (0x2A, 0x2B):
            return (s.rx_wr >> (8 if a == 0x2A else 0)) & 0xFF
        if a == 0x01:
            return 0  # commands complete at once
        return s.regs[a] if a < 0x30 else 0

    def _poke(self, block, a, b):
        if block == 0:
            if a == 0 and b & 0x80:
                self.reset()
            elif a < 0x40 and a not in (0x2E, 0x39):
                self.common[a] = b
            return
        if block & 3 != 1 or a >= 0x30:
            return
        s = self.sockets[block >> 2]
        if a == 0x01:
            self._command(s, b)
        elif a == 0x02:
            s.ir &= ~b  # write 1 to clear
        elif a not in (0x03, 0x20, 0x21, 0x22, 0x23, 0x26, 0x27, 0x2A, 0x2B):
            s.regs[a] = b

    # ----- commands and state -----
    def _command(self, s, cmd):
        mode = s.regs[0] & 0x0F
        if cmd == OPEN:
            self._closed(s, 0)
            s.tx_rd = s.rx_wr = 0
            s.set16(0x24, 0)
            s.set16(0x28, 0)
            if mode == MODE_TCP:
                s.status = INIT
            elif mode == MODE_UDP:
                s.conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.conn.bind((LOCALHOST, 0))
                s.conn.setblocking(False)
                s.status = UDP
        elif cmd == CMD_LISTEN and s.status == INIT:
            port = s.reg16(0x04)
            entry = self._listeners.get(port)
            if entry is None:
                ls = socket.socket()
                ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                ls.bind((LOCALHOST, self.host_port(port)))
                ls.listen(8)
                ls.setblocking(False)
                entry = self._listeners[port] = [ls, 0]
            entry[1] += 1
            s.port = port
            s.listen_at = time.monotonic()
            s.status = LISTEN
        elif cmd == CONNECT and s.status == INIT:
            self._connect(s)
        elif cmd == DISCON:
            if s.status in (ESTABLISHED, CLOSE_WAIT) and s.conn is not None:
                self._flush(s)
                try:
                    s.conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            if s.status != UDP:
                self._closed(s, IR_DISCON)
        elif cmd == CLOSE:
            self._closed(s, 0)
        elif cmd == SEND:
            self._send(s)
        # RECV: nothing to do, Sn_RX_RD is read from the register file.

    def _connect(self, s):
        dst = (LOCALHOST, self.host_port(s.reg16(0x10)))
        try:
            s.conn = socket.create_connection(dst, timeout=1.0)
            s.conn.setblocking(False)
            s.status = ESTABLISHED
            s.ir |= IR_CON
        except OSError:
            self._closed(s, IR_TIMEOUT)

    def _closed(self, s, ir, abort=False):
        if s.conn is not None:
            if abort:
                try:  # RST, as a peer that has vanished looks to the client
                    s.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      b"\x01\x00\x00\x00\x00\x00\x00\x00")
                except OSError:
                    pass
            s.conn.close()
            s.conn = None
        if s.port is not None:
            entry = self._listeners[s.port]
            entry[1] -= 1
            if entry[1] <= 0:  # nobody holds the port: the chip would refuse SYNs now
                entry[0].close()
                del self._listeners[s.port]
            s.port = None
        s.pending = b""
        s.status = CLOSED
        s.ir |= ir

    def _send(self, s):
        wr = s.reg16(0x24)
        n = (wr - s.tx_rd) & 0xFFFF
        data = bytes(s.tx[(s.tx_rd + i) % BUF] for i in range(n))
        s.tx_rd = wr
        if s.status == UDP:
            ip, port = bytes(s.regs[0x0C:0x10]), s.reg16(0x10)
            host_port = self.udp_map.get(port)
            self.udp_sent.append((ip, port, host_port, n))
            if host_port is not None:  # only ever to 127.0.0.1
                try:
                    s.conn.sendto(data, (LOCALHOST, host_port))
                except OSError:
                    pass
            s.ir |= IR_SEND_OK
        elif s.status in (ESTABLISHED, CLOSE_WAIT):
            s.pending += data
            self._flush(s)

    def _flush(self, s):
        """Hand pending TX bytes to the host kernel; SEND_OK once all are gone. A peer that
        stops reading leaves SEND_OK unset, as a real stalled TCP window does."""
        if s.pending and s.conn is not None:
            try:
                sent = s.conn.send(s.pending)
                s.pending = s.pending[sent:]
            except OSError as e:
                if e.errno not in _HARMLESS:
                    self._closed(s, IR_DISCON)
                    return
            if not s.pending:
                s.ir |= IR_SEND_OK

    def _pump(self, s):
        if not self.link or s.conn is None and s.status != LISTEN:
            return
        if s.status == LISTEN:
            if time.monotonic() - s.listen_at < self.syn_delay_s:
                return
            try:
                conn, (ip, port) = self._listeners[s.port][0].accept()
            except OSError:
                return
            conn.setblocking(False)
            # A small kernel buffer, so a peer that stops reading stalls TX soon, as on
            # the chip (2 KB TX buffer, no more).
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            s.conn = conn
            s.regs[0x0C:0x10] = bytes(int(x) for x in ip.split("."))
            s.set16(0x10, port)
            s.status = ESTABLISHED
            s.ir |= IR_CON
        if s.status == UDP:
            self._pump_udp(s)
            return
        self._flush(s)
        if s.status != ESTABLISHED:
            return
        free = BUF - s.rx_used()
        if free <= 0:
            return
        try:
            data = s.conn.recv(free)
        except OSError as e:
            if e.errno not in _HARMLESS:
                self._closed(s, IR_DISCON)  # peer reset
            return
        if not data:
            s.status = CLOSE_WAIT  # FIN received
            s.ir |= IR_DISCON
            return
        self._rx_put(s, data)
        s.ir |= IR_RECV

    def _pump_udp(self, s):
        for _ in range(8):
            try:
                data, (ip, port) = s.conn.recvfrom(BUF)
            except OSError:
                return
            dev_port = port
            for p, hp in self.udp_map.items():
                if hp == port:
                    dev_port = p
            if BUF - s.rx_used() < 8 + len(data):
                continue  # the chip drops datagrams that do not fit
            n = len(data)
            self._rx_put(s, self.peer_ip + bytes((dev_port >> 8, dev_port & 0xFF,
                                                  n >> 8, n & 0xFF)) + data)
            s.ir |= IR_RECV

    def _rx_put(self, s, data):
        for i, b in enumerate(data):
            s.rx[(s.rx_wr + i) % BUF] = b
        s.rx_wr = (s.rx_wr + len(data)) & 0xFFFF


def install_driver_shims(sleep_scale=0.0, no_finalisers=True, fast_gc=True):
    """Patch only what makes CPython behave like the board: the driver's time.sleep (1 s in
    WIZNET5K.__init__, scaled by sleep_scale), its one-argument OSError(EAGAIN) (.errno is
    None on CPython, 11 on the board), and Socket.__del__ (never called on the board).
    fast_gc: the driver's gc.collect() calls (every send and socket allocation) become
    no-ops; a full CPython collection in a test process costs milliseconds each, which
    would halve the soak's speed and tell nothing about the board. Idempotent."""
    import time
    import types

    import adafruit_wiznet5k.adafruit_wiznet5k as wiz
    import adafruit_wiznet5k.adafruit_wiznet5k_socketpool as sp

    real_sleep = time.sleep
    wiz.time = types.SimpleNamespace(
        sleep=lambda s: real_sleep(s * sleep_scale) if sleep_scale else None,
        monotonic=time.monotonic)

    class _MPOSError(OSError):
        def __init__(self, *args):
            super().__init__(*args)
            if len(args) == 1 and isinstance(args[0], int):
                self.errno = args[0]

    sp.OSError = _MPOSError
    if fast_gc:
        import gc

        no_gc = types.SimpleNamespace(collect=lambda: None, enable=gc.enable,
                                      disable=gc.disable)
        wiz.gc = sp.gc = no_gc
    if no_finalisers:
        # CircuitPython and MicroPython never call __del__ on Python classes, so a Socket
        # object the driver loses keeps its hardware socket reserved for good. CPython
        # would release the reservation when collecting it and hide the leak.
        sp.Socket.__del__ = lambda self: None
