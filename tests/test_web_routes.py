"""The route table (webroutes.ROUTES, issue 13): each path and method reaches the handler the
table names, with the Routes object first; the protected paths refuse a client without the
password; and every module a request loaded is dropped once it is answered."""

import importlib
import inspect
import sys
import time

import pytest

from han2x_core import webroutes
from han2x_core.webconn import STATUS, Conn, Request
from support.webdevice import Device

PASSWORD = "right horse"
RESIDENT = ("han2x_core.web", "han2x_core.webconn", "han2x_core.webroutes",
            "han2x_core.webguard", "han2x_core.registers", "han2x_core.app")


def handlers():
    """(path, method, module, function) for every handler in the table."""
    for path, route in webroutes.ROUTES.items():
        for method, at in (("GET", 0), ("POST", 2)):
            if route[at] is not None:
                yield path, method, route[at], route[at + 1]


class _Web:
    """What Routes needs of the WebServer: its address and respond(); answers recorded."""
    host = "127.0.0.1"

    def __init__(self):
        self.answers = []

    def respond(self, conn, status, ctype, body, headers="", unread=False):
        self.answers.append((status, body))


def _request(method, path):
    raw = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % (method, path)).encode()
    return Request(memoryview(raw), len(raw))


@pytest.fixture
def routes(tmp_path):
    d = Device(tmp_path, modbus=False)
    d.close()  # its App and settings only; no thread runs
    web = _Web()
    return webroutes.Routes(web, d.app, None)


def test_every_handler_exists_and_takes_the_routes_first():
    for path, method, module, function in handlers():
        handler = getattr(importlib.import_module("han2x_core." + module), function)
        params = list(inspect.signature(handler).parameters)
        assert params == ["routes", "conn", "request", "ctx"], (path, method, params)
    webroutes.release()


def test_each_path_and_method_reaches_the_handler_the_table_names(routes, monkeypatch):
    calls = []
    for _path, _method, module, function in handlers():
        mod = importlib.import_module("han2x_core." + module)
        monkeypatch.setattr(mod, function, lambda *a, _n=(module, function): calls.append(
            (_n, a)))
    try:
        for path, method, module, function in handlers():
            for verb in (method, "HEAD") if method == "GET" else (method,):
                conn = Conn(None, ("127.0.0.1", 1), bytearray(16), 0)
                request = _request(verb, path)
                calls.clear()
                routes.handle(conn, request, 0)
                assert len(calls) == 1, (verb, path)
                name, args = calls[0]
                assert name == (module, function), (verb, path)
                assert args[0] is routes and args[1] is conn and args[2] is request
                assert args[3].app is routes.app and conn.transient
                assert conn.head == (verb == "HEAD")
        for path, route in webroutes.ROUTES.items():  # the other method: 405, no handler
            for verb, at in (("GET", 0), ("POST", 2)):
                if route[at] is None:
                    calls.clear()
                    routes.web.answers.clear()
                    routes.handle(Conn(None, "127.0.0.1", bytearray(16), 0),
                                  _request(verb, path), 0)
                    assert calls == [] and routes.web.answers == [
                        (405, "method not allowed\n")], (verb, path)
        routes.web.answers.clear()
        routes.handle(Conn(None, "127.0.0.1", bytearray(16), 0), _request("GET", "/nope"), 0)
        assert calls == [] and routes.web.answers == [(404, "not found\n")]
        assert STATUS[404] == "Not Found"  # the one status table names it for the status line
    finally:
        webroutes.release()


@pytest.fixture
def locked(tmp_path):
    d = Device(tmp_path, {"web_password": PASSWORD}, modbus=False)
    yield d
    d.close()


def test_protected_paths_refuse_without_the_password(locked):
    """web_protect "settings": the _LOCKED paths refuse (a page: to the login page; JSON and
    every POST: 401) and their handlers never run; with the password (HTTP Basic) the same
    request gets past the lock; the other paths answer anybody."""
    import base64

    auth = {"Authorization": "Basic " + base64.b64encode(b"x:" + PASSWORD.encode()).decode()}
    protected = [p for p, r in webroutes.ROUTES.items() if r[4] & webroutes._LOCKED]
    assert set(protected) == {"/settings", "/api/settings", "/logout", "/usb-write", "/tariff"}
    before = dict(locked.app.settings)
    for path in protected:
        route = webroutes.ROUTES[path]
        if route[0] is not None:
            status, headers, _b = locked.get(path)
            if path.startswith("/api/"):
                assert status == 401 and "basic" in headers["www-authenticate"].lower(), path
            else:
                assert status == 303 and headers["location"] == "/login?next=" + path, path
            assert locked.get(path, auth)[0] == 200, path
        status, _h, body = locked.post_form(path, {"web_password": "", "dhcp": "on"})
        assert status == 401 and b"password required" in body, path
        status = locked.post_form(path, {"web_password": ""}, auth)[0]
        assert status not in (401, 303), (path, status)  # past the lock (CSRF refuses it)
    assert locked.app.settings == before  # nothing a refused request sent was saved
    for path, route in webroutes.ROUTES.items():
        if route[0] is not None and path not in protected:
            assert locked.get(path)[0] == 200, path


def _wait_dropped(dev, loaded):
    """The modules of loaded still in sys.modules once the connection closed (3 s at most)."""
    deadline = time.monotonic() + 3
    while True:
        left = [m for m in loaded if m in sys.modules and m not in RESIDENT]
        left += [m for m in sys.modules if webroutes.transient(m) and m not in left]
        if (not left and not any(dev.web._conns)) or time.monotonic() > deadline:
            return left
        time.sleep(0.01)


def test_the_modules_a_request_loads_are_dropped_once_it_is_answered(tmp_path, monkeypatch):
    """Every route (GET, and a POST that each handler refuses) loads its handler's module
    (seen while it runs), and no web, text or settings module it loaded stays after the
    answer: the next request loads them again. The server's own modules stay."""
    dev = Device(tmp_path, modbus=False)
    seen = {}
    real_import = __import__

    def spy(name, *a, **k):  # what the dispatcher imports, and whether it is loaded then
        module = real_import(name, *a, **k)
        if name.startswith(("han2x_core.web", "han2x_core.i18n", "han2x_core.settings")):
            seen[name] = name in sys.modules
        return module

    monkeypatch.setattr("builtins.__import__", spy)
    try:
        dev.feed("aidon-6534-l2-elwiz-x077")
        for path, method, module, _function in handlers():
            seen.clear()
            if method == "GET":
                status = dev.get(path)[0]
            else:
                status = dev.post_form(path, {"csrf": "stale"})[0]
            assert status in (200, 303, 403, 404, 415), (method, path, status)
            assert seen.get("han2x_core." + module), (method, path, seen)
            assert _wait_dropped(dev, list(seen)) == [], (method, path)
            for name in RESIDENT:
                assert name in sys.modules, (method, path, name)
        assert dev.web.errors == 0, dev.web.last_error
    finally:
        dev.close()


def test_no_handler_imports_the_router():
    """The router imports its handlers (by name, per request), never the other way round:
    only web.py, which builds the Routes and calls release(), imports webroutes."""
    import ast
    import glob
    import os

    core = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "han2x_core")
    importers = set()
    for path in glob.glob(os.path.join(core, "*.py")):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + ["%s.%s" % (node.module, a.name)
                                               for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if "han2x_core.webroutes" in names:
                importers.add(os.path.basename(path))
    assert importers == {"web.py"}
