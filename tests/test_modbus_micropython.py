"""The Modbus server shell under the real MicroPython binary (its socket module), polled by
mbpoll (libmodbus) and pymodbus on 127.0.0.1: the best evidence short of a board that the
shell is portable.
"""

import os
import re
import shutil
import socket
import struct
import subprocess

import pytest
from pymodbus import FramerType
from pymodbus.client import ModbusTcpClient

from support import mpy
from support.util import free_port, wait_port

MBPOLL = shutil.which("mbpoll") or "/usr/bin/mbpoll"


@pytest.fixture
def mpy_server():
    mpy.require()
    port = free_port()
    proc = mpy.start([os.path.join("tests", "mpy", "serve_modbus.py"), str(port), "60"])
    try:
        wait_port(port, timeout=15)
    except TimeoutError:
        proc.kill()
        raise AssertionError(proc.communicate()[0])
    yield port, proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_micropython_server_answers_mbpoll_and_pymodbus(mpy_server):
    port, proc = mpy_server
    out = subprocess.run([MBPOLL, "-m", "tcp", "-a", "1", "-r", "1", "-c", "50", "-t", "4",
                          "-1", "-q", "-p", str(port), "127.0.0.1"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stdout + out.stderr
    values = {int(k): int(v) for k, v in re.findall(r"\[(\d+)\]:\s+(\d+)", out.stdout)}
    assert values[2] == 1234 and values[10] == 5000 and values[16] == 2390
    assert values[21] << 16 | values[22] == 123456  # kWh, rounded down
    assert values[37] == 2026 and values[43] == 10 and values[50] == 1000
    for framer in (FramerType.SOCKET, FramerType.RTU):
        client = ModbusTcpClient("127.0.0.1", port=port, framer=framer, timeout=3)
        assert client.connect()
        assert client.read_input_registers(14, count=2, device_id=0).registers == [0, 2390]
        bad = client.read_holding_registers(101, count=2, device_id=1)  # past the map (102)
        assert bad.isError() and bad.exception_code == 2
        client.close()
    # Connect/disconnect cycles, some with a request, some silent, some reset.
    for i in range(100):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 2 == 0:
            s.sendall(struct.pack(">HHHBBHH", i, 0, 6, 1, 3, 14, 2))
            assert len(s.recv(13)) > 0
        elif i % 3 == 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    # Four clients at once, still served after all that.
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
    for i, s in enumerate(socks):
        s.sendall(struct.pack(">HHHBBHH", 500 + i, 0, 6, 1, 3, 14, 2))
    for i, s in enumerate(socks):
        assert s.recv(13) == struct.pack(">HHHBBBHH", 500 + i, 0, 7, 1, 3, 4, 0, 2390)
        s.close()
    # Writing 4242 to the scaling factor stops the script (mbpoll's FC16 write).
    out = subprocess.run([MBPOLL, "-m", "tcp", "-a", "1", "-r", "49", "-1", "-q", "-p",
                          str(port), "127.0.0.1", "0", "4242"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stdout + out.stderr
    text = proc.communicate(timeout=15)[0]
    assert proc.returncode == 0, text
    counters = dict(re.findall(r"(\w+) (\d+)", text.splitlines()[-1]))
    assert counters["errors"] == "0", text
    assert int(counters["accepted"]) >= 106, text
