"""Values as the pages show them: fmt() here and fmt() in www/app.js format identically
(integer arithmetic); val() is a value's element, which app.js refreshes from the JSON API.
Shared by the dashboard (webstatus.py) and the diagnostics page (webdiag.py); loaded per
request and dropped again afterwards (webroutes.release).
"""

from han2x_core.webpages import NA, esc


def fmt(f, v):
    """Format a value for display; the same rules as fmt() in www/app.js."""
    if v is None or v == "":
        return NA
    if f == "make":  # aidon -> Aidon
        return v[:1].upper() + v[1:]
    if f == "clock":
        return "%04d-%02d-%02d %02d:%02d:%02d" % (v["year"], v["month"], v["day"], v["hour"],
                                                   v["minute"], v["second"])
    if f == "uptime":
        return "%d d %02d:%02d:%02d" % (v // 86400, v // 3600 % 24, v // 60 % 60, v % 60)
    if f == "temp":
        return "%.1f \u00b0C" % v
    if f in ("kwh3", "kw3"):  # the capacity tariff's kWh / kW, 3 decimals
        return "%.3f %s" % (v, "kWh" if f == "kwh3" else "kW")
    if f in ("w", "var", "kwh", "kvarh", "mem"):
        return "%d %s" % (v, {"w": "W", "var": "VAr", "kwh": "kWh", "kvarh": "kVArh",
                              "mem": "B"}[f])
    if f in ("ma", "dv", "wh", "varh"):
        sign = "-" if v < 0 else ""
        a = -v if v < 0 else v
        if f == "ma":
            return "%s%d.%02d A" % (sign, a // 1000, a % 1000 // 10)
        if f == "dv":
            return "%s%d.%d V" % (sign, a // 10, a % 10)
        return "%s%d.%03d %s" % (sign, a // 1000, a % 1000, "kWh" if f == "wh" else "kVArh")
    return str(v)


def val(tag, key, f, value, extra=""):
    return '<%s data-k="%s" data-f="%s"%s>%s</%s>' % (tag, key, f, extra, esc(fmt(f, value)), tag)
