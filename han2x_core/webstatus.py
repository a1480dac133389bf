"""The dashboard: rendered once on the server, then refreshed by www/app.js from the JSON API.
The diagnostics page is webdiag.py, the register map webregs.py: a request loads only its
own page. Loaded per request and dropped again afterwards (webroutes.release).
"""

from han2x_core import webstate
from han2x_core.i18n import tr
from han2x_core.webfmt import fmt, val
from han2x_core.webpages import esc, layout


def get(routes, conn, request, ctx):
    """GET / (webroutes.ROUTES)."""
    routes.page(conn, dashboard(ctx))


def dashboard(ctx):
    return layout(ctx, "dash", "nav_dash", _dashboard(ctx))


def _dashboard(ctx):
    lang = ctx.lang
    app = ctx.app
    r = webstate.reading(app, ctx.now_ms)
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
    state = webstate.han_state(app, ctx.now_ms)
    for name in ("silent", "garbled", "unknown", "stale"):  # app.js shows the one in force
        yield '<p class="warn" data-han="%s"%s>%s</p>' % (
            name, "" if name == state else " hidden", esc(tr("han_" + name, lang)))
    yield "</div>"
    yield '<div class="card"><h2>%s</h2><div class="big">' % esc(tr("power", lang))
    for key, label, f in (("active_power_import_w", "import", "w"),
                          ("active_power_export_w", "export", "w")):
        yield "<div><span>%s</span>%s</div>" % (esc(tr(label, lang)), val("b", key, f, g(key)))
    yield "</div><dl>"
    for key, label in (("reactive_power_import_var", "import"),
                       ("reactive_power_export_var", "export")):
        yield "<dt>%s %s</dt>%s" % (esc(tr("reactive", lang)), esc(tr(label, lang).lower()),
                                    val("dd", key, "var", g(key)))
    yield '</dl></div><div class="card"><h2>%s</h2><table><tr><th></th>' % esc(
        tr("phases", lang))
    yield "<th>L1</th><th>L2</th><th>L3</th></tr>"
    for label, stem, f in (("current", "current_l%d_ma", "ma"),
                           ("voltage", "voltage_l%d_dv", "dv")):
        yield "<tr><th>%s</th>" % esc(tr(label, lang))
        for n in (1, 2, 3):
            yield val("td", stem % n, f, g(stem % n))
        yield "</tr>"
    est = webstate.estimated(app)
    yield ('</table></div><div class="card span2"><h2>%s</h2><table><tr><th></th><th>%s</th>'
           '<th>%s *</th></tr>' % (esc(tr("energy", lang)), esc(tr("measured", lang)),
                                    esc(tr("estimated", lang))))
    for label, kind, key, f in (("import", "active", "active_energy_import_wh", "wh"),
                                ("export", "active", "active_energy_export_wh", "wh"),
                                ("import", "reactive", "reactive_energy_import_varh", "varh"),
                                ("export", "reactive", "reactive_energy_export_varh", "varh")):
        yield "<tr><th>%s %s</th>%s%s</tr>" % (
            esc(tr(kind, lang)), esc(tr(label, lang).lower()), val("td", key, f, g(key)),
            val("td", "est." + key, f, est[key], ' class="est"'))
    yield '</table><p class="note">* %s</p></div>' % esc(tr("est_note", lang))
    if app.tariff is not None:  # the capacity tariff's card (docs/tariff.md)
        from han2x_core import webtariff

        yield from webtariff.card(ctx)
    yield ('<div class="card wide"><h2>%s</h2><canvas id="chart" width="720" height="220">'
           '</canvas><p class="legend"><i class="imp"></i>%s <i class="exp"></i>%s</p></div>'
           '</section>' % (esc(tr("chart", lang)), esc(tr("import", lang)),
                           esc(tr("export", lang))))
