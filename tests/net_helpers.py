"""Shared by the network tests and the soak: a ms clock, a bounded poll loop, an echo
server over any socket pool, and a Network booted on the W5500 model."""

import errno
import time

from w5500_model import W5500Model, install_driver_shims

install_driver_shims()

UID = b"\xe6\x61\x41\x04\x03\x5c\x2b\x27"  # an RP2040 flash unique id, 8 bytes


def now_ms():
    return time.monotonic_ns() // 1_000_000 & (2**29 - 1)


def run(parts, seconds, until=None, sleep=0.001):
    """Poll every part until `until()` is true or `seconds` pass; returns until()'s last
    value (True when there is no condition). Records the slowest poll in run.max_poll_s."""
    deadline = time.monotonic() + seconds
    run.max_poll_s = 0.0
    while time.monotonic() < deadline:
        for part in parts:
            t = time.monotonic()
            part.poll(now_ms())
            run.max_poll_s = max(run.max_poll_s, time.monotonic() - t)
        if until is not None and until():
            return True
        time.sleep(sleep)
    return until() if until is not None else True


def make_network(model=None, settings=None, **kw):
    """A Network on a fresh model (ports 502 and 80 mapped to free host ports)."""
    from han2x_core.network import Network
    from util import free_port

    if model is None:
        model = W5500Model(port_map={502: free_port(), 80: free_port(), 503: free_port()})
    lines = []
    kw.setdefault("dhcp_retry_ms", 300)
    kw.setdefault("apply_delay_ms", 200)
    net = Network(model.spi, model.cs, uid=UID, settings=settings, log=lines.append, **kw)
    net.lines = lines
    return model, net


class EchoService:
    """A tiny non-blocking TCP echo server in the shape of our servers: start(host),
    stop(), poll(now_ms). Handles the wiznet pool's quirks like ModbusServer must."""

    def __init__(self, pool, port):
        self.pool, self.port = pool, port
        self.listener = None
        self.clients = []
        self.starts = 0
        self.buf = bytearray(256)

    def start(self, host):
        self.starts += 1
        s = self.pool.socket(self.pool.AF_INET, self.pool.SOCK_STREAM)
        try:
            s.bind((host, self.port))
            s.listen(1)
        except Exception:
            s.close()
            raise
        s.settimeout(0)
        self.listener = s

    def stop(self):
        for c in self.clients + ([self.listener] if self.listener else []):
            try:
                c.close()
            except Exception:
                pass
        self.clients, self.listener = [], None

    def poll(self, now_ms):
        if self.listener is None:
            return
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(0)
            self.clients.append(conn)
        except OSError as e:
            if e.args[0] != errno.EAGAIN:
                raise
        except RuntimeError:  # "All sockets in use."
            pass
        for c in list(self.clients):
            try:
                n = c.recv_into(self.buf)
            except OSError as e:
                if e.args[0] == errno.EAGAIN:
                    continue
                n = 0
            except Exception:
                n = 0
            if n:
                c.settimeout(1.0)  # never send with timeout 0/None on wiznet
                c.send(self.buf[:n])
                c.settimeout(0)
            else:
                self.clients.remove(c)
                c.close()
