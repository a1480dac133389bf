"""Settings and login forms: the form schema, urlencoded parsing, and the POST handlers.

Loaded only when a POST arrives (routed by webroutes.ROUTES) and dropped again afterwards.
Handlers take the Routes object as their first argument, `routes`. Nothing is saved unless
every field is valid (App.save_settings validates all, then persists).
"""

import json

from micropython import const

from han2x_core.settings import DEFAULTS, validate
from han2x_core.webconn import equal, local_path
from han2x_core.webfields import FIELDS

_MAX_FIELDS = const(40)
_JSON = "application/json"

NETWORK_KEYS = ("dhcp", "ip", "netmask", "gateway", "web_port", "hostname")


def url_decode(text):
    """Decode application/x-www-form-urlencoded text (+ and %XX). Raises ValueError."""
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    parts = text.split("%")
    out = bytearray(parts[0].encode())
    for part in parts[1:]:
        if len(part) < 2:
            raise ValueError("bad escape")
        out.append(int(part[:2], 16))
        out.extend(part[2:].encode())
    return bytes(out).decode("utf-8")


def parse_form(body):
    """A urlencoded body -> {name: value} (first value wins). Raises ValueError."""
    form = {}
    text = bytes(body).decode("utf-8")
    count = 0
    for pair in text.split("&"):
        if not pair:
            continue
        count += 1
        if count > _MAX_FIELDS:
            raise ValueError("too many fields")
        if "=" in pair:
            name, value = pair.split("=", 1)
        else:
            name, value = pair, ""
        name = url_decode(name)
        if name not in form:
            form[name] = url_decode(value)
    return form


def form_changes(form):
    """Settings changes from a submitted form (strings; settings.validate converts them).

    An absent checkbox means False; an empty password keeps the current one unless
    "<key>_clear" (web_password_clear, mqtt_password_clear) is ticked.
    """
    changes = {}  # type: dict
    for group in FIELDS:
        for key, kind, _choices in group[1]:
            if kind == "b":
                changes[key] = key in form
            elif kind == "p":  # web_password, mqtt_password: never shown on the page
                if form.get(key + "_clear"):
                    changes[key] = ""
                elif form.get(key):
                    changes[key] = form[key]
            elif key in form:
                changes[key] = form[key]
    return changes


def json_changes(data):
    """Settings changes from a JSON object (POST /api/settings) and {key: error} for keys
    that are not settings."""
    changes = {}
    errors = {}
    for key in data:
        if data[key] is None:
            errors[key] = "must not be null"
        elif key in DEFAULTS:
            changes[key] = data[key]
        else:
            errors[key] = "unknown setting"
    return changes, errors


def check(app, changes, errors):
    """Validate changes on top of the current settings without saving: {key: message} from
    settings.validate, errors, and a web port equal to the Modbus port (which would leave
    the page unreachable after a restart)."""
    merged = dict(app.settings)
    for key in changes:
        if key not in errors:
            merged[key] = changes[key]
    _, out = validate(merged)  # a port clash: webfields.PORT_CLASH (translated on the page)
    out.update(errors)
    return out


def save(app, changes, errors):
    """Check, then (only when all is valid) App.save_settings: {key: message}, {} = saved."""
    errors = check(app, changes, errors)
    return errors if errors else app.save_settings(changes)


def post_login(routes, conn, request, ctx):
    from han2x_core import webpages

    form = read_form(routes, conn, request)
    if form is None:
        return
    target = local_path(form.get("next"))
    if not (routes.same_origin(request) and equal(form.get("csrf", ""), routes.csrf)):
        routes.page(conn, webpages.login(ctx, target, "bad_request"), 403)
        return
    ok = routes.check_password(conn, form.get("password", ""), ctx.now_ms)
    if ok is None:
        routes.page(conn, webpages.login(ctx, target, "login_wait"), 429,
                    "Retry-After: %d\r\n" % routes.retry_s)
        return
    if not ok:
        routes.page(conn, webpages.login(ctx, target, "login_bad"), 401)
        return
    token = routes.new_session()
    routes.web.respond(conn, 303, "text/plain", "", "Location: %s\r\nSet-Cookie: han2x=%s; "
                       "Path=/; HttpOnly; SameSite=Strict\r\n" % (target, token))


def post_logout(routes, conn, request, ctx):
    form = read_form(routes, conn, request)
    if form is None:
        return
    if not (routes.same_origin(request) and equal(form.get("csrf", ""), routes.csrf)):
        routes.web.respond(conn, 403, "text/plain", "not logged out: reload the page and try "
                           "again\n")
        return
    token = request.cookie("han2x")
    if token in routes.sessions:
        routes.sessions.remove(token)  # this browser's session ends here, not only its cookie
    routes.web.respond(conn, 303, "text/plain", "", "Location: /\r\nSet-Cookie: han2x=; "
                       "Path=/; Max-Age=0\r\n")


def post_settings(routes, conn, request, ctx):
    from han2x_core import websettings

    form = read_form(routes, conn, request)
    if form is None:
        return
    if not routes.same_origin(request):
        routes.page(conn, websettings.settings_page(ctx, None, {}, "bad_request"), 403)
        return
    changes = form_changes(form)
    if not equal(form.get("csrf", ""), routes.csrf):
        routes.page(conn, websettings.settings_page(ctx, form, {}, "expired"), 403)
        return
    old = dict(routes.app.settings)
    errors = save(routes.app, changes, {})
    if errors:
        routes.page(conn, websettings.settings_page(ctx, form, errors, "not_saved"), 422)
        return
    moved = False
    for key in NETWORK_KEYS:
        if old.get(key) != routes.app.settings.get(key):
            moved = True
    cookie = ""
    if routes.password and routes.password != old.get("web_password"):
        # whoever just set the password stays logged in
        cookie = "Set-Cookie: han2x=%s; Path=/; HttpOnly; SameSite=Strict\r\n" % (
            routes.new_session())
        ctx.authed = True
    if moved:  # show the new address here: a redirect would go to the old one
        routes.page(conn, websettings.settings_page(ctx, None, {}, "moved"), 200, cookie)
    else:
        routes.web.respond(conn, 303, "text/plain", "", "Location: /settings?saved=1\r\n" +
                           cookie)


def post_api_settings(routes, conn, request, ctx):
    if request.content_type() != _JSON:
        routes.json(conn, {"error": "send application/json"}, 415)
        return
    if not routes.same_origin(request):
        routes.json(conn, {"error": "cross-origin request refused"}, 403)
        return
    try:
        data = json.loads(request.body)
    except Exception:
        data = None
    if not isinstance(data, dict):
        routes.json(conn, {"error": "body must be a JSON object"}, 400)
        return
    changes, errors = json_changes(data)
    errors = save(routes.app, changes, errors)
    if errors:
        routes.json(conn, {"saved": False, "errors": errors}, 422)
        return
    from han2x_core.webdata import public_settings

    routes.json(conn, {"saved": True, "settings": public_settings(routes.app.settings)})


def read_form(routes, conn, request):
    if request.content_type() != "application/x-www-form-urlencoded":
        routes.web.respond(conn, 415, "text/plain", "send a form\n")
        return None
    try:
        return parse_form(request.body)
    except Exception:
        routes.web.respond(conn, 400, "text/plain", "malformed form\n")
        return None

