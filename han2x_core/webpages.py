"""HTML pages as generators of small string pieces (sent chunked, never one big string):
the layout every page shares, and the login page. The pages themselves are in webstatus.py
(dashboard, diagnostics, register map) and websettings.py (settings), so that a request
loads only its own.
"""

from han2x_core import __version__
from han2x_core.i18n import tr

NA = "\u2013"
_NAV = (("/", "nav_dash", "dash"), ("/settings", "nav_settings", "settings"),
        ("/diagnostics", "nav_diag", "diag"), ("/registers", "nav_regs", "regs"))


def esc(value):
    """Text safe inside HTML content and double-quoted attributes."""
    return (str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def layout(ctx, page, title_key, body):
    lang = ctx.lang
    yield ('<!doctype html><html lang="%s"><head><meta charset="utf-8">'
           '<meta name="viewport" content="width=device-width,initial-scale=1">'
           '<title>HAN2X - %s</title><link rel="icon" href="data:,">'  # no /favicon.ico: a
           '<link rel="stylesheet" href="/static/style.css?v=%s">'  # connection less per page
           '</head><body data-page="%s" data-na="%s" data-ago="%s"><header><b>HAN2X</b><nav>'
           % (lang, esc(tr(title_key, lang)), __version__, page, NA, esc(tr("ago", lang))))
    for href, key, name in _NAV:
        yield '<a href="%s"%s>%s</a>' % (href, ' class="on"' if name == page else "",
                                         esc(tr(key, lang)))
    routes = ctx.routes
    if routes.password != "" and ctx.authed:
        yield ('<form method="post" action="/logout"><input type="hidden" name="csrf" '
               'value="%s"><button id="logout">%s</button></form>'
               % (ctx.csrf, esc(tr("nav_logout", lang))))
    elif routes.password != "":
        yield '<a href="/login" id="login">%s</a>' % esc(tr("nav_login", lang))
    yield "</nav></header><main>"
    for piece in body:
        yield piece
    yield ('</main><footer>HAN2X open firmware %s</footer><script src="/static/app.js?v=%s">'
           '</script></body></html>' % (__version__, __version__))


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
