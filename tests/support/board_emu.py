"""The real CircuitPython 10.2.1 on an emulated RP2040 (rp2040js, tests/rp2040/run.mjs), with
the project's W5500 model (tools/sim/w5500_model.py) on the board's SPI pins and the HAN line
driven at 2400 baud in simulated time.

    with Board("wiznet_w5500_evb_pico", tmp_path) as dev:
        dev.wait_for("HAN2X address", 60)
        dev.send_han([frame_hex], "8E1")
        ... pymodbus on dev.port(502), a browser on dev.port(80) ...
    dev.read_file("settings.toml")          # the drive as the firmware left it

The drive is what `tools/flash.py --mpy-cross` installs. The images, bootrom and mpy-cross
come from $HAN2X_CIRCUITPYTHON_DIR, else ../shared/circuitpython/ from the project root
(where a user gets the same files: docs/architecture.md, "The board emulator").
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

from han2x_core import board_io
from support.util import ROOT, SHARED, free_port
from tools.sim.w5500_model import W5500Model

CP_VERSION = "10.2.1"
CP_DIR = os.environ.get("HAN2X_CIRCUITPYTHON_DIR", os.path.join(SHARED, "circuitpython"))
RUNNER = os.path.join(ROOT, "tests", "rp2040", "run.mjs")
MENV = dict(os.environ, MTOOLS_SKIP_CHECK="1")
# GPIO numbers of the pin names board_io.PROFILES uses (CircuitPython's board definitions).
GPIO = {
    "wiznet_w5500_evb_pico": {"GP%d" % n: n for n in range(30)},
    "adafruit_feather_rp2040": {"RX": 1, "D5": 7, "D10": 10, "SCK": 18, "MOSI": 19, "MISO": 20},
}
BOARD_NAMES = {"wiznet_w5500_evb_pico": "WIZnet W5500-EVB-Pico",
               "adafruit_feather_rp2040": "Adafruit Feather RP2040"}


def cp_file(name):
    """A file of the CircuitPython folder; a clear failure when it is missing."""
    path = os.path.join(CP_DIR, name)
    if not os.path.exists(path):
        raise FileNotFoundError("%s missing: set HAN2X_CIRCUITPYTHON_DIR to the folder with "
                                "CircuitPython %s's UF2 images, mpy-cross and the RP2040 "
                                "bootrom (docs/architecture.md)" % (path, CP_VERSION))
    return path


def mpy_cross():
    return cp_file("mpy-cross-%s-linux-x86_64" % CP_VERSION)


def build_drive(board, folder, settings=None, files=None, code=None, pre_code=None):
    """A 1 MiB FAT12 CIRCUITPY image (folder/drive.img) holding what flash.py installs.

    settings: settings.toml text; files: {path on the drive: bytes or str}; code: a
    replacement code.py; pre_code: lines run before code.py's own (heap probes).
    Returns the image path."""
    tree = os.path.join(folder, "CIRCUITPY")
    os.makedirs(tree)
    with open(os.path.join(tree, "boot_out.txt"), "w") as f:  # what flash.py checks
        f.write("Adafruit CircuitPython %s on 2026-11-30; %s with rp2040\nBoard ID:%s\n"
                % (CP_VERSION, BOARD_NAMES[board], board))
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "flash.py"), "--target", tree,
                    "--mpy-cross", mpy_cross()], check=True, capture_output=True, cwd=ROOT)
    os.remove(os.path.join(tree, "boot_out.txt"))  # CircuitPython writes its own
    extra = dict(files or {})
    if settings is not None:
        extra["settings.toml"] = settings
    if code is not None or pre_code is not None:
        if code is None:
            with open(os.path.join(tree, "code.py")) as f:
                code = f.read()
        extra["code.py"] = (pre_code + "\n" if pre_code else "") + code
    for rel, data in extra.items():
        path = os.path.join(tree, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    image = os.path.join(folder, "drive.img")
    subprocess.run(["mkfs.fat", "-C", "-F", "12", "-S", "512", "-n", "CIRCUITPY", image,
                    "1024"], check=True, capture_output=True)
    names = [os.path.join(tree, n) for n in sorted(os.listdir(tree))]
    subprocess.run(["mcopy", "-s", "-i", image] + names + ["::/"], check=True,
                   capture_output=True, env=MENV)
    return image


def read_drive_file(image, rel):
    """A file's bytes from a FAT image (mtools), None when it is not there."""
    p = subprocess.run(["mtype", "-i", image, "::/" + rel], capture_output=True, env=MENV)
    return p.stdout if p.returncode == 0 else None


