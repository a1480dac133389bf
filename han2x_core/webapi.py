"""/api/status and the diagnostics page's device object: the app's state as plain dicts, and
the JSON API's GET handler (routed by webroutes.ROUTES). The reading, the HAN state and the
energies are webstate.py's (the dashboard loads only that).

Functions over the App (no sockets: a handler hands its answer to routes.json). Register
values are read through registers.read() exactly as a Modbus client reads them. Imported
per request and dropped again afterwards (webroutes.release). Documented in docs/web.md.
"""

import gc

from micropython import const

from han2x_core import __version__, FIRMWARE_VERSION
from han2x_core.webstate import (energies, estimated, han_state, line_errors, read_register,
                                 reading)

_T_OFFSET = const(43)  # 40044 board temperature, degC x100


def free_memory():
    """Bytes of free heap on the board; None on a PC (no gc.mem_free there)."""
    mem_free = getattr(gc, "mem_free", None)
    return mem_free() if mem_free is not None else None


def _mac(net):
    mac = getattr(net, "mac", None)
    return ":".join("%02x" % b for b in mac) if mac else None


def device(app, web, now_ms):
    """The "device" object of /api/status."""
    h = app.hdlc
    mb = app.modbus
    net = app.network
    han = app.han
    line = getattr(han, "line_format", None) or getattr(han, "detected", None)
    t100 = read_register(app.registers, _T_OFFSET, 1, bytearray(2))
    stream = getattr(app, "raw_tap", None)
    return {
        "firmware": __version__,
        "firmware_version": FIRMWARE_VERSION,
        "uptime_s": web.uptime_s,
        "frames_ok": h.frames_ok,
        "hcs_errors": h.hcs_errors,
        "fcs_errors": h.fcs_errors,
        "discarded_bytes": h.discarded_bytes,
        "decode_errors": app.decode_errors,
        "repeated_hourly_lists": getattr(app.registers, "stale_repeats", None),
        "line_format": line,
        "han_state": han_state(app, now_ms),
        "han_bytes": getattr(han, "bytes_ok", None),
        "han_line_errors": line_errors(han),
        "modbus_clients": getattr(mb, "client_count", None),
        "modbus_requests": getattr(mb, "requests", None),
        "free_memory": free_memory(),
        "free_memory_min": app.free_memory_min,
        "temperature_c": None if not t100 else (t100 - (t100 >> 15 << 16)) / 100,  # int16
        "ip": getattr(net, "ip", None) or app.settings.get("ip"),
        "mac": _mac(net), "hostname": getattr(net, "hostname", None),
        "net_mode": getattr(net, "mode", None),
        "web_requests": web.requests,
        "web_errors": web.errors,
        "last_error": app.last_error or None,
        "settings_warning": app.settings_warning,
        "scaling_unsaved": getattr(app.scaling, "scaling_unsaved", None),
        "energy_warning": getattr(app, "energy_warning", None),
        # the raw HAN stream (hanstream.py): None while it is off
        "stream_clients": getattr(stream, "clients", None),
        "stream_bytes_sent": getattr(stream, "bytes_sent", None),
        "stream_bytes_dropped": getattr(stream, "bytes_dropped", None),
        "mqtt": _mqtt(app),
    }


def _mqtt(app):
    """MQTT's state and last error in one line; None when MQTT is off (not loaded)."""
    mqtt = app.mqtt
    return mqtt.status() if mqtt is not None and app.settings.get("mqtt_host") else None


def status(app, web, now_ms):
    """GET /api/status."""
    tariff = getattr(app, "tariff", None)
    return {"reading": reading(app, now_ms), "device": device(app, web, now_ms),
            "totals": energies(app, 61), "estimated": estimated(app),
            "tariff": None if tariff is None else tariff.status()}


# -- GET handlers (webroutes.ROUTES): handler(routes, conn, request, ctx) ---------------------

def get_status(routes, conn, request, ctx):
    routes.json(conn, status(routes.app, routes.web, ctx.now_ms))
