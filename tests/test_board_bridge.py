"""The emulator's SPI bridge (tests/support/board_emu.py `_Bridge`) on the PC, without node: the pipe
protocol run.mjs speaks, answered from the W5500 model, while host clients connect at once
(the busy moment of issue 11: 4 Modbus clients). Every read request must be answered; a
bridge that stops answering stops the emulated CPU (run.mjs waits in readSync), which is
what a stalled simulated clock looks like. Each answer is awaited with a bound, so a hang
fails here in seconds instead of stalling a board run for minutes."""

import os
import select
import socket
import struct
import threading

from support.board_emu import _Bridge
from support.util import free_port
from tools.sim.w5500_model import CMD_LISTEN, ESTABLISHED, LISTEN, MODE_TCP, OPEN, W5500Model

ANSWER_S = 5.0  # wall seconds for one answer (the bridge needs microseconds)


class Runner:
    """run.mjs's side of the pipes: requests out, answers in."""

    def __init__(self, model):
        req_r, self.req = os.pipe()
        self.resp, resp_w = os.pipe()
        self.bridge = _Bridge(model, req_r, resp_w)
        self.bridge.start()
        self.t = 0.0

    def _send(self, op, body):
        self.t += 1000.0
        os.write(self.req, op + struct.pack("<d", self.t) + body)

    def write(self, block, addr, data):
        hdr = struct.pack(">HB", addr, block << 3 | 4)
        self._send(b"W", struct.pack(">H", 3 + len(data)) + hdr + bytes(data))

    def read(self, block, addr, n=1):
        self._send(b"R", struct.pack(">HBH", addr, block << 3, n))
        out = b""
        while len(out) < n:
            ready, _, _ = select.select([self.resp], [], [], ANSWER_S)
            assert ready, ("the bridge left a read unanswered for %.0f s (error %r)"
                           % (ANSWER_S, self.bridge.error))
            part = os.read(self.resp, n - len(out))
            assert part, "the bridge closed the pipe: %r" % self.bridge.error
            out += part
        return out

    def close(self):
        os.close(self.req)
        self.bridge.join(5)
        os.close(self.resp)
        assert not self.bridge.is_alive()
        assert self.bridge.error is None, self.bridge.error


def sock_block(n):
    return n * 4 + 1  # socket n's register block


def test_four_clients_connecting_at_once_are_each_answered_through_the_bridge():
    port = free_port()
    model = W5500Model(port_map={502: port}, syn_delay_s=0)
    run = Runner(model)
    try:
        for n in range(4):  # four sockets LISTEN on 502, as the firmware's Modbus server
            run.write(sock_block(n), 0x00, [MODE_TCP])
            run.write(sock_block(n), 0x04, [502 >> 8, 502 & 0xFF])
            run.write(sock_block(n), 0x01, [OPEN])
            for _ in range(model.cmd_frames):
                run.read(sock_block(n), 0x03)
            run.write(sock_block(n), 0x01, [CMD_LISTEN])
            for _ in range(model.cmd_frames):
                run.read(sock_block(n), 0x03)
            assert run.read(sock_block(n), 0x03)[0] == LISTEN
        go = threading.Barrier(4)
        clients = []

        def connect():
            go.wait(5)
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(bytes.fromhex("000100000006010300000032"))  # read 50 holding regs
            clients.append(c)

        threads = [threading.Thread(target=connect) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(clients) == 4
        status = [0] * 4
        for _ in range(500):  # the driver's loop: Sn_SR, Sn_RX_RSR of every socket
            for n in range(4):
                status[n] = run.read(sock_block(n), 0x03)[0]
                run.read(sock_block(n), 0x26, 2)
            if status == [ESTABLISHED] * 4:
                break
        assert status == [ESTABLISHED] * 4
        for n in range(4):  # each request arrived whole in its socket's RX buffer
            rsr = int.from_bytes(run.read(sock_block(n), 0x26, 2), "big")
            assert rsr == 12
            assert run.read(n * 4 + 3, 0x0000, 256)[:12] == bytes.fromhex(
                "000100000006010300000032")
        for c in clients:
            c.close()
    finally:
        run.close()
        model.close()
