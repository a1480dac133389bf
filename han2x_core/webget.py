"""GET handlers of the settings and login pages: each hands its page's generator to
routes.page (webroutes.py). The dashboard, diagnostics and register map pages have their
handler (get) in their own module, so that they load one module less.

Routed by webroutes.ROUTES; imported per request and dropped again afterwards
(webroutes.release), with the page module it imports.
"""

from han2x_core.webconn import local_path


def settings(routes, conn, request, ctx):
    from han2x_core.websettings import settings_page

    saved = request.arg("saved") is not None
    routes.page(conn, settings_page(ctx, None, {}, "saved" if saved else None))


def login(routes, conn, request, ctx):
    from han2x_core.webpages import login

    routes.page(conn, login(ctx, local_path(request.arg("next")), None))
