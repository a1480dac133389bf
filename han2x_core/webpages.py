"""HTML pages as generators of small string pieces (sent chunked, never one big string).

Values are rendered once on the server and then refreshed by www/app.js from the JSON API;
fmt() here and fmt() in app.js format identically (integer arithmetic).
"""

from han2x_core import __version__, webapi
from han2x_core.i18n import tr

NA = "\u2013"
_NAV = (("/", "nav_dash", "dash"), ("/settings", "nav_settings", "settings"),
        ("/diagnostics", "nav_diag", "diag"), ("/registers", "nav_regs", "regs"))


def esc(value):
    """Text safe inside HTML content and double-quoted attributes."""
    return (str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def fmt(f, v):
    """Format a value for display; the same rules as fmt() in www/app.js."""
    if v is None or v == "":
        return NA
    if f == "make":  # aidon -> Aidon
        return v[:1].upper() + v[1:]
    if f == "clock":
        return "%04d-%02d-%02d %02d:%02d:%02d" % (v["year"], v["month"], v["day"], v["hour"],
                                                   v["minute"], v["second"])
    if f == "uptime":
        return "%d d %02d:%02d:%02d" % (v // 86400, v // 3600 % 24, v // 60 % 60, v % 60)
    if f == "temp":
        return "%.1f \u00b0C" % v
    if f in ("w", "var", "kwh", "kvarh", "mem"):
        return "%d %s" % (v, {"w": "W", "var": "VAr", "kwh": "kWh", "kvarh": "kVArh",
                              "mem": "B"}[f])
    if f in ("ma", "dv", "wh", "varh"):
        sign = "-" if v < 0 else ""
        a = -v if v < 0 else v
        if f == "ma":
            return "%s%d.%02d A" % (sign, a // 1000, a % 1000 // 10)
        if f == "dv":
            return "%s%d.%d V" % (sign, a // 10, a % 10)
        return "%s%d.%03d %s" % (sign, a // 1000, a % 1000, "kWh" if f == "wh" else "kVArh")
    return str(v)


def _val(tag, key, f, value, extra=""):
    return '<%s data-k="%s" data-f="%s"%s>%s</%s>' % (tag, key, f, extra, esc(fmt(f, value)), tag)


def layout(ctx, page, title_key, body):
    lang = ctx.lang
    yield ('<!doctype html><html lang="%s"><head><meta charset="utf-8">'
           '<meta name="viewport" content="width=device-width,initial-scale=1">'
           '<title>HAN2X - %s</title><link rel="stylesheet" href="/static/style.css?v=%s">'
           '</head><body data-page="%s" data-na="%s" data-ago="%s"><header><b>HAN2X</b><nav>'
           % (lang, esc(tr(title_key, lang)), __version__, page, NA, esc(tr("ago", lang))))
    for href, key, name in _NAV:
        yield '<a href="%s"%s>%s</a>' % (href, ' class="on"' if name == page else "",
                                         esc(tr(key, lang)))
    routes = ctx.routes
    if routes.password and ctx.authed:
        yield ('<form method="post" action="/logout"><input type="hidden" name="csrf" '
               'value="%s"><button id="logout">%s</button></form>'
               % (ctx.csrf, esc(tr("nav_logout", lang))))
    elif routes.password:
        yield '<a href="/login" id="login">%s</a>' % esc(tr("nav_login", lang))
    yield "</nav></header><main>"
    for piece in body:
        yield piece
    yield ('</main><footer>HAN2X open firmware %s</footer><script src="/static/app.js?v=%s">'
           '</script></body></html>' % (__version__, __version__))


def dashboard(ctx):
    return layout(ctx, "dash", "nav_dash", _dashboard(ctx))


def _dashboard(ctx):
    lang = ctx.lang
    app = ctx.app
    r = webapi.reading(app, ctx.now_ms)
    g = r.get
    yield '<section class="cards"><div class="card"><h2>%s</h2><dl>' % esc(tr("meter", lang))
    for key, label, f in (("meter", "meter", "make"), ("meter_type", "meter_type", "s"),
                          ("meter_id", "meter_id", "s"), ("list", "list", "s"),
                          ("meter_clock", "meter_clock", "clock"),
                          ("age_s", "last_telegram", "age")):
        value = g(key)
        if f == "age" and value is not None:
            text = "%d %s" % (value, tr("ago", lang))
        else:
            text = fmt(f, value)
        yield '<dt>%s</dt><dd data-k="%s" data-f="%s">%s</dd>' % (
            esc(tr(label, lang)), key, f, esc(text))
    yield "</dl>"
    state = webapi.han_state(app, ctx.now_ms)
    for name in ("silent", "garbled", "unknown", "stale"):  # app.js shows the one in force
        yield '<p class="warn" data-han="%s"%s>%s</p>' % (
            name, "" if name == state else " hidden", esc(tr("han_" + name, lang)))
    yield "</div>"
    yield '<div class="card"><h2>%s</h2><div class="big">' % esc(tr("power", lang))
    for key, label, f in (("active_power_import_w", "import", "w"),
                          ("active_power_export_w", "export", "w")):
        yield "<div><span>%s</span>%s</div>" % (esc(tr(label, lang)), _val("b", key, f, g(key)))
    yield "</div><dl>"
    for key, label in (("reactive_power_import_var", "import"),
                       ("reactive_power_export_var", "export")):
        yield "<dt>%s %s</dt>%s" % (esc(tr("reactive", lang)), esc(tr(label, lang).lower()),
                                    _val("dd", key, "var", g(key)))
    yield '</dl></div><div class="card"><h2>%s</h2><table><tr><th></th>' % esc(
        tr("phases", lang))
    yield "<th>L1</th><th>L2</th><th>L3</th></tr>"
    for label, stem, f in (("current", "current_l%d_ma", "ma"),
                           ("voltage", "voltage_l%d_dv", "dv")):
        yield "<tr><th>%s</th>" % esc(tr(label, lang))
        for n in (1, 2, 3):
            yield _val("td", stem % n, f, g(stem % n))
        yield "</tr>"
    est = webapi.estimated(app)
    yield ('</table></div><div class="card span2"><h2>%s</h2><table><tr><th></th><th>%s</th>'
           '<th>%s *</th></tr>' % (esc(tr("energy", lang)), esc(tr("measured", lang)),
                                    esc(tr("estimated", lang))))
    for label, kind, key, f in (("import", "active", "active_energy_import_wh", "wh"),
                                ("export", "active", "active_energy_export_wh", "wh"),
                                ("import", "reactive", "reactive_energy_import_varh", "varh"),
                                ("export", "reactive", "reactive_energy_export_varh", "varh")):
        yield "<tr><th>%s %s</th>%s%s</tr>" % (
            esc(tr(kind, lang)), esc(tr(label, lang).lower()), _val("td", key, f, g(key)),
            _val("td", "est." + key, f, est[key], ' class="est"'))
    yield '</table><p class="note">* %s</p></div>' % esc(tr("est_note", lang))
    yield ('<div class="card wide"><h2>%s</h2><canvas id="chart" width="720" height="220">'
           '</canvas><p class="legend"><i class="imp"></i>%s <i class="exp"></i>%s</p></div>'
           '</section>' % (esc(tr("chart", lang)), esc(tr("import", lang)),
                           esc(tr("export", lang))))


_DIAG = (("han_bytes", "n"), ("han_line_errors", "n"), ("frames_ok", "n"),
         ("hcs_errors", "n"), ("fcs_errors", "n"),
         ("discarded_bytes", "n"), ("decode_errors", "n"), ("line_format", "s"),
         ("uptime_s", "uptime"), ("temperature_c", "temp"), ("firmware", "s"),
         ("modbus_clients", "n"), ("modbus_requests", "n"), ("free_memory", "mem"),
         ("ip", "s"), ("web_requests", "n"), ("last_error", "s"))


def diagnostics(ctx):
    return layout(ctx, "diag", "nav_diag", _diagnostics(ctx))


def _diagnostics(ctx):
    from binascii import hexlify

    lang = ctx.lang
    dev = webapi.device(ctx.app, ctx.web, ctx.now_ms)
    yield '<section class="card"><h2>%s</h2><dl>' % esc(tr("nav_diag", lang))
    for key, f in _DIAG:
        label = {"uptime_s": "uptime", "temperature_c": "temperature", "ip": "ip_now"}.get(key,
                                                                                         key)
        yield "<dt>%s</dt>%s" % (esc(tr(label, lang)), _val("dd", "dev." + key, f, dev[key]))
    yield '</dl></section><section class="card"><h2>%s</h2><p class="note">%s</p>' % (
        esc(tr("last_frame", lang)), esc(tr("frame_hint", lang)))
    yield '<pre id="frame">%s</pre></section>' % hexlify(ctx.app.last_frame).decode()


def register_map(ctx):
    return layout(ctx, "regs", "nav_regs", _register_map(ctx))


def _register_rows(path):
    """(offset, words, English, Norwegian, unit) per line of www/registers.txt, streamed from
    flash so the table costs no heap."""
    with open(path) as f:
        while True:
            line = f.readline()
            if not line:
                break
            if line[0] != "#" and line.strip():
                p = line.rstrip("\r\n").split("|")
                yield int(p[0]), int(p[1]), p[2], p[3], p[4]


def _register_map(ctx):
    lang = ctx.lang
    yield '<section class="card wide"><h2>%s</h2><p class="note">%s</p>' % (
        esc(tr("nav_regs", lang)), esc(tr("regs_note", lang)))
    yield '<table id="regs"><tr><th>%s</th><th>%s</th><th>%s</th><th>%s</th><th>%s</th></tr>' % (
        esc(tr("address", lang)), esc(tr("offset", lang)), esc(tr("name", lang)),
        esc(tr("unit", lang)), esc(tr("value", lang)))
    buf = bytearray(4)
    regs = ctx.app.registers
    for offset, words, en, nb, unit in _register_rows(ctx.routes.www + "/registers.txt"):
        last = offset + words - 1
        addr = "%d" % (40001 + offset) if words == 1 else "%d-%d" % (40001 + offset,
                                                                     40001 + last)
        off = "%d" % offset if words == 1 else "%d-%d" % (offset, last)
        value = webapi.read_register(regs, offset, words, buf)
        yield '<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td data-r="%d">%s</td></tr>' % (
            addr, off, esc(nb if lang == "nb" else en), esc(unit), offset,
            NA if value is None else value)
    yield "</table></section>"


def settings_page(ctx, form, errors, notice):
    return layout(ctx, "settings", "nav_settings", _settings(ctx, form, errors, notice))


def _error_text(key, message, lang):
    from han2x_core import webfields

    if lang != "nb":
        return message
    return tr("e_port_clash" if message == webfields.PORT_CLASH else webfields.error_key(key),
              lang)


def _settings(ctx, form, errors, notice):
    from han2x_core.webfields import FIELDS

    lang = ctx.lang
    app = ctx.app
    current = app.settings
    if notice == "saved" or notice == "moved":
        yield '<p class="ok" id="notice">%s</p>' % esc(tr("saved", lang))
    if notice == "moved":
        if current.get("dhcp"):
            net = webapi.service_with(app, "hostname")
            name = current.get("hostname") or getattr(net, "hostname", "") or "han2x"
            yield '<p class="ok" id="moved">%s <b>%s</b></p>' % (esc(tr("moved_dhcp", lang)),
                                                                   esc(name))
        else:
            port = current.get("web_port", 80)
            url = "http://%s%s/" % (current.get("ip"), "" if port == 80 else ":%d" % port)
            yield '<p class="ok" id="moved">%s <a href="%s">%s</a></p>' % (
                esc(tr("moved", lang)), esc(url), esc(url))
    elif notice in ("not_saved", "expired", "bad_request"):
        yield '<p class="bad" id="notice">%s</p>' % esc(tr(notice, lang))
    if "_store" in errors or app.settings_warning:
        yield '<p class="bad" id="store">%s %s</p>' % (
            esc(tr("store_err", lang)), esc(errors.get("_store") or app.settings_warning))
    yield '<form method="post" action="/settings" id="settings" novalidate>'
    yield '<input type="hidden" name="csrf" value="%s">' % ctx.csrf
    for group, fields in FIELDS:
        yield '<fieldset><legend>%s</legend>' % esc(tr(group, lang))
        net = webapi.service_with(app, "hostname") if group == "net" else None
        if net is not None and getattr(net, "ip", None):
            yield '<p class="note" id="addr-now">%s: %s (%s), %s</p>' % (
                esc(tr("addr_now", lang)), esc(net.ip), esc(getattr(net, "mode", "")),
                esc(net.hostname))
        for key, kind, choices in fields:
            if form is not None and kind != "b":
                value = form.get(key, "")
            elif form is not None:
                value = key in form
            else:
                value = current.get(key, "")
            yield '<div class="f"><label for="%s">%s</label>' % (key, esc(tr(key, lang)))
            if kind == "b":
                yield '<input type="checkbox" id="%s" name="%s"%s>' % (
                    key, key, " checked" if value else "")
            elif kind == "c":
                yield '<select id="%s" name="%s">' % (key, key)
                for option in choices:
                    label = tr("o_" + option, lang) if ("o_" + option) in _OPTION_KEYS else option
                    yield '<option value="%s"%s>%s</option>' % (
                        option, " selected" if option == value else "", esc(label))
                yield "</select>"
            elif kind == "p":
                yield ('<input type="password" id="%s" name="%s" autocomplete="new-password" '
                       'placeholder="%s"><label class="inline"><input type="checkbox" '
                       'name="web_password_clear" id="web_password_clear"> %s</label>'
                       '<small>%s</small>' % (key, key, esc(tr("keep_pw", lang)),
                                              esc(tr("clear_pw", lang)), esc(tr("pw_hint", lang))))
            else:
                yield '<input id="%s" name="%s" value="%s"%s>' % (
                    key, key, esc(value), ' inputmode="numeric"' if kind == "i" else "")
            message = errors.get(key)
            yield '<span class="err" id="err-%s">%s</span></div>' % (
                key, esc(_error_text(key, message, lang)) if message else "")
        yield "</fieldset>"
    yield '<button type="submit" id="save">%s</button></form>' % esc(tr("save", lang))
    yield from _drive_section(ctx)


def drive_open(app):
    """True when the computer already writes the drive (USB write mode at this start)."""
    warning = app.settings_warning
    if not warning:
        return False
    from han2x_core.storage import READ_ONLY_MESSAGE  # resident on the board (code.py)

    return READ_ONLY_MESSAGE in warning


def _drive_section(ctx):
    """The settings page's last part: the button that opens the drive for a firmware update
    (its POST: webdrive.py), or that the drive is already open; nothing when the device has
    no App.usb_write."""
    app = ctx.app
    if app.usb_write is None:
        return
    lang = ctx.lang
    yield '<form method="post" action="/usb-write" id="usb"><fieldset><legend>%s</legend>' % (
        esc(tr("usb_title", lang)))
    if drive_open(app):
        yield '<p class="note" id="usb-open">%s</p>' % esc(tr("usb_open", lang))
    else:
        yield ('<input type="hidden" name="csrf" value="%s"><p class="note">%s</p>'
               '<button type="submit" id="usb-write">%s</button>' % (
                   ctx.csrf, esc(tr("usb_note", lang)), esc(tr("usb_button", lang))))
    yield "</fieldset></form>"


_OPTION_KEYS = ("o_auto", "o_settings", "o_all", "o_normal", "o_inverted", "o_pio", "o_uart",
                "o_nb", "o_en")


def login(ctx, target, notice):
    return layout(ctx, "login", "login_title", _login(ctx, target, notice))


def _login(ctx, target, notice):
    lang = ctx.lang
    yield '<section class="card"><h2>%s</h2>' % esc(tr("login_title", lang))
    if notice:
        yield '<p class="bad" id="notice">%s</p>' % esc(tr(notice, lang))
    yield ('<form method="post" action="/login"><input type="hidden" name="csrf" value="%s">'
           '<input type="hidden" name="next" value="%s"><div class="f"><label for="password">'
           '%s</label><input type="password" id="password" name="password" autofocus></div>'
           '<button type="submit" id="dologin">%s</button></form><p class="note">%s</p>'
           '</section>' % (ctx.csrf, esc(target), esc(tr("web_password", lang)),
                           esc(tr("nav_login", lang)), esc(tr("pw_hint", lang))))
