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

# Socket status (Sn_SR) and commands (Sn_CR), from the W5500 datasheet (section 4.2).
CLOSED, INIT, LISTEN, SYNRECV, ESTABLISHED = 0x00, 0x13, 0x14, 0x16, 0x17
FIN_WAIT, CLOSING, TIME_WAIT, CLOSE_WAIT, LAST_ACK, UDP = 0x18, 0x1A, 0x1B, 0x1C, 0x1D, 0x22
FIN_SENT = (FIN_WAIT, CLOSING, TIME_WAIT, LAST_ACK)
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


def requires_lock(spi):
    if not spi.locked:
        raise RuntimeError("Function requires lock")  # busio.SPI on the board


class LockedSPI:
    """busio.SPI's lock and configure, with the stubs' signatures: every transfer and
    configure without the lock raises, as on the board. The base of the model's SPI and of
    the fake busio.SPI (tests/support/fakes)."""

    locked = False
    frequency = 250000

    def try_lock(self):
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self):
        self.locked = False

    def configure(self, *, baudrate=100000, polarity=0, phase=0, bits=8):
        requires_lock(self)
        self.frequency = baudrate


class FakeSPI(LockedSPI):
    """busio.SPI stand-in: byte streams into the model's frame."""

    def __init__(self, model):
        self._model = model

    def write(self, buffer, *, start=0, end=None):
        requires_lock(self)
        self._model._mosi(bytes(buffer[start:end]))

    def readinto(self, buffer, *, start=0, end=None, write_value=0):
        requires_lock(self)
        end = len(buffer) if end is None else end
        buffer[start:end] = self._model._miso(end - start)

    def write_readinto(self, out_buffer, in_buffer, *, out_start=0, out_end=None, in_start=0,
                       in_end=None):
        requires_lock(self)
        out, into = out_buffer, in_buffer
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
        self.port = None  # device port this socket listens on (LISTEN only)
        self.listen_at = 0.0
        self.cmd = 0  # Sn_CR: a command reads back until the chip has taken it
        self.cmd_due = 0  # the SPI frame count at which it completes
        self.next = None  # (status, frame count): a transient state moves on by itself
        self.peer_fin = False  # the peer's FIN has arrived

    def reg16(self, off):
        return self.regs[off] << 8 | self.regs[off + 1]

    def set16(self, off, value):
        self.regs[off] = value >> 8 & 0xFF
        self.regs[off + 1] = value & 0xFF

    def rx_used(self):
        return (self.rx_wr - self.reg16(0x28)) & 0xFFFF


