"""What the web pages and the JSON API show: the app's state as plain dicts and lists.

Pure functions over the App (no sockets). Register values are read through
registers.read() exactly as a Modbus client reads them. Documented in docs/web.md.
"""

import gc

from micropython import const

from han2x_core import __version__, FIRMWARE_VERSION

_T_OFFSET = const(43)  # 40044 board temperature, degC x100

# (offset, words, English name, Norwegian name, unit): the original HAN2X map (han2x-spec).
REGISTERS = (
    (0, 2, "Active power import (P+)", "Aktiv effekt import (P+)", "W"),
    (2, 2, "Active power export (P-)", "Aktiv effekt eksport (P-)", "W"),
    (4, 2, "Reactive power import (Q+)", "Reaktiv effekt import (Q+)", "VAr"),
    (6, 2, "Reactive power export (Q-)", "Reaktiv effekt eksport (Q-)", "VAr"),
    (8, 2, "Current L1", "Strøm L1", "mA"),
    (10, 2, "Current L2", "Strøm L2", "mA"),
    (12, 2, "Current L3", "Strøm L3", "mA"),
    (14, 2, "Voltage L1", "Spenning L1", "V x10"),
    (16, 2, "Voltage L2", "Spenning L2", "V x10"),
    (18, 2, "Voltage L3", "Spenning L3", "V x10"),
    (20, 2, "Active energy import", "Aktiv energi import", "kWh"),
    (22, 2, "Active energy export", "Aktiv energi eksport", "kWh"),
    (24, 2, "Reactive energy import", "Reaktiv energi import", "kVArh"),
    (26, 2, "Reactive energy export", "Reaktiv energi eksport", "kVArh"),
    (28, 2, "Active energy import, estimated", "Aktiv energi import, estimert", "kWh"),
    (30, 2, "Active energy export, estimated", "Aktiv energi eksport, estimert", "kWh"),
    (32, 2, "Reactive energy import, estimated", "Reaktiv energi import, estimert", "kVArh"),
    (34, 2, "Reactive energy export, estimated", "Reaktiv energi eksport, estimert", "kVArh"),
    (36, 1, "Meter clock: year", "Målerklokke: år", "YYYY"),
    (37, 1, "Meter clock: month", "Målerklokke: måned", "1-12"),
    (38, 1, "Meter clock: day", "Målerklokke: dag", "1-31"),
    (39, 1, "Meter clock: hour", "Målerklokke: time", "0-23"),
    (40, 1, "Meter clock: minute", "Målerklokke: minutt", "0-59"),
    (41, 1, "Meter clock: second", "Målerklokke: sekund", "0-59"),
    (42, 1, "Firmware version", "Fastvareversjon", "-"),
    (43, 1, "Board temperature", "Korttemperatur", "degC x100"),
    (44, 2, "Scaling factor (alias)", "Skaleringsfaktor (alias)", "x1000"),
    (46, 1, "Reserved (reads 0)", "Reservert (leses som 0)", "-"),
    (47, 1, "Hours since last start", "Timer siden siste start", "h"),
    (48, 2, "Scaling factor", "Skaleringsfaktor", "x1000"),
    # extended block (registers.py, docs/registers.md)
    (50, 1, "Status bits", "Statusbiter", "bits"),
    (51, 1, "Data age", "Dataalder", "s"),
    (52, 1, "Values present", "Verdier til stede", "bits"),
    (53, 1, "Meter make", "Målerprodusent", "code"),
    (54, 1, "List", "Liste", "1-3"),
    (55, 2, "Telegrams received", "Mottatte telegram", "-"),
    (57, 2, "Uptime", "Oppetid", "s"),
    (59, 2, "Net active power (import - export)", "Netto aktiv effekt (import - eksport)",
     "W, int32"),
    (61, 2, "Active energy import", "Aktiv energi import", "Wh"),
    (63, 2, "Active energy export", "Aktiv energi eksport", "Wh"),
    (65, 2, "Reactive energy import", "Reaktiv energi import", "VArh"),
    (67, 2, "Reactive energy export", "Reaktiv energi eksport", "VArh"),
    (69, 2, "Active energy import, estimated", "Aktiv energi import, estimert", "Wh"),
    (71, 2, "Active energy export, estimated", "Aktiv energi eksport, estimert", "Wh"),
    (73, 2, "Reactive energy import, estimated", "Reaktiv energi import, estimert", "VArh"),
    (75, 2, "Reactive energy export, estimated", "Reaktiv energi eksport, estimert", "VArh"),
)
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


