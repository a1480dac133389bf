"""Routes of the web server: access control, CSRF checks, settings saving, dispatch.

Password: a session cookie from the login form, or HTTP Basic (any user name) for scripts;
every wrong one counts against the client's address (webguard.py). Changes only by POST:
forms carry a per-boot token and must come from our own origin; JSON posts must be
application/json (a cross-site form cannot send that without CORS). Every request must name
this device in its Host header (DNS rebinding). docs/web.md has the threat model.
"""

import json

from micropython import const

from han2x_core import webapi
from han2x_core.webconn import file_chunks, pick_language

_SESSIONS = const(4)
_JSON = "application/json"
_HTML = "text/html; charset=utf-8"
# Pages: never cached, never framed by another site, only our own script and style.
_PAGE_HEADERS = ("Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                 "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'\r\n")
_POST_PATHS = ("/login", "/logout", "/settings", "/api/settings", "/usb-write", "/tariff")
_STATIC = {"/static/app.js": ("app.js", "text/javascript"),
           "/static/style.css": ("style.css", "text/css")}


# Loaded for a page or a form post, then dropped again (see release()).
_TRANSIENT = ("webpages", "webfmt", "webstatus", "webdiag", "webregs", "websettings",
              "webforms", "webfields", "webdrive", "webtariff", "webtariffedit",
              "i18n", "settings", "settings_toml")


def release():
    """Forget the page, form and text modules once a page is sent (WebServer calls this when
    the last connection that used them closes): the next page loads them again from flash,
    and between page views their ~30 KB of heap stay free for Modbus and the network."""
    import sys

    import han2x_core

    i18n = sys.modules.get("han2x_core.i18n")
    if i18n is not None:
        i18n.close()  # its open text files
    for name in _TRANSIENT:
        if sys.modules.pop("han2x_core." + name, None) is not None:
            try:
                delattr(han2x_core, name)
            except Exception:  # not bound on the package
                pass


def _token():
    import os
    from binascii import hexlify

    return hexlify(os.urandom(16)).decode()


def equal(a, b):
    """Compare a presented string a with the secret b in a time that depends only on b's
    length: every character of b is read, whatever a is."""
    n = len(a)
    diff = n ^ len(b)
    for i in range(len(b)):
        diff |= (ord(a[i]) if i < n else 0x110000) ^ ord(b[i])
    return diff == 0


def host_name(host):
    """The name in a Host header, lower case, without its port and final dot; None when it
    is not one."""
    name = host.strip().lower()
    i = name.rfind(":")
    if i >= 0 and name[-1:] != "]":
        port = name[i + 1:]
        if not port or port.strip("0123456789"):
            return None
        name = name[:i]
    if name[-1:] == ".":
        name = name[:-1]
    return name or None


def local_path(target):
    """Where to go after logging in: a path on this device, never another site."""
    if not target or target[:1] != "/" or target[:2] == "//" or "\\" in target:
        return "/"
    for c in target:
        if ord(c) < 33 or ord(c) > 126:  # no header injection, no spaces
            return "/"
    return target


class Ctx:
    """What a page needs: the app, the server, language, time and whether logged in."""

    def __init__(self, routes, lang, now_ms, authed):
        self.routes = routes
        self.web = routes.web
        self.app = routes.app
        self.lang = lang
        self.now_ms = now_ms
        self.authed = authed
        self.csrf = routes.csrf


class Routes:
    def __init__(self, web, app, www_path):
        if www_path is None:
            www_path = __file__.rsplit("/", 1)[0] + "/www"
        self.web = web
        self.app = app
        self.www = www_path
        self.csrf = _token()  # per boot
        self.password = ""
        self.protect = "settings"
        self.language = "auto"
        self.unload = True  # release() after each page (saves heap on the board)
        self.sessions = []
        self.guard = None  # webguard.Guard, made when a password is first presented
        self.retry_s = 0
        self.configure(app.settings)

    def configure(self, settings):
        # None: settings.toml holds a password that cannot be read (settings_toml.from_text):
        # the protected pages stay locked, no password opens them.
        password = settings.get("web_password", "")
        if password != self.password:
            self.sessions = []  # a new password logs everybody out
        self.password = password
        self.protect = settings.get("web_protect", "settings")
        self.language = settings.get("language", "auto")

    # -- access --------------------------------------------------------------------------
    def authorised(self, conn, request, now_ms):
        """True or False; None when the request's Basic password is not looked at because
        its address must wait (webguard)."""
        if self.password == "":
            return True
        cookie = request.cookie("han2x")
        if cookie:
            for token in self.sessions:
                if equal(cookie, token):
                    return True
        auth = request.header("authorization")
        if auth and auth[:6] == "Basic ":
            try:
                from binascii import a2b_base64

                pair = a2b_base64(auth[6:]).decode()
            except Exception:
                pair = ""
            return self.check_password(conn, pair.split(":", 1)[1] if ":" in pair else pair,
                                       now_ms)
        return False

    def check_password(self, conn, password, now_ms):
        """True or False for a presented password, counted per client address; None while
        the address must wait (self.retry_s seconds)."""
        from han2x_core.webguard import check

        return check(self, conn, password, now_ms)

    def host_ok(self, conn, request):
        """The Host header names this device: its address (the listener's, the network's
        or, on a PC listening on all addresses, the connection's), its host name (also
        .local), or localhost. Anything else is a DNS-rebinding page (docs/web.md). No Host
        at all (an HTTP/1.0 script) is not a browser: answered."""
        host = request.header("host")
        if host is None:
            return True
        name = host_name(host)
        if name is None:
            return False
        if name in ("localhost", "127.0.0.1", self.web.host):
            return True
        for part in self.app.services:
            own = getattr(part, "hostname", None)
            if own and name in (own.lower(), own.lower() + ".local", part.ip):
                return True
        try:  # CPython; the W5500 pool listens on the network's address (above)
            return name == conn.sock.getsockname()[0]
        except Exception:
            return False

    def same_origin(self, request):
        """Origin (or else Referer), when the browser sends one, must be this host."""
        host = request.header("host")
        origin = request.header("origin")
        if origin is not None:
            return host is not None and origin == "http://" + host
        referer = request.header("referer")
        if referer is not None:
            base = "http://" + str(host)
            return host is not None and (referer == base or referer[:len(base) + 1] == base + "/")
        return True

    def new_session(self):
        """A new session token (the oldest of _SESSIONS is forgotten)."""
        token = _token()
        self.sessions.append(token)
        if len(self.sessions) > _SESSIONS:
            self.sessions.pop(0)
        return token

    # -- dispatch ------------------------------------------------------------------------
    def handle(self, conn, request, now_ms):
        web = self.web
        method = request.method
        path = request.path
        head = method == "HEAD"
        conn.head = head
        if method not in ("GET", "HEAD", "POST"):
            web.respond(conn, 405, "text/plain", "method not allowed\n", "Allow: GET, POST\r\n")
            return
        if not self.host_ok(conn, request):
            web.respond(conn, 421, "text/plain", "this device answers only to its own address "
                        "or host name\n")
            return
        static = _STATIC.get(path)
        if static is not None and method != "POST":
            headers = "Cache-Control: max-age=86400\r\n"
            web.respond(conn, 200, static[1], file_chunks(self.www + "/" + static[0]), headers)
            return
        lang = pick_language(self.language, request.header("accept-language"))
        authed = self.authorised(conn, request, now_ms)
        if authed is None:
            self.too_many(conn)
            return
        ctx = Ctx(self, lang, now_ms, authed)
        api = path[:5] == "/api/" or path == "/data.json"  # JSON: 401, never a redirect
        locked = self.password != "" and not authed and (self.protect == "all" or path in (
            "/settings", "/api/settings", "/logout", "/usb-write", "/tariff"))
        if locked and path != "/login":
            if api or method == "POST":
                web.respond(conn, 401, _JSON, '{"error": "password required"}',
                            'WWW-Authenticate: Basic realm="HAN2X", charset="UTF-8"\r\n')
            else:
                web.respond(conn, 303, "text/plain", "", "Location: /login?next=%s\r\n" % path)
            return
        if method == "POST" and path in _POST_PATHS:
            from han2x_core.webforms import POST

            POST[path](self, conn, request, ctx)
            conn.transient = self.unload
            return
        handler = None if method == "POST" else self._get.get(path)
        if handler is None:
            allowed = path in _POST_PATHS or path in self._get
            status = 405 if allowed else 404
            web.respond(conn, status, "text/plain", STATUS_TEXT[status])
            return
        handler(self, conn, request, ctx)
        conn.transient = self.unload and not api

    def too_many(self, conn):
        self.web.respond(conn, 429, "text/plain", "too many wrong passwords: wait %d s\n" %
                         self.retry_s, "Retry-After: %d\r\n" % self.retry_s)

    def page(self, conn, gen, status=200, headers=""):
        self.web.respond(conn, status, _HTML, gen, _PAGE_HEADERS + headers)

    def json(self, conn, data, status=200):
        self.web.respond(conn, status, _JSON, json.dumps(data), "Cache-Control: no-store\r\n")

    # -- GET -----------------------------------------------------------------------------
    def _page_dashboard(self, conn, request, ctx):
        from han2x_core import webstatus

        self.page(conn, webstatus.dashboard(ctx))

    def _page_diag(self, conn, request, ctx):
        from han2x_core import webdiag

        self.page(conn, webdiag.diagnostics(ctx))

    def _page_registers(self, conn, request, ctx):
        from han2x_core import webregs

        self.page(conn, webregs.register_map(ctx))

    def _page_settings(self, conn, request, ctx):
        from han2x_core import websettings

        saved = request.arg("saved") is not None
        self.page(conn, websettings.settings_page(ctx, None, {}, "saved" if saved else None))

    def _page_login(self, conn, request, ctx):
        from han2x_core import webpages

        self.page(conn, webpages.login(ctx, local_path(request.arg("next")), None))

    def _api_status(self, conn, request, ctx):
        self.json(conn, webapi.status(self.app, self.web, ctx.now_ms))

    def _api_history(self, conn, request, ctx):
        self.web.respond(conn, 200, _JSON, webapi.history_chunks(self.app, ctx.now_ms),
                         "Cache-Control: no-store\r\n")

    def _api_registers(self, conn, request, ctx):
        self.json(conn, {"registers": webapi.registers(self.app)})

    def _api_frame(self, conn, request, ctx):
        from binascii import hexlify

        age = self.app.data_age_ms(ctx.now_ms)
        self.json(conn, {"hex": hexlify(self.app.last_frame).decode(),
                         "age_s": None if age is None else age // 1000})

    def _data_json(self, conn, request, ctx):  # evcc's amsleser template (docs/integration.md)
        self.json(conn, webapi.data_json(self.app))

    def _api_settings(self, conn, request, ctx):
        self.json(conn, webapi.public_settings(self.app.settings))

    _get = {
        "/": _page_dashboard,
        "/settings": _page_settings,
        "/diagnostics": _page_diag,
        "/registers": _page_registers,
        "/login": _page_login,
        "/api/status": _api_status,
        "/api/history": _api_history,
        "/api/registers": _api_registers,
        "/api/frame": _api_frame,
        "/api/settings": _api_settings,
        "/data.json": _data_json,
    }


STATUS_TEXT = {404: "not found\n", 405: "method not allowed\n"}
