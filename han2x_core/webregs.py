"""The register map page: every register with its live value (refreshed by www/app.js from
/api/registers); names and units streamed from www/registers.txt. Loaded per request and
dropped again afterwards (webroutes.release).
"""

from han2x_core import webdata, webstate
from han2x_core.i18n import tr
from han2x_core.webpages import NA, esc, layout


def get(routes, conn, request, ctx):
    """GET /registers (webroutes.ROUTES)."""
    routes.page(conn, register_map(ctx))


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
    for offset, words, en, nb, unit in webdata.register_rows(ctx.routes.www + "/registers.txt"):
        last = offset + words - 1
        addr = "%d" % (40001 + offset) if words == 1 else "%d-%d" % (40001 + offset,
                                                                     40001 + last)
        off = "%d" % offset if words == 1 else "%d-%d" % (offset, last)
        value = webstate.read_register(regs, offset, words, buf)
        yield '<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td data-r="%d">%s</td></tr>' % (
            addr, off, esc(nb if lang == "nb" else en), esc(unit), offset,
            NA if value is None else value)
    yield "</table></section>"
