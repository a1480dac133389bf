"""The settings page's "open the drive for a firmware update" button (han2x_core/webdrive.py)
over real sockets on 127.0.0.1: shown only when the device has App.usb_write, refused
without the form token, from another origin or without the password, and on success the
answer page is sent completely before the board is restarted (Conn.after)."""

import re
import select
import socket
import time
from urllib.parse import urlencode

import pytest

from han2x_core import board_io
from han2x_core.storage import READ_ONLY_MESSAGE
from support.webdevice import Device


@pytest.fixture
def dev(tmp_path):
    d = Device(tmp_path, modbus=False)
    yield d
    d.close()


class Board:
    """microcontroller for board_io.usb_write_hook: reset() records what the client could
    read at that instant (so a test can tell the answer was sent before the restart)."""

    def __init__(self, client=None):
        self.client = client
        self.resets = []

    def reset(self):
        seen = b""
        if self.client is not None and select.select([self.client], [], [], 0)[0]:
            seen = self.client.recv(1 << 20, socket.MSG_PEEK)
        self.resets.append(seen)


def post_raw(dev, fields, headers=""):
    body = urlencode(fields)
    return ("POST /usb-write HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n%s\r\n%s"
            % (dev.port, len(body), headers, body)).encode()


def read_all(sock):
    out = b""
    while True:
        piece = sock.recv(4096)
        if not piece:
            return out
        out += piece


def wait_until(fn, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_button_is_shown_only_when_the_device_has_the_hook(dev, tmp_path):
    page = dev.get("/settings")[2].decode()
    assert 'action="/usb-write"' not in page
    assert dev.post_form("/usb-write", {"csrf": dev.csrf()})[0] == 404
    dev.app.usb_write = board_io.usb_write_hook(Board(), str(tmp_path / "usb_write.txt"))
    page = dev.get("/settings")[2].decode()
    form = re.search(r'<form method="post" action="/usb-write" id="usb">.*?</form>', page).group(0)
    assert 'name="csrf" value="%s"' % dev.csrf() in form
    assert "Open the drive for a firmware update</button>" in form
    assert "Modbus and this page stop for a few seconds" in form
    assert page.index('id="save"') < page.index('id="usb"')  # not inside the settings form
    page = dev.get("/settings", {"Accept-Language": "nb-NO"})[2].decode()
    assert "Åpne stasjonen for fastvareoppdatering</button>" in page
    assert dev.get("/usb-write")[0] == 405
    assert not (tmp_path / "usb_write.txt").exists()  # showing it wrote nothing


def test_a_good_post_gets_its_whole_page_before_the_restart(dev, tmp_path):
    marker = tmp_path / "usb_write.txt"
    token = dev.csrf()
    client = socket.create_connection(("127.0.0.1", dev.port), timeout=5)
    try:
        board = Board(client)
        dev.app.usb_write = board_io.usb_write_hook(board, str(marker))
        client.sendall(post_raw(dev, {"csrf": token}, "Origin: http://127.0.0.1:%d\r\n"
                                % dev.port))
        wait_until(lambda: board.resets)
        answer = read_all(client)
    finally:
        client.close()
    assert marker.read_text() == "once\n"
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"</html>\r\n0\r\n\r\n")  # the last chunk of the page
    assert b'<p class="ok" id="usb-answer">The device restarts now.' in answer
    assert board.resets == [answer]  # the client had all of it when the board restarted
    time.sleep(0.2)
    assert len(board.resets) == 1  # once
    assert dev.get("/settings")[0] == 200  # (on the board, the restart ends it here)


def test_refused_without_token_from_another_origin_or_by_form(dev, tmp_path):
    calls = []
    dev.app.usb_write = lambda: calls.append(1) or (lambda: calls.append(2))
    token = dev.csrf()
    status, _h, body = dev.post_form("/usb-write", {})
    assert status == 403 and b"The page was out of date" in body
    assert dev.post_form("/usb-write", {"csrf": "0" * 32})[0] == 403
    for headers in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/x"}):
        status, _h, body = dev.post_form("/usb-write", {"csrf": token}, headers)
        assert status == 403 and b"Refused: the form did not come from" in body, headers
    assert dev.request("POST", "/usb-write", '{"csrf": "%s"}' % token,
                       {"Content-Type": "application/json"})[0] == 415
    time.sleep(0.1)
    assert calls == []


def test_the_password_protects_it(dev):
    calls = []
    dev.app.usb_write = lambda: calls.append(1) or (lambda: calls.append(2))
    assert dev.on_loop(lambda: dev.app.save_settings({"web_password": "pw-123"})) == {}
    token = dev.web.routes.csrf  # the settings page, where it stands, needs the password
    status, headers, _b = dev.post_form("/usb-write", {"csrf": token})
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    assert b'id="usb"' not in dev.get("/settings")[2]  # the login page instead
    time.sleep(0.1)
    assert calls == []
    auth = {"Authorization": "Basic YWRtaW46cHctMTIz"}  # admin:pw-123
    status, _h, body = dev.post_form("/usb-write", {"csrf": token}, auth)
    assert status == 200 and b"The device restarts now." in body
    wait_until(lambda: calls == [1, 2])


def test_a_failed_write_is_shown_and_nothing_restarts(dev, tmp_path):
    board = Board()
    marker = tmp_path / "no-such-folder" / "usb_write.txt"
    dev.app.usb_write = board_io.usb_write_hook(board, str(marker))
    status, _h, body = dev.post_form("/usb-write", {"csrf": dev.csrf()})
    text = body.decode()
    assert status == 500
    assert '<p class="bad" id="usb-answer">Could not open the drive; nothing was changed: ' \
        in text
    assert "No such file or directory" in text
    time.sleep(0.2)
    assert board.resets == [] and not marker.exists()
    page = dev.get("/settings", {"Accept-Language": "nb"})[2].decode()
    assert 'id="usb-write"' in page  # the button stays for another try

    def disk_full():
        raise OSError(28, "No space left on device")

    dev.app.usb_write = disk_full
    body = dev.post_form("/usb-write", {"csrf": dev.csrf()}, {"Accept-Language": "nb"})[2]
    assert "Kunne ikke åpne stasjonen; ingenting ble endret: [Errno 28] No space" in \
        body.decode()


def test_a_drive_open_for_the_computer_says_so_instead(dev):
    calls = []
    dev.app.usb_write = lambda: calls.append(1) or (lambda: calls.append(2))
    dev.app.settings_warning = "A line was wrong. " + READ_ONLY_MESSAGE
    token = dev.csrf()
    page = dev.get("/settings")[2].decode()
    assert 'id="usb-write"' not in page
    assert '<p class="note" id="usb-open">The CIRCUITPY drive is open for a computer' in page
    status, _h, body = dev.post_form("/usb-write", {"csrf": token})
    assert status == 200 and b'id="usb-answer">The CIRCUITPY drive is open' in body
    time.sleep(0.1)
    assert calls == []
