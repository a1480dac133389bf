"""GET handlers of the pages: each hands its page's generator to routes.page (webroutes.py).

Routed by webroutes.ROUTES; imported per request and dropped again afterwards
(webroutes.release), with the page module it imports.
"""

from han2x_core.webconn import local_path


def dashboard(routes, conn, request, ctx):
    from han2x_core.webstatus import dashboard

    routes.page(conn, dashboard(ctx))


def diagnostics(routes, conn, request, ctx):
    from han2x_core.webdiag import diagnostics

    routes.page(conn, diagnostics(ctx))


def register_map(routes, conn, request, ctx):
    from han2x_core.webregs import register_map

    routes.page(conn, register_map(ctx))


def settings(routes, conn, request, ctx):
    from han2x_core.websettings import settings_page

    saved = request.arg("saved") is not None
    routes.page(conn, settings_page(ctx, None, {}, "saved" if saved else None))


def login(routes, conn, request, ctx):
    from han2x_core.webpages import login

    routes.page(conn, login(ctx, local_path(request.arg("next")), None))
