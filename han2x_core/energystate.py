"""The energy state file: the meter's last hourly totals, kept across restarts.

One small text file next to settings.toml (board_io.ENERGY_PATH), written by the same
atomic write as the settings (storage.write_atomic: old or new file after a power cut at
any instant, never a broken one) each time the meter sends an hourly total, at most once
per meter hour (App). Read once at start; registers.Registers.restore serves it
(docs/registers.md "Energy across restarts"). A file that is not sealed, or whose fields
do not check out, is not restored: a warning, never an exception.
Loaded only at start and for each hourly save (App drops it again from sys.modules).

    # HAN2X energy state ...
    meter_id = 7359992890941742
    clock = 2026 11 25 12 0 0          (the meter's clock of the totals; "-" = none)
    totals = 67496192 0 130480 15319940   (A+ A- R+ R-, Wh / VArh, unscaled)
    estimates = 67496258 0 130480 15319940
    tariff = 1 2026 11 67496192 492972 7466 3 1510 8000 ...   (only with the capacity
                         tariff on: tariffstate.state(), its month's peaks; docs/tariff.md)
    # han2x-end <length> <crc32>
"""

from han2x_core.storage import OsFiles, read_recovering, seal, unseal, write_atomic

_HEADER = ("# HAN2X energy state: the meter's last hourly totals, served again after a "
           "restart.\n# Delete this file to forget them (docs/registers.md).\n")
_DAMAGED = "Energy state file %s: %s; energies not restored (they read 0 until the meter's " \
           "next hourly values)."


def _ints(text, count):
    values = [int(v) for v in text.split()]  # ValueError on anything else
    if len(values) != count or min(values) < 0:
        raise ValueError("needs %d whole numbers" % count)
    return values


def parse(text):
    """(meter_id, clock tuple or None, totals, estimates, tariff) from the file's text;
    ValueError. tariff: the tariff line's ints, None without one, or a str saying why it
    cannot be used (the energies are restored all the same)."""
    fields = {}
    for line in text.split("\n"):
        line = line.strip()
        if line and line[0] != "#":
            cut = line.find("=")
            if cut < 0:
                raise ValueError("not key = value: %r" % line[:40])
            fields[line[:cut].strip()] = line[cut + 1:].strip()
    try:
        meter_id = fields["meter_id"]
        clock = fields["clock"]
        totals = _ints(fields["totals"], 4)
        estimates = _ints(fields["estimates"], 4)
    except KeyError as e:
        raise ValueError("no %s" % e)
    if not meter_id:
        raise ValueError("no meter id")
    clock = None if clock == "-" else tuple(_ints(clock, 6))
    tariff = fields.get("tariff")
    if tariff is not None:
        try:
            tariff = [int(v) for v in tariff.split()]
        except ValueError:
            tariff = "its tariff line is not whole numbers"
    return meter_id, clock, totals, estimates, tariff


def serialise(meter_id, clock, totals, estimates, tariff=None):
    return "%smeter_id = %s\nclock = %s\ntotals = %s\nestimates = %s\n%s" % (
        _HEADER, meter_id, "-" if clock is None else " ".join(str(v) for v in clock),
        " ".join(str(v) for v in totals), " ".join(str(v) for v in estimates),
        "" if tariff is None else "tariff = %s\n" % " ".join(str(v) for v in tariff))


def load(path, files=None):
    """(state or None, warning or None). Never raises: a bad file gives None + a warning."""
    try:
        data = read_recovering(files or OsFiles(), path)
        if data is None:
            return None, None
        text = unseal(data)
        if text is None:
            return None, _DAMAGED % (path, "incomplete or changed by hand")
        return parse(text), None
    except Exception as e:  # OSError, ValueError, UnicodeError, MemoryError
        return None, _DAMAGED % (path, e)


def save(path, state, files=None, tariff=None):
    """Write state (Registers.energy_state()) and the tariff's ints (tariffstate.state, or
    None) atomically, in one write: one file, one write an hour for both (flash wear).
    Returns False when there is nothing to keep (no meter id yet, or one that is not a
    plain line of text); raises OSError when the drive refuses."""
    meter_id = state[0]
    if not meter_id or meter_id.strip() != meter_id or [c for c in meter_id if c < " "]:
        return False
    write_atomic(files or OsFiles(), path,
                 seal(serialise(*state, tariff=tariff)))  # type: ignore[misc]
    return True