def registers(app):
    """[[offset, value], ...] for every register of the map."""
    buf = bytearray(4)
    out = []
    for row in REGISTERS:
        out.append([row[0], read_register(app.registers, row[0], row[1], buf)])
    return out


def service_with(app, attr):
    for s in app.services:
        if hasattr(s, attr):
            return s
    return None


def free_memory():
    """Bytes of free heap on the board; None on a PC (no gc.mem_free there)."""
    mem_free = getattr(gc, "mem_free", None)
    return mem_free() if mem_free is not None else None


def device(app, web, now_ms):
    """The "device" object of /api/status."""
    h = app.hdlc
    mb = service_with(app, "client_count")
    net = service_with(app, "hostname")
    han = app.han
    line = getattr(han, "line_format", None) or getattr(han, "detected", None)
    t100 = read_register(app.registers, _T_OFFSET, 1, bytearray(2))
    return {
        "firmware": __version__,
        "firmware_version": FIRMWARE_VERSION,
        "uptime_s": web.uptime_s,
        "frames_ok": h.frames_ok,
        "hcs_errors": h.hcs_errors,
        "fcs_errors": h.fcs_errors,
        "discarded_bytes": h.discarded_bytes,
        "decode_errors": app.decode_errors,
        "line_format": line,
        "modbus_clients": getattr(mb, "client_count", None),
        "modbus_requests": getattr(mb, "requests", None),
        "free_memory": free_memory(),
        "temperature_c": None if not t100 else t100 / 100,
        "ip": getattr(net, "ip", None) or app.settings.get("ip"),
        "web_requests": web.requests,
        "web_errors": web.errors,
        "last_error": app.last_error or None,
        "settings_warning": app.settings_warning,
    }


def reading(app, now_ms):
    """The "reading" object: the merged latest values plus meter and age_s."""
    out = {"meter": None}
    latest = app.latest
    for key in latest:
        out[key] = latest[key]
    age = app.data_age_ms(now_ms)
    out["age_s"] = None if age is None else age // 1000
    return out


def estimated(app):
    """Estimated energies as the registers serve them (Wh / VArh, after scaling)."""
    buf = bytearray(4)
    regs = app.registers
    return {
        "active_energy_import_wh": read_register(regs, 69, 2, buf),
        "active_energy_export_wh": read_register(regs, 71, 2, buf),
        "reactive_energy_import_varh": read_register(regs, 73, 2, buf),
        "reactive_energy_export_varh": read_register(regs, 75, 2, buf),
        "scaling_factor": getattr(regs, "scaling", None),
    }


def status(app, web, now_ms):
    """GET /api/status."""
    return {"reading": reading(app, now_ms), "device": device(app, web, now_ms),
            "estimated": estimated(app)}


def history_chunks(app, now_ms):
    """GET /api/history as JSON text pieces: [[age_s, import_w, export_w], ...] oldest first."""
    from han2x_core.ticks import ticks_diff

    yield '{"step_s": 10, "samples": ['
    first = True
    for sample in list(app.history):  # copy: the app may append while we stream
        age_s = ticks_diff(now_ms, sample[0]) // 1000
        yield ("[%d,%d,%d]" if first else ",[%d,%d,%d]") % (age_s, sample[1], sample[2])
        first = False
    yield "]}"


def public_settings(settings):
    """Settings for GET /api/settings: the password replaced by whether one is set."""
    out = {}
    for key in settings:
        out[key] = settings[key]
    out["web_password"] = bool(settings.get("web_password"))
    return out