class _Bridge(threading.Thread):
    """Answers the runner's SPI requests (run.mjs, fd 4 -> fd 3) from one W5500Model."""

    def __init__(self, model, req_fd, resp_fd):
        super().__init__(daemon=True)
        self.model = model
        self.req = os.fdopen(req_fd, "rb", buffering=65536)
        self.resp = resp_fd
        self.sim_ns = 0.0  # simulated time of the last SPI request
        self.error = None
        self.state = "waiting for a request"  # what it does now: a stalled clock's first clue

    def _read(self, n):
        data = self.req.read(n)
        if len(data) < n:
            raise EOFError
        return data

    def run(self):
        m = self.model
        try:
            while True:
                self.state = "waiting for a request"
                op = self._read(9)
                self.state = "answering %r (node waits for an answer)" % op[:1]
                self.sim_ns = struct.unpack_from("<d", op, 1)[0]
                if op[:1] == b"W":
                    frame = self._read(int.from_bytes(self._read(2), "big"))
                    m._select(True)
                    m._mosi(frame)
                    m._select(False)
                elif op[:1] == b"R":
                    head = self._read(5)
                    m._select(True)
                    m._mosi(head[:3])
                    os.write(self.resp, m._miso(int.from_bytes(head[3:], "big")))
                elif op[:1] == b"C":
                    os.write(self.resp, m._miso(int.from_bytes(self._read(2), "big")))
                else:
                    raise ValueError("bad bridge request %r" % op[:1])
        except EOFError:
            pass
        except Exception as e:  # reported by Board.close(); the runner then stops too
            self.error = e
        finally:
            self.state = "stopped (%r)" % self.error
            os.close(self.resp)
            self.req.close()



