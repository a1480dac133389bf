"""The JSON API's other endpoints and the register map's rows: /api/history, /api/registers,
/api/frame, /api/settings, /data.json (routed by webroutes.ROUTES), the register page's rows
(webregs.py) and drive_open (the settings page and the drive button). Apart from webapi.py
(/api/status and the diagnostics page's device object), so that those load only what they
use (issue 11). Imported per request and dropped again afterwards (webroutes.release); the
functions that read registers import webstate's read_register when they run.
"""


def layout():
    """(offset, words) of every register of the map, in order, from registers.LAYOUT."""
    from han2x_core.registers import LAYOUT

    for i in range(0, len(LAYOUT), 3):
        offset = LAYOUT[i]
        words = LAYOUT[i + 1]
        for _ in range(LAYOUT[i + 2]):
            yield offset, words
            offset += words


def register_rows(path):
    """(offset, words, English, Norwegian, unit) for every register of the map: layout()
    joined with the lines of www/registers.txt (path), read from flash line by line so the
    table costs no heap."""
    with open(path) as f:
        line = f.readline()
        while line[:1] == "#":  # the header
            line = f.readline()
        for offset, words in layout():
            if not line:
                return
            p = line.rstrip("\r\n").split("|")
            yield offset, words, p[0], p[1], p[2]
            line = f.readline()


def registers(app):
    """[[offset, value], ...] for every register of the map."""
    from han2x_core.webstate import read_register

    buf = bytearray(4)
    out = []
    for offset, words in layout():
        out.append([offset, read_register(app.registers, offset, words, buf)])
    return out


def data_json(app):
    """GET /data.json: the fields evcc's "amsleser" meter template reads (AMS Reader's
    names): w/e import/export power W, ic/ec import/export energy kWh (the estimate, never
    decreasing: 40070-40073; null until known), l1..l3 with i current A, u voltage V, p
    power W. The meter sends no power per phase: p is the net power (import - export)
    shared by the phases' U x I. Every value is read from the registers. docs/integration.md.
    """
    from han2x_core.webstate import read_register

    regs = app.registers
    buf = bytearray(4)

    def reg(offset):
        return read_register(regs, offset, 2, buf) or 0

    w, e = reg(0), reg(2)
    known = (reg(50) >> 16) & 36  # 40051 bit 2 (hourly totals) or bit 5 (restored)
    amps = [reg(8), reg(10), reg(12)]  # mA
    volts = [reg(14), reg(16), reg(18)]  # V x 10
    va = [amps[i] * volts[i] for i in range(3)]
    total = sum(va)
    out = {"w": w, "e": e,
           "ic": reg(69) / 1000 if known else None, "ec": reg(71) / 1000 if known else None}
    for i in range(3):
        out["l%d" % (i + 1)] = {"i": amps[i] / 1000, "u": volts[i] / 10,
                                "p": (w - e) * va[i] // total if total else 0}
    return out


def history_chunks(app, now_ms):
    """GET /api/history as JSON text pieces: [[age_s, import_w, export_w], ...] oldest first."""
    from han2x_core.ticks import ticks_diff

    yield '{"step_s": 10, "samples": ['
    first = True
    for sample in app.history():
        age_s = ticks_diff(now_ms, sample[0]) // 1000
        yield ("[%d,%d,%d]" if first else ",[%d,%d,%d]") % (age_s, sample[1], sample[2])
        first = False
    yield "]}"


def public_settings(settings):
    """Settings for GET /api/settings: the passwords replaced by whether one is set."""
    out = {}
    for key in settings:
        out[key] = settings[key]
    out["web_password"] = settings.get("web_password") != ""  # None: unusable, locked
    out["mqtt_password"] = bool(settings.get("mqtt_password"))
    return out


def drive_open(app):
    """True when the computer already writes the drive (USB write mode at this start)."""
    warning = app.settings_warning
    if not warning:
        return False
    from han2x_core.storage import READ_ONLY_MESSAGE  # dropped after the request

    return READ_ONLY_MESSAGE in warning


# -- GET handlers (webroutes.ROUTES): handler(routes, conn, request, ctx) ---------------------

def get_history(routes, conn, request, ctx):
    routes.web.respond(conn, 200, "application/json", history_chunks(routes.app, ctx.now_ms),
                       "Cache-Control: no-store\r\n")


def get_registers(routes, conn, request, ctx):
    routes.json(conn, {"registers": registers(routes.app)})


def get_frame(routes, conn, request, ctx):
    from binascii import hexlify

    app = routes.app
    age = app.data_age_ms(ctx.now_ms)
    routes.json(conn, {"hex": hexlify(app.last_frame).decode(),
                       "age_s": None if age is None else age // 1000})


def get_data_json(routes, conn, request, ctx):  # evcc's amsleser template
    routes.json(conn, data_json(routes.app))


def get_settings(routes, conn, request, ctx):
    routes.json(conn, public_settings(routes.app.settings))