class W5500Model:
    """The chip. Pumping (accept, receive, flush) happens when the driver reads Sn_SR,
    Sn_RX_RSR (high byte), Sn_TX_FSR (high byte) or Sn_IR, so no thread is needed. Time on
    the chip is counted in SPI frames: a command completes `cmd_frames` frames after it is
    written, a transient TCP state (SYNRECV, CLOSING, TIME_WAIT, LAST_ACK) lasts
    `transit_frames` frames."""

    def __init__(self, port_map=None, port_offset=10000, udp_map=None, link=True,
                 peer_ip=LOCALHOST, syn_delay_s=0.001, cmd_frames=2, transit_frames=3):
        self.port_map = dict(port_map or {})
        self.port_offset = port_offset
        self.udp_map = dict(udp_map or {})
        self.peer_ip = bytes(int(x) for x in peer_ip.split("."))
        self.link = link
        # A LISTEN socket takes a waiting host connection only this long after LISTEN: on
        # the chip a SYN needs a round trip. 0 makes a queued client land at once, which
        # hits the driver's accept() race (see docs/w5500-model.md) on every accept.
        self.syn_delay_s = syn_delay_s
        self.cmd_frames = cmd_frames
        self.transit_frames = transit_frames
        self.spi = FakeSPI(self)
        self.cs = FakeCS(self)
        self.reset_pin = FakeResetPin(self)
        self.frames = 0  # chip-select frames seen
        self.udp_sent = []  # (device dst ip, device dst port, host port or None, length)
        self._listeners = {}  # device port -> host listening socket, while a socket LISTENs
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
                    self._closed(s, IR_TIMEOUT, abort=True)  # no FIN: the cable is out

    def status(self, n):
        return self.sockets[n].status

    def reset(self):
        """Power-on / MR.RST: every socket closed, registers at their reset values."""
        for s in self.sockets:
            self._closed(s, 0, abort=True)
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
            self._tick()

    def _tick(self):
        """The chip's own progress between two SPI frames: commands complete, transient
        TCP states move on."""
        for s in self.sockets:
            if s.cmd and self.frames >= s.cmd_due:
                cmd, s.cmd = s.cmd, 0
                self._command(s, cmd)
            if s.next is not None and self.frames >= s.next[1]:
                status, s.next = s.next[0], None
                self._enter(s, status)

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
            return s.cmd  # non-zero until the chip has taken the command
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
            if s.cmd:  # a command written over one not yet taken: the first one runs first
                self._command(s, s.cmd)
            s.cmd, s.cmd_due = b, self.frames + self.cmd_frames
        elif a == 0x02:
            s.ir &= ~b  # write 1 to clear
        elif a not in (0x03, 0x20, 0x21, 0x22, 0x23, 0x26, 0x27, 0x2A, 0x2B):
            s.regs[a] = b

    # ----- commands and state -----
    def _command(self, s, cmd):
        mode = s.regs[0] & 0x0F
        if cmd == OPEN:
            self._closed(s, 0, abort=True)
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
            self._listen(s)
        elif cmd == CONNECT and s.status == INIT:
            self._connect(s)
        elif cmd == DISCON:
            self._discon(s)
        elif cmd == CLOSE:
            # No FIN: a connection not yet half-closed is dropped; the peer's next segment
            # meets no socket and gets RST (datasheet 4.2, Sn_CR CLOSE).
            self._closed(s, 0, abort=s.status not in FIN_SENT)
        elif cmd == SEND:
            self._send(s)
        # RECV: nothing to do, Sn_RX_RD is read from the register file.

    def _listen(self, s):
        port = s.reg16(0x04)
        if port not in self._listeners:
            ls = socket.socket()
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((LOCALHOST, self.host_port(port)))
            ls.listen(8)
            ls.setblocking(False)
            self._listeners[port] = ls
        s.port = port
        s.listen_at = time.monotonic()
        s.status = LISTEN

    def _unlisten(self, s):
        """s leaves LISTEN. The chip has no backlog: when no socket listens on the port any
        more, SYNs get RST. Closing the host listener does that, and resets connections
        the host kernel had queued (each a SYN the chip would have refused)."""
        port, s.port = s.port, None
        if port is None:
            return
        if not any(o.status == LISTEN and o.port == port for o in self.sockets if o is not s):
            ls = self._listeners.pop(port, None)
            if ls is not None:
                ls.close()

    def _discon(self, s):
        """Sn_CR DISCON (datasheet 4.2): FIN to the peer. From ESTABLISHED the socket goes
        to FIN_WAIT (CLOSING if the peer's FIN crossed ours), then TIME_WAIT once the
        peer's FIN is in, then CLOSED; from CLOSE_WAIT (the peer closed first) to LAST_ACK,
        then CLOSED when our FIN is acknowledged."""
        if s.status in (ESTABLISHED, CLOSE_WAIT) and s.conn is not None:
            self._flush(s)
            try:
                s.conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if s.status == CLOSE_WAIT:
                self._enter(s, LAST_ACK)
            elif self._peer_fin_waiting(s):
                s.peer_fin = True
                s.ir |= IR_DISCON
                self._enter(s, CLOSING)
            else:
                s.status = FIN_WAIT
        elif s.status in (LISTEN, SYNRECV, INIT):
            self._closed(s, IR_DISCON, abort=True)
        elif s.status != UDP and s.status not in FIN_SENT:
            self._closed(s, IR_DISCON)

    def _peer_fin_waiting(self, s):
        """True when the peer's FIN is all that is left to read on the host connection."""
        try:
            return s.conn.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return False

    def _enter(self, s, status):
        """Move to status; transient states move on after transit_frames SPI frames."""
        if status == CLOSED:
            self._closed(s, IR_DISCON)
            return
        s.status = status
        if status == SYNRECV:
            s.next = (ESTABLISHED, self.frames + self.transit_frames)
        elif status == ESTABLISHED:
            s.ir |= IR_CON
        elif status == CLOSING:
            s.next = (TIME_WAIT, self.frames + self.transit_frames)
        elif status in (TIME_WAIT, LAST_ACK):
            s.next = (CLOSED, self.frames + self.transit_frames)

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
            if abort and s.status != UDP:
                try:  # RST, as a peer that has vanished looks to the client
                    s.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      b"\x01\x00\x00\x00\x00\x00\x00\x00")
                except OSError:
                    pass
            s.conn.close()
            s.conn = None
        self._unlisten(s)
        s.pending = b""
        s.next = None
        s.peer_fin = False
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
                conn, (ip, port) = self._listeners[s.port].accept()
            except OSError:
                return
            conn.setblocking(False)
            # A small kernel buffer, so a peer that stops reading stalls TX soon, as on
            # the chip (2 KB TX buffer, no more).
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            s.conn = conn
            s.regs[0x0C:0x10] = bytes(int(x) for x in ip.split("."))
            s.set16(0x10, port)
            self._unlisten(s)  # SYN taken: this socket no longer listens
            self._enter(s, SYNRECV)
            return
        if s.status == UDP:
            self._pump_udp(s)
            return
        self._flush(s)
        if s.status not in (ESTABLISHED, FIN_WAIT) or s.conn is None:
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
        if not data:  # FIN received
            s.peer_fin = True
            s.ir |= IR_DISCON
            if s.status == FIN_WAIT:
                self._enter(s, TIME_WAIT)
            else:
                s.status = CLOSE_WAIT
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


def install_driver_shims(sleep_scale=0.0, no_finalisers=True):
    """Patch only what makes CPython behave like the board: the driver's time.sleep (1 s in
    WIZNET5K.__init__, scaled by sleep_scale), its one-argument OSError(EAGAIN) (.errno is
    None on CPython, 11 on the board), and Socket.__del__ (never called on the board).
    The driver's gc.collect() (every send and socket allocation) runs for real: the board
    runs a full collection there too. Idempotent."""
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
    if isinstance(getattr(wiz, "gc", None), types.SimpleNamespace):  # an older shim's no-op
        import gc

        wiz.gc = sp.gc = gc
    if no_finalisers:
        # CircuitPython and MicroPython never call __del__ on Python classes, so a Socket
        # object the driver loses keeps its hardware socket reserved for good. CPython
        # would release the reservation when collecting it and hide the leak.
        sp.Socket.__del__ = lambda self: None
