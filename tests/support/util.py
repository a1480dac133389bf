"""Helpers shared by tests: corpus loading, free ports, waiting for a TCP port."""

import json
import os
import socket
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("HAN2X_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
DATA = os.path.join(ROOT, "tests", "data")


def load_corpus():
    """The captured frames with their expected values (tests/data/frames.json)."""
    with open(os.path.join(DATA, "frames.json")) as f:
        return json.load(f)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def recv_exact(sock, n, timeout=5.0):
    """Exactly n bytes from a socket; ConnectionError when the peer closes first."""
    sock.settimeout(timeout)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed after %d bytes" % len(data))
        data += chunk
    return data


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    """Wait until something accepts TCP connections on host:port; raise on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("nothing listens on %s:%d" % (host, port))
