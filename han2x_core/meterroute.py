"""Turns the meter profiles on and off (settings sunspec_model, em24_unit, sdm630_unit):
imports the module of each profile that is on, builds its map and hands it to the Modbus
handler (modbus_pdu.ModbusHandler.routes / .sunspec); drops the modules of those turned
off. Loaded by modbus_server.configure only while a profile is on or was on.
Why unit ids and not a second port: docs/integration.md "Meter profiles".
"""

import sys

_MODULES = ("meter_sunspec", "meter_em24", "meter_sdm630", "meterutil", "meterroute")


def configure(handler, settings):
    """Apply the profile settings to handler; a profile whose setting is unchanged keeps its
    map (and the EM24's application mode)."""
    regs = handler.regs
    model = settings.get("sunspec_model", 0)
    old = handler.sunspec
    if not model:
        handler.sunspec = None
    elif old is None or old.model != model:
        from han2x_core.meter_sunspec import SunSpec

        handler.sunspec = SunSpec(regs, model)
    routes = []
    old = handler.routes or ()
    for key in ("em24_unit", "sdm630_unit"):
        unit = settings.get(key, 0)
        if not unit:
            continue
        kept = None
        for r in old:
            if r.unit == unit and r.key == key:
                kept = r
        if kept is None:
            if key == "em24_unit":
                from han2x_core.meter_em24 import Em24 as Map
            else:
                from han2x_core.meter_sdm630 import Sdm630 as Map  # type: ignore[assignment]
            kept = Map(regs, unit)
        routes.append(kept)
    handler.routes = tuple(routes) if routes else None
    handler.target = None
    if handler.sunspec is None and handler.routes is None:
        import han2x_core

        for name in _MODULES:  # off = no code held either
            if sys.modules.pop("han2x_core." + name, None) is not None:
                try:
                    delattr(han2x_core, name)  # the package holds its submodules too
                except Exception:  # not bound on the package
                    pass

