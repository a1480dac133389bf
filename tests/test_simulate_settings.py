"""tools/simulate.py --settings: the board's SettingsStore on the PC, so a setting changed
while running (here a scaling factor written over Modbus) survives a restart."""

import os
import signal
import socket
import struct
import subprocess
import sys

import pytest

from han2x_core import settings as S
from han2x_core.storage import SettingsStore
from support.modbus_frames import mbap
from support.util import ROOT, free_port, load_corpus, wait_port

pytestmark = pytest.mark.slow


def _request(port, pdu):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(mbap(1, 1, pdu))
        data = b""
        while len(data) < 7 or len(data) < 6 + struct.unpack(">H", data[4:6])[0]:
            chunk = s.recv(260)
            assert chunk
            data += chunk
    return data[7:]


def _start(tmp_path, settings_path, http_port=0, port=None):
    """The simulator with --modbus-port (a free port), or without it when `port` is given:
    then it listens where the settings file says, which must be `port`. http_port None:
    the file's web port too."""
    capture = tmp_path / "capture.txt"
    capture.write_text(load_corpus()[0]["hex"] + "\n")
    override = ["--modbus-port", str(free_port())] if port is None else []
    port = port or int(override[1])
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tools", "simulate.py"), "--replay", str(capture),
         "--quiet", "--settings", str(settings_path)] + override
        + ([] if http_port is None else ["--http-port", str(http_port)]),
        cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(port, 20)
    except TimeoutError:
        proc.kill()
        raise AssertionError(proc.communicate()[0])
    return proc, port


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=10)[0]


def test_scaling_written_over_modbus_survives_a_restart(tmp_path):
    path = tmp_path / "conf" / "settings.toml"
    proc, port = _start(tmp_path, path)
    try:
        assert _request(port, struct.pack(">BHH", 3, 48, 2)) == b"\x03\x04\x00\x00\x03\xe8"
        pdu = struct.pack(">BHHBHH", 0x10, 48, 2, 4, 0, 2500)
        assert _request(port, pdu)[:1] == b"\x10"
    finally:
        _stop(proc)
    saved, warning = SettingsStore(str(path)).load()
    assert warning is None
    # the command line's port is not saved: the file keeps the board's 502 (5020 on a PC)
    assert saved == dict(S.DEFAULTS, scaling_factor=2500)
    proc, port = _start(tmp_path, path)
    try:
        assert _request(port, struct.pack(">BHH", 3, 48, 2)) == b"\x03\x04\x00\x00\x09\xc4"
    finally:
        _stop(proc)


def test_command_line_ports_are_never_saved(tmp_path):
    """A run with --modbus-port and --http-port that saves (a scaling write), then a plain
    run: it listens on the file's ports, not on the last run's overrides."""
    path = tmp_path / "settings.toml"
    own, web = free_port(), free_port()
    path.write_text("modbus_port = %d\nweb_port = %d\n" % (own, web))
    proc, port = _start(tmp_path, path, http_port=free_port())
    assert port != own
    try:
        pdu = struct.pack(">BHHBHH", 0x10, 48, 2, 4, 0, 2500)
        assert _request(port, pdu)[:1] == b"\x10"
    finally:
        out = _stop(proc)
    saved, warning = SettingsStore(str(path)).load()
    assert warning is None and saved["scaling_factor"] == 2500, out
    assert (saved["modbus_port"], saved["web_port"]) == (own, web)
    proc, port = _start(tmp_path, path, http_port=None, port=own)
    try:
        assert _request(port, struct.pack(">BHH", 3, 48, 2)) == b"\x03\x04\x00\x00\x09\xc4"
        wait_port(web, 10)
    finally:
        _stop(proc)


def test_bad_settings_file_warns_and_uses_defaults(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text("scaling_factor = 5\nmodbus_unit_id = 1\n")
    proc, port = _start(tmp_path, path)
    try:
        assert _request(port, struct.pack(">BHH", 3, 48, 2)) == b"\x03\x04\x00\x00\x03\xe8"
    finally:
        out = _stop(proc)
    assert ("scaling_factor must be from 10 to 1000000 (1000 = x1, so 2500 means x2.5); "
            "using 1000") in out


def test_non_ascii_digits_warn_and_the_warning_reaches_the_page(tmp_path):
    """modbus_max_clients = "²" (str.isdigit() says yes, int() refuses) and a 5000-digit
    number (CPython's digit limit) once crashed the simulator; its load warning never
    reached /api/status, as it does on the board."""
    import json
    import urllib.request

    path = tmp_path / "settings.toml"
    path.write_text('modbus_max_clients = "\u00b2"\nmodbus_idle_timeout_s = %s\n' % ("9" * 5000))
    web = free_port()
    proc, port = _start(tmp_path, path, web)
    try:
        wait_port(web, 20)
        assert _request(port, struct.pack(">BHH", 3, 48, 2)) == b"\x03\x04\x00\x00\x03\xe8"
        with urllib.request.urlopen("http://127.0.0.1:%d/api/status" % web, timeout=5) as r:
            warning = json.loads(r.read())["device"]["settings_warning"]
    finally:
        out = _stop(proc)
    assert "modbus_max_clients must be a whole number" in warning, out
    assert "line 2: cannot read the value" in warning
