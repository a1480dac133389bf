"""Settings and login forms: the form schema, urlencoded parsing, and the POST handlers.

Loaded only when a POST arrives (routed by webroutes.ROUTES) and dropped again afterwards.
Handlers take the Routes object as their first argument, `routes`. Nothing is saved unless
every field is valid (App.save_settings validates all, then persists).

A settings save on the board's heap (docs/web.md, "Saving settings"): the schema
(settings.py) is imported by App.save_settings for the save only, never held here, and the
settings page is not loaded for it. A good save answers 303 to /settings?saved=1 (the page
is shown by the browser's next request, after this one's modules are dropped); only a
refused save shows the page with the user's input, once the schema and this module are
dropped (_settings_page).
"""

import json

from micropython import const

from han2x_core import unload
from han2x_core.webconn import equal, local_path

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
    from han2x_core.webfields import FIELDS  # dropped before the save (post_settings)

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
    from han2x_core.settings import DEFAULTS  # dropped by the save (App.save_settings)

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
    try:
        _, out = _validate(merged)  # a port clash: webfields.PORT_CLASH (translated on the page)
    finally:
        unload("settings")
    out.update(errors)
    return out


def _validate(merged):
    from han2x_core.settings import validate

    return validate(merged)


def save(app, changes, errors):
    """{key: message}, {} = saved. With errors already (JSON keys that are not settings)
    nothing is saved and the rest is checked too; otherwise App.save_settings validates
    every field and saves only when all are valid."""
    return check(app, changes, errors) if errors else app.save_settings(changes)


def _settings_page(routes, conn, ctx, form, errors, notice, status, headers=""):
    """Answer with the settings page (form: the user's input, or None for the settings).
    The page is rendered chunk by chunk after this handler has returned: the schema and
    this module are dropped first, so that only the page's own modules are loaded then."""
    unload("settings_toml", "settings", "webforms")
    from han2x_core.websettings import settings_page

    routes.page(conn, settings_page(ctx, form, errors, notice), status, headers)


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
    form = read_form(routes, conn, request)
    if form is None:
        return
    if not routes.same_origin(request):
        _settings_page(routes, conn, ctx, None, {}, "bad_request", 403)
        return
    if not equal(form.get("csrf", ""), routes.csrf):
        _settings_page(routes, conn, ctx, form, {}, "expired", 403)
        return
    app = routes.app
    old = [app.settings.get(key) for key in NETWORK_KEYS]
    old_password = app.settings.get("web_password")
    changes = form_changes(form)
    unload("webfields")  # the form's table: its heap goes to the save
    errors = save(app, changes, {})
    del changes
    if errors:  # nothing saved: the page again with what the user typed and why
        _settings_page(routes, conn, ctx, form, errors, "not_saved", 422)
        return
    moved = old != [app.settings.get(key) for key in NETWORK_KEYS]
    cookie = ""
    if routes.password and routes.password != old_password:
        # whoever just set the password stays logged in
        cookie = "Set-Cookie: han2x=%s; Path=/; HttpOnly; SameSite=Strict\r\n" % (
            routes.new_session())
        ctx.authed = True
    if moved:  # show the new address here: a redirect would go to the old one
        _settings_page(routes, conn, ctx, None, {}, "moved", 200, cookie)
    else:  # Post/Redirect/Get: the page comes in the browser's next request
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

