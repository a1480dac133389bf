"""Debian's mosquitto on 127.0.0.1 for the MQTT tests, and a small MQTT 3.1.1 subscriber
written from the specification, independent of han2x_core.mqtt_wire (so that an encoding
mistake of ours cannot hide behind the same mistake in the test)."""

import os
import socket
import struct
import subprocess
import tempfile
import threading
import time

from support.util import free_port, wait_port

MOSQUITTO = "/usr/sbin/mosquitto"


class Broker:
    """mosquitto on a free port (or `port`). users: {name: password} -> a password file
    and no anonymous login. log_lines() are mosquitto's log; connects() counts the TCP
    connections it accepted."""

    def __init__(self, port=None, users=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="han2x-mqtt-")
        os.chmod(self.dir, 0o755)  # run as root, mosquitto reads its files as 'mosquitto'
        self.log = os.path.join(self.dir, "mosquitto.log")
        open(self.log, "w").close()
        os.chmod(self.log, 0o666)  # run as root, mosquitto writes it as user 'mosquitto'
        conf = ["listener %d 127.0.0.1" % self.port, "log_dest file %s" % self.log,
                "log_type all", "persistence false"]
        if users:
            pw = os.path.join(self.dir, "passwd")
            for i, (name, password) in enumerate(users.items()):
                subprocess.run(["mosquitto_passwd", "-b"] + (["-c"] if i == 0 else [])
                               + [pw, name, password], check=True, capture_output=True)
            os.chmod(pw, 0o644)
            conf += ["allow_anonymous false", "password_file %s" % pw]
        else:
            conf.append("allow_anonymous true")
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_lines(self):
        try:
            with open(self.log) as f:
                return f.read().splitlines()
        except OSError:
            return []

    def logins(self):
        """CONNECTs the broker answered (accepted or refused)."""
        return sum(1 for line in self.log_lines() if "Sending CONNACK to" in line)


def _enc(text):
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack(">H", len(raw)) + raw


def _packet(first, body):
    n, out = len(body), bytearray([first])
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (128 if n else 0))
        if not n:
            return bytes(out) + body


class Subscriber:
    """Subscribes to `topics` (wildcards allowed) and keeps every PUBLISH as
    (topic, payload bytes, retain) in `messages`, in a thread."""

    def __init__(self, port, topics=("#",), user=None, password=None):
        self.messages = []
        self.lock = threading.Lock()
        self._buf = b""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        flags = 0x02 | (0x80 if user else 0) | (0x40 if password else 0)
        body = _enc("MQTT") + bytes([4, flags]) + struct.pack(">H", 60) + _enc(
            "test-sub-%d" % os.getpid())
        body += (_enc(user) if user else b"") + (_enc(password) if password else b"")
        self.sock.sendall(_packet(0x10, body))
        kind, body = self._read()
        assert kind == 0x20 and body[1] == 0, "subscriber refused: %r" % body
        payload = b"".join(_enc(t) + b"\x00" for t in topics)
        self.sock.sendall(_packet(0x82, b"\x00\x01" + payload))
        kind, body = self._read()
        assert kind == 0x90, kind
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _read(self):
        """The next packet (first byte, body). A recv timeout (0.2 s in the thread) keeps
        what came so far in _buf: a packet split across reads is never lost."""
        while True:
            packet = self._parse()
            if packet is not None:
                return packet
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("broker closed")
            self._buf += chunk

    def _parse(self):
        buf = self._buf
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(buf):
                return None
            byte = buf[i]
            length |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            if not byte & 0x80:
                break
        if len(buf) < i + length:
            return None
        self._buf = buf[i + length:]
        return buf[0], buf[i:i + length]

    def _run(self):
        while self.running:
            try:
                first, body = self._read()
            except socket.timeout:
                continue
            except (OSError, EOFError):
                return
            if first & 0xF0 == 0x30:
                n = struct.unpack(">H", body[:2])[0]
                topic = body[2:2 + n].decode()
                start = 2 + n + (2 if first & 0x06 else 0)
                with self.lock:
                    self.messages.append((topic, body[start:], bool(first & 1)))

    def publish(self, topic, payload, retain=False):
        self.sock.sendall(_packet(0x30 | (1 if retain else 0), _enc(topic) + payload))

    def take(self, topic_part=""):
        with self.lock:
            return [m for m in self.messages if topic_part in m[0]]

    def wait_for(self, pred, seconds=10.0):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                found = [m for m in self.messages if pred(m)]
            if found:
                return found
            time.sleep(0.02)
        raise AssertionError("no such message within %.0f s; got topics %s" % (
            seconds, sorted({m[0] for m in self.messages})))

    def close(self):
        self.running = False
        try:
            self.sock.sendall(b"\xe0\x00")
        except OSError:
            pass
        self.sock.close()
        self.thread.join(2)
