"""The web layer's own code on the MicroPython VM with a 192 KB heap: every page renders in
small pieces, the status JSON builds, forms decode, chunked framing is right.

Run in a fresh process by tests/test_web_vm.py (not by runner.py: after the other suites'
modules are loaded, compiling these from source does not fit a 64-bit VM's 192 KB heap).
Prints one line per test and "N passed, N failed"; exit status 1 on failure.
"""

import gc
import json
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
ROOT = HERE + "/../.."
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
for _arg in sys.argv[1:]:  # core=DIR: han2x_core compiled to .mpy there, as flash.py ships it
    if _arg.startswith("core="):
        sys.path.insert(0, _arg[5:])

from corpus import entries
from testrun import run
from han2x_core import FIRMWARE_VERSION
from han2x_core.app import App
from han2x_core.registers import Registers
from han2x_core.settings import DEFAULTS


class _Han:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def readinto(self, buf):
        n = min(len(buf), len(self.data) - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


def _app():
    raw = None
    for e in entries():
        if e["id"] == "aidon-6534-l2-elwiz-x077":
            raw = bytes.fromhex(e["hex"])
            break
    app = App(_Han(raw), Registers(firmware_version=FIRMWARE_VERSION), 0,
              settings=dict(DEFAULTS))
    app.usb_write = lambda: None  # the settings page shows the drive button
    app.step(10)
    assert app.hdlc.frames_ok == 1
    return app


class _Web:
    uptime_s = 5
    requests = 1
    errors = 0


def _ctx(app, lang="nb", password=""):
    from han2x_core.webroutes import Ctx

    class _Routes:
        pass

    routes = _Routes()
    routes.web = _Web()
    routes.app = app
    routes.csrf = "ab" * 16
    routes.password = password
    routes.www = ROOT + "/han2x_core/www"
    return Ctx(routes, lang, 20, False)


def test_every_page_renders_in_small_pieces_within_the_heap():
    """Each page streams in pieces of < 1.2 KB; after webroutes.release() the heap is back
    where it was (the page modules are dropped), page after page."""
    from han2x_core.webroutes import release

    app = _app()
    pages = (("dashboard", ()), ("diagnostics", ()), ("register_map", ()),
             ("login", ("/", "login_bad")), ("settings_page", (None, {"ip": "bad"}, "not_saved")))
    baseline = None
    for lang in ("nb", "en", "nb"):
        for name, args in pages:
            if name == "settings_page":
                from han2x_core import websettings as webpages
            elif name == "login":
                from han2x_core import webpages
            elif name == "dashboard":
                from han2x_core import webstatus as webpages
            elif name == "diagnostics":
                from han2x_core import webdiag as webpages
            else:
                from han2x_core import webregs as webpages

            ctx = _ctx(app, lang)
            gen = getattr(webpages, name)(ctx, *args)
            webpages = None
            total = 0
            biggest = 0
            usb = False
            for piece in gen:
                total += len(piece)
                biggest = max(biggest, len(piece))
                usb = usb or 'id="usb-write"' in piece
            gen = None
            ctx = None
            release()
            gc.collect()
            assert total > 1000, name
            assert biggest < 1200, (name, biggest)
            assert usb == (name == "settings_page"), name  # the drive button, settings only
            free = gc.mem_free()
            if baseline is None:
                baseline = free
            assert free > baseline - 2048, (name, lang, baseline, free)


def test_status_json_on_the_vm():
    from han2x_core import webapi, webdata

    app = _app()
    text = json.dumps(webapi.status(app, _Web(), 20))
    data = json.loads(text)
    assert data["reading"]["meter"] == "aidon"
    assert data["device"]["frames_ok"] == 1
    regs = webdata.registers(app)
    assert [r[0] for r in regs] == [o for o, _w in webdata.layout()]
    assert regs[0] == [0, app.latest["active_power_import_w"]] and regs[-1][0] == 100
    assert "".join(webdata.history_chunks(app, 20)).startswith('{"step_s": 10')


def test_form_decoding():
    from han2x_core.webforms import form_changes, parse_form

    form = parse_form(b"ip=10.0.0.9&web_password=p%C3%A6ss+word%21&dhcp=on&x=%41")
    assert form["web_password"] == "p\u00e6ss word!"
    assert form["x"] == "A"
    changes = form_changes(form)
    assert changes["dhcp"] is True and changes["ip"] == "10.0.0.9"
    for bad in (b"a=%zz", b"a=%4", b"\xff=1"):
        try:
            parse_form(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


class _Sock:
    def __init__(self):
        self.sent = bytearray()

    def send(self, data):
        n = min(len(data), 300)
        self.sent.extend(bytes(data[:n]))
        return n

    def settimeout(self, t):
        pass


def test_chunked_response_framing():
    from han2x_core.webconn import Conn

    c = Conn(_Sock(), None, bytearray(16), 0)
    pieces = ["a" * 100, "", "b" * 700, "\u00e6" * 10]
    c.respond(200, "text/plain", iter(pieces))
    while True:
        if c.pos >= len(c.out) and not c.refill():
            break
        c.send(None)
    raw = bytes(c.sock.sent)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding: chunked" in head
    out = b""
    while True:
        line, body = body.split(b"\r\n", 1)
        n = int(line, 16)
        if n == 0:
            break
        out += body[:n]
        body = body[n + 2:]
    assert out == "".join(pieces).encode()


def main():
    passed = failed = 0
    names = sorted(n for n in globals() if n.startswith("test_"))
    for name in names:
        if run(name, globals()[name], free=True):
            passed += 1
        else:
            failed += 1
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


main()
