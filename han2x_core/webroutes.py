"""Routes of the web server: the route table, access control, CSRF checks, dispatch.

Password: a session cookie from the login form, or HTTP Basic (any user name) for scripts;
every wrong one counts against the client's address (webguard.py). Changes only by POST:
forms carry a per-boot token and must come from our own origin; JSON posts must be
application/json (a cross-site form cannot send that without CORS). Every request must name
this device in its Host header (DNS rebinding). docs/web.md has the threat model.

Handlers live in modules imported for the request and dropped after it (release()); they
import nothing from here: what they need of the server comes as their first argument, the
Routes object (routes.page, routes.json, routes.same_origin, routes.csrf, ...).
"""

import json
import sys

from micropython import const

from han2x_core.webconn import STATUS, equal, file_chunks, pick_language

_SESSIONS = const(4)
_JSON = "application/json"
_HTML = "text/html; charset=utf-8"
# Pages: never cached, never framed by another site, only our own script and style.
_PAGE_HEADERS = ("Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                 "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'\r\n")
_STATIC = {"/static/app.js": ("app.js", "text/javascript"),
           "/static/style.css": ("style.css", "text/css")}

_LOCKED = const(1)  # needs the password also when web_protect is "settings"

# The route table, the one place a page or an endpoint is added: path -> (GET module, GET
# function, POST module, POST function, flags); None where the method is not allowed. A
# handler is function(routes, conn, request, ctx) in han2x_core.<module>. Every route is
# transient: its module, and the page and text modules that one imports, are loaded for the
# request and dropped after it (release()). HEAD is answered by the GET handler.
ROUTES = {  # type: dict  # (for mypy: the tuples mix str, None and int)
    "/": ("webstatus", "get", None, None, 0),
    "/diagnostics": ("webdiag", "get", None, None, 0),
    "/registers": ("webregs", "get", None, None, 0),
    "/settings": ("webget", "settings", "webforms", "post_settings", _LOCKED),
    "/login": ("webget", "login", "webforms", "post_login", 0),
    "/logout": (None, None, "webforms", "post_logout", _LOCKED),
    "/usb-write": (None, None, "webdrive", "post", _LOCKED),
    "/tariff": (None, None, "webtariffedit", "post", _LOCKED),
    "/api/status": ("webapi", "get_status", None, None, 0),
    "/api/history": ("webdata", "get_history", None, None, 0),
    "/api/registers": ("webdata", "get_registers", None, None, 0),
    "/api/frame": ("webdata", "get_frame", None, None, 0),
    "/api/settings": ("webdata", "get_settings", "webforms", "post_api_settings", _LOCKED),
    "/data.json": ("webdata", "get_data_json", None, None, 0),  # evcc (docs/integration.md)
}
# The web modules that stay loaded: the server's own (webguard holds the wrong-password
# counts). Every other web* module is a page, handler or helper of one request.
_RESIDENT = ("web", "webconn", "webroutes", "webguard")


def transient(key):
    """True for a sys.modules key that release() drops: every han2x_core web* module but
    the _RESIDENT ones, the page texts (i18n*) and the settings modules the forms and pages
    load (settings, settings_toml, settings_write, storage)."""
    if key[:11] != "han2x_core.":
        return False
    name = key[11:]
    return ((name[:3] == "web" and name not in _RESIDENT) or name[:4] == "i18n"
            or name in ("settings", "settings_toml", "settings_write", "storage"))


def release():
    """Forget the page, form, API and text modules once a request is answered (WebServer
    calls this when the last connection that used them closes): the next request loads them
    again from flash, and between requests their heap stays free for Modbus and the network."""
    import han2x_core

    i18n = sys.modules.get("han2x_core.i18n")
    if i18n is not None:
        i18n.close()  # its open text files
    for key in [key for key in sys.modules if transient(key)]:  # allocates (a short list)
        del sys.modules[key]
        try:
            delattr(han2x_core, key[11:])
        except Exception:  # not bound on the package
            pass


def _token():
    import os
    from binascii import hexlify

    return hexlify(os.urandom(16)).decode()


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
        net = self.app.network
        own = getattr(net, "hostname", None)
        if own and name in (own.lower(), own.lower() + ".local", net.ip):
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
        route = ROUTES.get(path)
        api = path[:5] == "/api/" or path == "/data.json"  # JSON: 401, never a redirect
        locked = self.password != "" and not authed and (
            self.protect == "all" or (route is not None and route[4] & _LOCKED))
        if locked and path != "/login":
            if api or method == "POST":
                web.respond(conn, 401, _JSON, '{"error": "password required"}',
                            'WWW-Authenticate: Basic realm="HAN2X", charset="UTF-8"\r\n')
            else:
                web.respond(conn, 303, "text/plain", "", "Location: /login?next=%s\r\n" % path)
            return
        at = 2 if method == "POST" else 0
        if route is None or route[at] is None:
            status = 404 if route is None else 405
            web.respond(conn, status, "text/plain", STATUS[status].lower() + "\n")
            return
        conn.transient = self.unload  # set first: an import that fails may have loaded some
        module = "han2x_core." + route[at]
        __import__(module)
        handler = getattr(sys.modules[module], route[at + 1])
        handler(self, conn, request, Ctx(self, lang, now_ms, authed))

    def too_many(self, conn):
        self.web.respond(conn, 429, "text/plain", "too many wrong passwords: wait %d s\n" %
                         self.retry_s, "Retry-After: %d\r\n" % self.retry_s)

    def page(self, conn, gen, status=200, headers=""):
        self.web.respond(conn, status, _HTML, gen, _PAGE_HEADERS + headers)

    def json(self, conn, data, status=200):
        self.web.respond(conn, status, _JSON, json.dumps(data), "Cache-Control: no-store\r\n")
