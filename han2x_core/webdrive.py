"""POST /usb-write: the settings page's "open the drive for a firmware update" button
(the button itself: websettings._drive_section).

The board owns the CIRCUITPY drive (boot.py, docs/settings.md). App.usb_write writes the
marker file usb_write.txt and hands back what restarts the board; the restart is put on the
connection (Conn.after) and runs once the answer page is sent, so the browser gets its
page first. A failed write (OSError) is shown instead, and nothing restarts. Routed by
webroutes.ROUTES, loaded per request and dropped again afterwards (webroutes.release).
"""

from han2x_core.i18n import tr
from han2x_core.webdata import drive_open
from han2x_core.webconn import equal
from han2x_core.webforms import read_form
from han2x_core.webpages import esc, layout


def _answer(ctx, cls, key, detail=""):
    lang = ctx.lang
    yield '<section class="card"><h2>%s</h2><p class="%s" id="usb-answer">%s%s</p>' % (
        esc(tr("usb_title", lang)), cls, esc(tr(key, lang)),
        " " + esc(detail) if detail else "")
    yield '<p><a href="/settings">%s</a></p></section>' % esc(tr("usb_back", lang))


def answer(ctx, cls, key, detail=""):
    """A small page with one message (class ok or bad) and a link back to the settings."""
    return layout(ctx, "settings", "usb_title", _answer(ctx, cls, key, detail))


def post(routes, conn, request, ctx):
    """POST /usb-write (the password was checked by Routes.handle)."""
    form = read_form(routes, conn, request)
    if form is None:
        return
    app = routes.app
    if app.usb_write is None:
        routes.web.respond(conn, 404, "text/plain", "not found\n")
        return
    if not routes.same_origin(request):
        routes.page(conn, answer(ctx, "bad", "bad_request"), 403)
        return
    if not equal(form.get("csrf", ""), routes.csrf):
        routes.page(conn, answer(ctx, "bad", "usb_expired"), 403)
        return
    if drive_open(app):
        routes.page(conn, answer(ctx, "ok", "usb_open"))
        return
    try:
        restart = app.usb_write()
    except OSError as e:
        routes.page(conn, answer(ctx, "bad", "usb_failed", str(e)), 500)
        return
    routes.page(conn, answer(ctx, "ok", "usb_done"))
    conn.after = restart  # web.py runs it when the connection closes, the page sent
