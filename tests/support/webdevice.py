"""A whole device in a thread for the web tests: App + Registers + SettingsStore + WebServer
(+ ModbusServer when it exists) on real sockets on 127.0.0.1, fed real corpus frames."""

import http.client
import re
import socket
import threading
import time

from han2x_core import FIRMWARE_VERSION
from han2x_core.app import App
from han2x_core.registers import Registers
from han2x_core.settings import DEFAULTS
from han2x_core.storage import SettingsStore
from han2x_core.web import WebServer
from support.util import free_port, load_corpus

CORPUS = load_corpus()


def frame(frame_id):
    for f in CORPUS:
        if f["id"] == frame_id:
            return f
    raise KeyError(frame_id)


def now_ms():
    return time.monotonic_ns() // 1_000_000 & (2**29 - 1)


class FeedHan:
    """Non-blocking HAN source: hands out queued bytes in chunks of up to 64."""

    def __init__(self):
        self.data = bytearray()
        self.lock = threading.Lock()

    def push(self, raw):
        with self.lock:
            self.data += raw

    def readinto(self, buf):
        with self.lock:
            n = min(64, len(buf), len(self.data))
            buf[:n] = self.data[:n]
            del self.data[:n]
        return n


class Device:
    """Runs app.step() in a background thread; records the slowest step."""

    def __init__(self, tmp_path, settings=None, modbus=True):
        s = dict(DEFAULTS)
        s["modbus_port"] = free_port()
        s["web_port"] = free_port()
        s.update(settings or {})
        self.path = str(tmp_path / "settings.toml")
        self.store = SettingsStore(self.path)
        self.store.save(s)
        s, _warning = self.store.load()
        self.han = FeedHan()
        self.regs = Registers(scaling=s["scaling_factor"], firmware_version=FIRMWARE_VERSION)
        self.app = App(self.han, self.regs, now_ms(), settings=s, store=self.store)
        self.web = WebServer(socket, self.app, port=s["web_port"])
        self.web.read_ms = 1000  # a half request gets its 408 after 1 s
        self.web.start("127.0.0.1")
        self.app.add(self.web)
        self.app.web = self.web
        self.modbus = None
        if modbus:
            from han2x_core.modbus_server import ModbusServer
            self.modbus = ModbusServer(socket, self.regs, port=s["modbus_port"])
            self.modbus.start("127.0.0.1")
            self.app.add(self.modbus)
            self.app.modbus = self.modbus
        self.app.configure(s)
        self.start_loop()

    def start_loop(self):
        """app.step() in a background thread, as the board's loop."""
        self.max_step_s = 0.0
        self._stop = False
        self._calls = []  # (fn, result holder, done Event): run between two steps
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def port(self):
        return self.web.port

    def _run(self):
        while not self._stop:
            t = time.monotonic()
            self.app.step(now_ms())
            self.max_step_s = max(self.max_step_s, time.monotonic() - t)
            while self._calls:
                fn, out, done = self._calls.pop(0)
                out.append(fn())
                done.set()
            time.sleep(0.001)

    def on_loop(self, fn, timeout=5):
        """fn() run on the device's loop thread between two steps, as the board (one thread)
        would: the firmware loads and drops modules (han2x_core.unload), which a second
        thread doing the same at once would race."""
        out, done = [], threading.Event()
        self._calls.append((fn, out, done))
        assert done.wait(timeout), "the device loop did not run the call"
        return out[0]

    def feed(self, *frame_ids, wait=True):
        before = self.app.hdlc.frames_ok
        for fid in frame_ids:
            self.han.push(bytes.fromhex(frame(fid)["hex"]))
        if wait:
            deadline = time.monotonic() + 5
            while self.app.hdlc.frames_ok < before + len(frame_ids):
                assert time.monotonic() < deadline, "frames not consumed"
                time.sleep(0.01)

    def close(self):
        self._stop = True
        self._thread.join(5)
        self.web.stop()
        if self.modbus is not None:
            self.modbus.stop()

    # ---- HTTP helpers ----
    def request(self, method, path, body=None, headers=None, port=None):
        """(status, headers dict lower-cased, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def csrf(self, headers=None):
        status, _h, body = self.get("/settings", headers)
        assert status == 200, status
        return re.search(rb'name="csrf" value="([0-9a-f]+)"', body).group(1).decode()

    def post_form(self, path, fields, headers=None):
        from urllib.parse import urlencode

        h = {"Content-Type": "application/x-www-form-urlencoded"}
        h.update(headers or {})
        body = fields if isinstance(fields, str) else urlencode(fields)
        return self.request("POST", path, body, h)

    def settings_form(self, **changes):
        """Every settings field as the browser would submit it, with changes applied."""
        fields = {}
        for key, value in self.app.settings.items():
            if key in ("web_password", "mqtt_password"):  # never on the page
                continue
            if isinstance(value, bool):
                if value:
                    fields[key] = "on"
                continue
            fields[key] = str(value)
        for key, value in changes.items():
            if value is None:
                fields.pop(key, None)
            else:
                fields[key] = value
        return fields

    def raw(self, data, read=True, timeout=5.0):
        """Send raw bytes on a fresh connection; return what the server answers."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            if not read:
                return b""
            out = b""
            while True:
                try:
                    piece = s.recv(4096)
                except (ConnectionResetError, socket.timeout):
                    break
                if not piece:
                    break
                out += piece
            return out
        finally:
            s.close()
