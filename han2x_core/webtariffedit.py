"""The capacity tariff on the settings page (docs/tariff.md): the month's peaks as fields
to correct a wrong one, and their POST /tariff (saved at once). Loaded for that page or
post only, when the setting "tariff" is on, and dropped again (webroutes.release).
"""

from han2x_core.webpages import esc
from han2x_core.webtariff import _T as _CARD

_T = {
    "edit": ("Correct the peaks", "Rett toppene"),
    "edit_note": ("A wrong hour (a test, a meter fault) can be changed or removed here: "
                  "clear the kWh to remove a peak. Saved at once.",
                  "En feil time (en test, en målerfeil) kan endres eller fjernes her: tøm "
                  "kWh for å fjerne en topp. Lagres med en gang."),
    "day": ("Day of month", "Dag i måneden"),
    "save": ("Save the peaks", "Lagre toppene"),
    "clear": ("Clear all peaks of this month", "Slett alle toppene denne måneden"),
    "saved": ("Peaks saved.", "Toppene er lagret."),
    "bad": ("Not saved: ", "Ikke lagret: "),
    "back": ("Back to the settings", "Tilbake til innstillingene"),
}


def t(key, lang):
    pair = _T.get(key) or _CARD[key]
    return pair[1 if lang == "nb" else 0]


def editor(ctx):
    """The settings page's section: the month's peaks as fields, saved by POST /tariff."""
    lang = ctx.lang
    tariff = ctx.app.tariff
    s = tariff.status()
    yield '<form method="post" action="/tariff" id="tariff-peaks"><fieldset><legend>%s %s' \
          '</legend><input type="hidden" name="csrf" value="%s"><p class="note">%s</p>' % (
              esc(t("edit", lang)), esc(s["month"] or ""), ctx.csrf, esc(t("edit_note", lang)))
    peaks = s["peaks"]
    for i in range(5):
        p = peaks[i] if i < len(peaks) else None
        yield ('<div class="f"><label>%d</label><input name="d%d" value="%s" '
               'inputmode="numeric" aria-label="%s"><input name="h%d" value="%s" '
               'inputmode="numeric" aria-label="%s"><input name="k%d" value="%s" '
               'inputmode="decimal" aria-label="kWh"></div>' % (
                   i + 1, i, p["date"][8:] if p else "", esc(t("day", lang)), i,
                   p["hour"] if p else "", esc(t("at", lang)), i,
                   "%.3f" % p["kwh"] if p else ""))
    yield ('<label class="inline"><input type="checkbox" name="clear" id="tariff-clear"> %s'
           '</label><button type="submit" id="tariff-save">%s</button></fieldset></form>' % (
               esc(t("clear", lang)), esc(t("save", lang))))


def parse_peaks(form, year, month):
    """[(day, hour, Wh)] from the editor's fields; ValueError says which row is wrong."""
    from han2x_core.settings import digits
    from han2x_core.tariff import civil, days

    last = civil(days(year + month // 12, month % 12 + 1, 1) - 1)[2] if year else 31
    out = []  # type: list
    if form.get("clear"):
        return out
    for i in range(5):
        d, h, k = (form.get(c + str(i), "").strip() for c in "dhk")
        if not k:
            continue
        k = k.replace(",", ".")
        cut = k.find(".")
        whole, frac = (k, "") if cut < 0 else (k[:cut], k[cut + 1:])
        if not (digits(d, 2) and digits(h, 2) and digits(whole, 6) and (
                not frac or digits(frac, 3))) or not 1 <= int(d) <= last or int(h) > 23:
            raise ValueError("peak %d: day 1-%d, hour 0-23, kWh like 5.25" % (i + 1, last))
        out.append((int(d), int(h), int(whole) * 1000 + int((frac + "00")[:3] or 0)))
    return out


def post(routes, conn, request, ctx):
    """POST /tariff (the password was checked by Routes.handle)."""
    from han2x_core.webconn import equal
    from han2x_core.webforms import read_form

    form = read_form(routes, conn, request)
    if form is None:
        return
    app = routes.app
    tariff = app.tariff
    if tariff is None:
        routes.web.respond(conn, 404, "text/plain", "not found\n")
        return
    if not routes.same_origin(request) or not equal(form.get("csrf", ""), routes.csrf):
        routes.web.respond(conn, 403, "text/plain", "refused: reload the settings page\n")
        return
    if not tariff.year:
        routes.page(conn, _answer(ctx, "bad", t("bad", ctx.lang) + t("none", ctx.lang)), 409)
        return
    try:
        peaks = parse_peaks(form, tariff.year, tariff.month)
    except ValueError as e:
        routes.page(conn, _answer(ctx, "bad", t("bad", ctx.lang) + str(e)), 422)
        return
    tariff.clear()
    for day, hour, wh in peaks:
        tariff.add_peak(day, hour, wh)
    problem = app.save_tariff()
    if problem:
        routes.page(conn, _answer(ctx, "bad", t("bad", ctx.lang) + problem), 500)
        return
    routes.page(conn, _answer(ctx, "ok", t("saved", ctx.lang)))


def _answer(ctx, cls, text):
    from han2x_core.webpages import layout

    return layout(ctx, "settings", "nav_settings", _answer_body(ctx, cls, text))


def _answer_body(ctx, cls, text):
    yield '<section class="card"><p class="%s" id="tariff-answer">%s</p>' % (cls, esc(text))
    yield '<p><a href="/settings">%s</a></p></section>' % esc(t("back", ctx.lang))
