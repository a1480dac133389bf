"""The pages that show values: dashboard, diagnostics and the register map.

Values are rendered once on the server and then refreshed by www/app.js from the JSON API;
fmt() here and fmt() in app.js format identically (integer arithmetic). Loaded per request
and dropped again afterwards (webroutes.release).
"""

from han2x_core import webapi
from han2x_core.i18n import tr
from han2x_core.webpages import NA, esc, layout


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
    if f in ("kwh3", "kw3"):  # the capacity tariff's kWh / kW, 3 decimals
        return "%.3f %s" % (v, "kWh" if f == "kwh3" else "kW")
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
    if app.tariff is not None:  # the capacity tariff's card (docs/tariff.md)
        from han2x_core import webtariff

        yield from webtariff.card(ctx)
    yield ('<div class="card wide"><h2>%s</h2><canvas id="chart" width="720" height="220">'
           '</canvas><p class="legend"><i class="imp"></i>%s <i class="exp"></i>%s</p></div>'
           '</section>' % (esc(tr("chart", lang)), esc(tr("import", lang)),
                           esc(tr("export", lang))))


_DIAG = (("han_bytes", "n"), ("han_line_errors", "n"), ("frames_ok", "n"),
         ("hcs_errors", "n"), ("fcs_errors", "n"),
         ("discarded_bytes", "n"), ("decode_errors", "n"), ("repeated_hourly_lists", "n"),
         ("line_format", "s"),
         ("uptime_s", "uptime"), ("temperature_c", "temp"), ("firmware", "s"),
         ("modbus_clients", "n"), ("modbus_requests", "n"), ("free_memory", "mem"),
         ("free_memory_min", "mem"), ("ip", "s"), ("mac", "s"), ("hostname", "s"),
         ("net_mode", "s"), ("web_requests", "n"), ("stream_clients", "n"),
         ("scaling_unsaved", "n"), ("mqtt", "s"), ("last_error", "s"))


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
        if key == "web_requests":  # "requests / errors" in one row
            yield "<dt>%s</dt><dd>%s / %s</dd>" % (
                esc(tr(label, lang)), _val("span", "dev." + key, f, dev[key]),
                _val("span", "dev.web_errors", f, dev["web_errors"]))
            continue
        if key == "stream_clients":  # the raw HAN stream: clients / bytes sent / dropped
            yield "<dt>%s</dt><dd>%s / %s / %s</dd>" % (
                esc(tr(label, lang)), _val("span", "dev." + key, f, dev[key]),
                _val("span", "dev.stream_bytes_sent", f, dev["stream_bytes_sent"]),
                _val("span", "dev.stream_bytes_dropped", f, dev["stream_bytes_dropped"]))
            continue
        yield "<dt>%s</dt>%s" % (esc(tr(label, lang)), _val("dd", "dev." + key, f, dev[key]))
    yield '</dl></section><section class="card"><h2>%s</h2><p class="note">%s</p>' % (
        esc(tr("last_frame", lang)), esc(tr("frame_hint", lang)))
    yield '<pre id="frame">%s</pre></section>' % hexlify(ctx.app.last_frame).decode()


def register_map(ctx):
    return layout(ctx, "regs", "nav_regs", _register_map(ctx))


def _register_map(ctx):
    lang = ctx.lang
    yield '<section class="card wide"><h2>%s</h2><p class="note">%s</p>' % (
        esc(tr("nav_regs", lang)), esc(tr("regs_note", lang)))
    yield '<table id="regs"><tr><th>%s</th><th>%s</th><th>%s</th><th>%s</th><th>%s</th></tr>' % (
        esc(tr("address", lang)), esc(tr("offset", lang)), esc(tr("name", lang)),
        esc(tr("unit", lang)), esc(tr("value", lang)))
    buf = bytearray(4)
    regs = ctx.app.registers
    for offset, words, en, nb, unit in webapi.register_rows(ctx.routes.www + "/registers.txt"):
        last = offset + words - 1
        addr = "%d" % (40001 + offset) if words == 1 else "%d-%d" % (40001 + offset,
                                                                     40001 + last)
        off = "%d" % offset if words == 1 else "%d-%d" % (offset, last)
        value = webapi.read_register(regs, offset, words, buf)
        yield '<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td data-r="%d">%s</td></tr>' % (
            addr, off, esc(nb if lang == "nb" else en), esc(unit), offset,
            NA if value is None else value)
    yield "</table></section>"
