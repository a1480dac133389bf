"""What the dashboard shows of the app's state, as plain values and dicts: the latest
reading, the HAN port's state, the energies as the registers serve them. Read by the
dashboard (webstatus.py), the register map and the JSON API (webapi.py, webdata.py); apart
from webapi so that the dashboard and the register map do not load /api/status's device
object (issue 11). Imported per request and dropped again afterwards (webroutes.release).
"""

from micropython import const

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


def line_errors(han):
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
            or getattr(han, "bytes_ok", 0) or line_errors(han)):
        return "garbled"
    return "silent"


def reading(app, now_ms):
    """The "reading" object: the merged latest values plus meter and age_s."""
    out = {"meter": None}
    latest = app.latest
    for key in latest:
        out[key] = latest[key]
    age = app.data_age_ms(now_ms)
    out["age_s"] = None if age is None else age // 1000
    return out


def energies(app, offset):
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
    return energies(app, 69)
