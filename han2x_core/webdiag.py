"""The diagnostics page: the device's counters (refreshed by www/app.js from /api/status) and
the last raw HAN frame. Loaded per request and dropped again afterwards (webroutes.release).
"""

from han2x_core import webapi
from han2x_core.i18n import tr
from han2x_core.webfmt import val
from han2x_core.webpages import esc, layout


_DIAG = (("han_bytes", "n"), ("han_line_errors", "n"), ("frames_ok", "n"),
         ("hcs_errors", "n"), ("fcs_errors", "n"),
         ("discarded_bytes", "n"), ("decode_errors", "n"), ("repeated_hourly_lists", "n"),
         ("line_format", "s"),
         ("uptime_s", "uptime"), ("temperature_c", "temp"), ("firmware", "s"),
         ("modbus_clients", "n"), ("modbus_requests", "n"), ("free_memory", "mem"),
         ("free_memory_min", "mem"), ("ip", "s"), ("mac", "s"), ("hostname", "s"),
         ("net_mode", "s"), ("web_requests", "n"), ("stream_clients", "n"),
         ("scaling_unsaved", "n"), ("mqtt", "s"), ("last_error", "s"))


def get(routes, conn, request, ctx):
    """GET /diagnostics (webroutes.ROUTES)."""
    routes.page(conn, diagnostics(ctx))


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
                esc(tr(label, lang)), val("span", "dev." + key, f, dev[key]),
                val("span", "dev.web_errors", f, dev["web_errors"]))
            continue
        if key == "stream_clients":  # the raw HAN stream: clients / bytes sent / dropped
            yield "<dt>%s</dt><dd>%s / %s / %s</dd>" % (
                esc(tr(label, lang)), val("span", "dev." + key, f, dev[key]),
                val("span", "dev.stream_bytes_sent", f, dev["stream_bytes_sent"]),
                val("span", "dev.stream_bytes_dropped", f, dev["stream_bytes_dropped"]))
            continue
        yield "<dt>%s</dt>%s" % (esc(tr(label, lang)), val("dd", "dev." + key, f, dev[key]))
    yield '</dl></section><section class="card"><h2>%s</h2><p class="note">%s</p>' % (
        esc(tr("last_frame", lang)), esc(tr("frame_hint", lang)))
    yield '<pre id="frame">%s</pre></section>' % hexlify(ctx.app.last_frame).decode()
