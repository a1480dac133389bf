"""What the web pages and the JSON API show: the app's state as plain dicts and lists, and
the JSON API's GET handlers (routed by webroutes.ROUTES).

Functions over the App (no sockets: a handler hands its answer to routes.json). Register
values are read through registers.read() exactly as a Modbus client reads them. Imported
per request and dropped again afterwards (webroutes.release). Documented in docs/web.md.
"""

import gc

from micropython import const

from han2x_core import __version__, FIRMWARE_VERSION

_T_OFFSET = const(43)  # 40044 board temperature, degC x100
_SIGNED = const(59)  # the one int32 register pair


def read_register(regs, offset, words, buf):
    """One register value (1 or 2 words, big-endian) as Modbus reads it, or None."""
    try:
        if regs.read(offset, words, buf, 0):
            return None
    except Exception:
        return None
    value = (buf[0] << 8) | buf[1]
    if words == 2:
        value = (value << 16) | (buf[2] << 8) | buf[3]
        if offset == _SIGNED and value >= 0x80000000:
            value -= 0x100000000
    return value


def free_memory():
    """Bytes of free heap on the board; None on a PC (no gc.mem_free there)."""
    mem_free = getattr(gc, "mem_free", None)
    return mem_free() if mem_free is not None else None


def _line_errors(han):
    """Framing + parity errors counted by the HAN reader (han_reader.HanReader.errors), None
    when the source does not count them (the PC's simulated meter)."""
    errors = getattr(han, "errors", None)
    return errors if isinstance(errors, int) else None


def han_state(app, now_ms):
    """What the HAN port is doing, for the dashboard's warning: "ok" (a telegram in the last
    30 s), "stale" (there were telegrams, none lately), "unknown" (frames arrive but are not
    understood), "garbled" (bytes arrive but no valid frame: line format, polarity, wiring)
    or "silent" (nothing at all: cable, or the port not opened by the grid company)."""
    age = app.data_age_ms(now_ms)
    if age is not None:
        return "ok" if age < 30000 else "stale"
    if app.decode_errors:
        return "unknown"
    h = app.hdlc
    han = app.han
    if (h.frames_ok or h.hcs_errors or h.fcs_errors or h.discarded_bytes
            or getattr(han, "bytes_ok", 0) or _line_errors(han)):
        return "garbled"
    return "silent"


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
        "han_line_errors": _line_errors(han),
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


def reading(app, now_ms):
    """The "reading" object: the merged latest values plus meter and age_s."""
    out = {"meter": None}
    latest = app.latest
    for key in latest:
        out[key] = latest[key]
    age = app.data_age_ms(now_ms)
    out["age_s"] = None if age is None else age // 1000
    return out


def _energies(app, offset):
    """The four energies as the extended block serves them from offset (Wh / VArh, after
    scaling; never decreasing, restored after a restart: docs/registers.md). None before
    the first valid telegram unless restored (the registers then read 0: nothing known)."""
    buf = bytearray(4)
    regs = app.registers
    restored = bool((read_register(regs, 50, 1, buf) or 0) & 32)  # 40051 bit 5
    v = [None, None, None, None]
    if app.latest or restored:
        for i in range(4):
            v[i] = read_register(regs, offset + 2 * i, 2, buf)
    return {
        "active_energy_import_wh": v[0], "active_energy_export_wh": v[1],
        "reactive_energy_import_varh": v[2], "reactive_energy_export_varh": v[3],
        "scaling_factor": getattr(regs, "scaling", None),
        "restored": restored,
    }


def estimated(app):
    """Estimated energies as registers 40070-40077 serve them."""
    return _energies(app, 69)


def status(app, web, now_ms):
    """GET /api/status."""
    tariff = getattr(app, "tariff", None)
    return {"reading": reading(app, now_ms), "device": device(app, web, now_ms),
            "totals": _energies(app, 61), "estimated": estimated(app),
            "tariff": None if tariff is None else tariff.status()}


# -- GET handlers (webroutes.ROUTES): handler(routes, conn, request, ctx) ---------------------

def get_status(routes, conn, request, ctx):
    routes.json(conn, status(routes.app, routes.web, ctx.now_ms))
