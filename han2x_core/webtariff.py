"""The capacity tariff's dashboard card (docs/tariff.md); the settings page's peak editor
is webtariffedit.py. Its texts are here (English, Norwegian), so the shared text tables
carry nothing while the tariff is off. Loaded per request only when the setting "tariff"
is on, and dropped again afterwards (webroutes.release).
"""

from han2x_core.webpages import esc

_T = {
    "title": ("Capacity step", "Effekttrinn"),
    "step": ("Step", "Trinn"),
    "avg": ("Month's value (average of the peaks)", "Månedens verdi (snitt av toppene)"),
    "hour": ("This hour", "Denne timen"),
    "used": ("used", "brukt"),
    "est": ("estimated at the end", "estimert ved timeslutt"),
    "left": ("left before the next step", "igjen før neste trinn"),
    "cross": ("At this power the hour lifts the month into the next step.",
              "Med denne effekten løfter timen måneden til neste trinn."),
    "top": ("top step", "øverste trinn"),
    "peaks": ("The month's peaks (highest hour per day)", "Månedens topper (høyeste time per døgn)"),
    "date": ("Date", "Dato"),
    "at": ("Hour", "Time"),
    "counted": ("counted", "teller"),
    "none": ("No peaks yet this month.", "Ingen topper ennå denne måneden."),
}


def t(key, lang):
    return _T[key][1 if lang == "nb" else 0]


def _kwh(v):
    return "%.3f kWh" % v


def card(ctx):
    """The dashboard card: step, month's value, this hour against what is left, peaks."""
    lang = ctx.lang
    s = ctx.app.tariff.status()
    st = s["step"]
    rng = "%g-%g kW" % (st["from_kw"], st["to_kw"]) if st["to_kw"] is not None else \
        "%g kW+" % st["from_kw"]
    yield '<div class="card tariff%s" id="tariff"><h2>%s</h2><div class="big">' % (
        " cross" if s["will_cross"] else "", esc(t("title", lang)))
    yield '<div><span>%s</span><b data-k="tar.step" data-f="s">%d</b> %s</div>' % (
        esc(t("step", lang)), st["index"], esc(rng))
    yield '<div><span>%s</span><b data-k="tar.average_kw" data-f="kw3">%.3f kW</b></div>' % (
        esc(t("avg", lang)), s["average_kw"])
    left = s["kwh_left"]
    total = s["hour_used_kwh"] + (left or 0)
    yield '</div><p>%s: <progress id="tar-bar" max="%.3f" value="%.3f"></progress></p><dl>' % (
        esc(t("hour", lang)), total if total > 0 else 1, s["hour_used_kwh"])
    for key, label in (("hour_used_kwh", "used"), ("hour_estimate_kwh", "est"),
                       ("kwh_left", "left")):
        value = s[key]
        yield '<dt>%s</dt><dd data-k="tar.%s" data-f="kwh3">%s</dd>' % (
            esc(t(label, lang)), key, esc(_kwh(value) if value is not None else t("top", lang)))
    yield '</dl><p class="warn" id="tar-cross"%s>%s</p>' % (
        "" if s["will_cross"] else " hidden", esc(t("cross", lang)))
    if s["warning"]:
        yield '<p class="warn" id="tar-warning">%s</p>' % esc(s["warning"])
    yield from _peaks_table(s, lang)
    yield "</div>"


def _peaks_table(s, lang):
    if not s["peaks"]:
        yield '<p class="note">%s</p>' % esc(t("none", lang))
        return
    yield '<table id="tar-peaks"><tr><th>%s</th><th>%s</th><th>kWh</th><th></th></tr>' % (
        esc(t("date", lang)), esc(t("at", lang)))
    for p in s["peaks"]:
        yield "<tr><td>%s</td><td>%02d-%02d</td><td>%.3f</td><td>%s</td></tr>" % (
            p["date"], p["hour"], (p["hour"] + 1) % 24, p["kwh"],
            esc(t("counted", lang)) if p["counted"] else "")