class Board:
    """One emulated board running the drive's code.py; a context manager that always stops
    node and frees the ports. `invert`: the HAN line's polarity from power-up (idle low)."""

    def __init__(self, board, folder, settings=None, files=None, code=None, pre_code=None,
                 invert=False, timeout=1800):
        if not os.path.isdir(os.path.join(os.path.dirname(RUNNER), "node_modules", "rp2040js")):
            raise FileNotFoundError("rp2040js is not installed: `make test` installs it (or "
                                    "`npm ci` in tests/rp2040)")
        prof = board_io.PROFILES[board]
        gpio = GPIO[board]
        self.board = board
        self.folder = str(folder)
        self.invert = invert
        self.han_gpio = gpio[prof["han_rx"]]
        sck = gpio[prof["spi"][0]]
        self.ports = {502: free_port(), 80: free_port()}
        self.model = W5500Model(port_map=self.ports)
        self.image = build_drive(board, self.folder, settings, files, code, pre_code)
        self.drive_out = os.path.join(self.folder, "drive-out.img")
        self.console = ""
        self.sim_ns = 0.0
        self.han_done = {}  # burst id -> simulated ns of its end
        self.exit = None
        self.stats = {}  # the runner's counters: SPI bytes, PIO clocks
        self._stats_at = time.monotonic()  # node reports every 200 ms unless it is blocked
        self._han_id = 0
        self._lock = threading.Lock()
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        inputs = "%d:%d,%d:1" % (self.han_gpio, not invert, gpio[prof["button"]])
        self._stderr = open(os.path.join(self.folder, "node.stderr"), "w+")
        self.proc = subprocess.Popen(
            ["node", RUNNER, "--uf2=" + cp_file("%s-%s.uf2" % (board, CP_VERSION)),
             "--bootrom=" + cp_file("rp2040-bootrom-b1.bin"), "--drive=" + self.image,
             "--drive-out=" + self.drive_out, "--spi=%d" % (sck >> 3 & 1),
             "--cs=%d" % gpio[prof["w5500_cs"]], "--inputs=" + inputs,
             "--fds=%d,%d" % (resp_r, req_w), "--timeout=%d" % timeout],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            pass_fds=(resp_r, req_w), text=True, encoding="latin-1")
        os.close(resp_r)
        os.close(req_w)
        self.bridge = _Bridge(self.model, req_r, resp_w)
        self.bridge.start()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self._lock:
                self.sim_ns = max(self.sim_ns, msg.get("t", 0))
                if "c" in msg:
                    self.console += msg["c"]
                elif msg.get("ev") == "han":
                    self.han_done[msg["id"]] = msg["t"]
                elif msg.get("ev") == "exit":
                    self.exit = msg["why"]
                elif "spi" in msg:
                    self.stats = msg
                    self._stats_at = time.monotonic()

    # ----- what a test reads -----
    @property
    def sim_s(self):
        """Simulated seconds since power-up (to the microsecond while SPI is busy)."""
        return max(self.sim_ns, self.bridge.sim_ns) / 1e9

    @property
    def cpu_s(self):
        """CPU seconds the runner (node) has used so far; None where /proc does not tell (not
        Linux, or it has stopped). Unlike wall time it does not grow with the machine's load."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def port(self, device_port):
        """The 127.0.0.1 port where the device's TCP port is served."""
        return self.model.host_port(device_port)

    def tail(self, n=3000):
        self._stderr.seek(0)
        err = self._stderr.read()[-n:]
        return ("--- console (last %d) ---\n%s\n--- runner %s (%.0f s ago); node %s; bridge %s; "
                "node stderr ---\n%s" % (n, self.console[-n:], self.stats,
                                          time.monotonic() - self._stats_at, self._node_state(),
                                          self.bridge.state, err))

    def _node_state(self):
        """What node does now, from /proc (Linux): its state letter and the kernel function
        it waits in, e.g. "S pipe_read" (a runner that stopped reporting: blocked on a pipe,
        or only starved by the machine when it is "R")."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open("/proc/%d/wchan" % self.proc.pid) as f:
                return "%s %s" % (state, f.read().strip() or "-")
        except OSError:
            return "?"

    def wait_for(self, text, timeout, since=0):
        """Wall seconds to wait until `text` is on the console (after offset `since`);
        returns the offset just past it."""
        deadline = self.deadline(timeout)
        while True:
            i = self.console.find(text, since)
            if i >= 0:
                return i + len(text)
            if self.proc.poll() is not None or deadline():
                raise AssertionError("%r not on the console after %.0f s wall (%.1f s "
                                     "simulated)%s\n%s" % (text, timeout, self.sim_s,
                                                           self._gone(), self.tail()))
            time.sleep(0.05)

    def deadline(self, timeout):
        """A function that is true once `timeout` wall seconds have passed, not counting the
        time node spent waiting for the disk (state D: its pages were evicted by the machine,
        which stalled it for minutes on a loaded machine). A runner that is blocked in any
        other way, or busy, or a board that does nothing, still runs out of time."""
        left = [timeout, time.monotonic()]

        def over():
            now = time.monotonic()
            if not self._node_state().startswith("D"):
                left[0] -= now - left[1]
            left[1] = now
            return left[0] < 0
        return over

    def _gone(self):
        return "; the runner stopped: %s" % self.exit if self.proc.poll() is not None else ""

    # ----- what a test does -----
    def send_han(self, frames, line="8E1", invert=None, gap_ms=500, baud=2400, delay_ms=50):
        """Queue HAN frames (hex strings) on the line after whatever is queued; returns an
        id for wait_han. invert None: the polarity the board started with."""
        self._han_id += 1
        self._send({"cmd": "han", "id": self._han_id, "frames": list(frames), "format": line,
                    "invert": self.invert if invert is None else invert, "baud": baud,
                    "gap_ms": gap_ms, "delay_ms": delay_ms})
        return self._han_id

    def wait_han(self, burst, timeout):
        """Wait until a burst's last bit (and its gap) went out; its simulated seconds."""
        deadline = self.deadline(timeout)
        while burst not in self.han_done:
            if self.proc.poll() is not None or deadline():
                raise AssertionError("HAN burst %d not sent after %.0f s wall%s\n%s"
                                     % (burst, timeout, self._gone(), self.tail()))
            time.sleep(0.05)
        return self.han_done[burst] / 1e9

    def type(self, text):
        """Characters typed on the serial console (\\x03 is Ctrl-C)."""
        self._send({"cmd": "type", "text": text})

    def reset(self):
        """Press the reset button: the chip starts again (flash, nvm and the drive kept; the
        W5500 is not reset by it). microcontroller.reset() and the watchdog do the same."""
        self._send({"cmd": "reset"})

    def _send(self, msg):
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # the runner is gone; wait_for/wait_han say so

    def close(self):
        """Stop node (the drive is dumped for read_file), free the model's sockets."""
        if self.proc.poll() is None:
            self._send({"cmd": "quit"})
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self.bridge.join(5)
        self._reader.join(5)
        self.model.close()
        self._stderr.close()
        if self.bridge.error is not None:
            raise AssertionError("W5500 bridge failed: %r" % self.bridge.error)

    def read_file(self, rel):
        """A file from the drive as the firmware left it (after close()); None if absent."""
        if not os.path.exists(self.drive_out):
            raise AssertionError("no drive dump: the runner did not stop cleanly")
        return read_drive_file(self.drive_out, rel)


def temp_board(board, **kw):
    """A Board in its own temporary folder (removed on close), for benchmarks."""
    folder = tempfile.mkdtemp(prefix="han2x-board-")
    dev = Board(board, folder, **kw)
    close = dev.close

    def close_and_remove():
        try:
            close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    dev.close = close_and_remove
    return dev
