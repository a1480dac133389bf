"""The capacity tariff's line in energy_state.txt (docs/tariff.md): a tariff.Tariff as a few
ints and back. Loaded only while the tariff is on, at start and for each save (App drops it
again), like energystate.py, which writes the line with the energies in one write.
"""

_TARIFF_VERSION = 1


def state(t):
    """A tariff.Tariff as ints: version, year, month, last total, its hour index, last
    month's value, count, then day*100+hour and Wh per peak."""
    out = [_TARIFF_VERSION, t.year, t.month, t.last_total, t.last_idx, t.prev_avg_w, t.count]
    for i in range(t.count):
        out.append(t.peak_at[i])
        out.append(t.peak_wh[i])
    return out


def _restore(t, v):
    """Restore t from state()'s ints; ValueError when they do not check out (nothing
    changed then)."""
    if len(v) < 7 or v[0] != _TARIFF_VERSION or not 0 <= v[6] <= len(t.peak_wh) or \
            len(v) != 7 + 2 * v[6] or (v[1] and not 1 <= v[2] <= 12):
        raise ValueError("tariff state does not check out")
    peaks = v[7:]
    for i in range(0, len(peaks), 2):
        if not (1 <= peaks[i] // 100 <= 31 and peaks[i] % 100 < 24 and peaks[i + 1] >= 0):
            raise ValueError("tariff peak %d does not check out" % (i // 2 + 1))
    t.year, t.month, t.last_total, t.last_idx, t.prev_avg_w = v[1:6]
    t.count = 0
    for i in range(0, len(peaks), 2):
        t.add_peak(peaks[i] // 100, peaks[i] % 100, peaks[i + 1])
    t.restored = True


def restore(t, saved, damaged):
    """At start: saved = energystate.load()'s tariff ints, a str saying why they cannot be used, or
    None; damaged: the file as a whole was not usable. A problem leaves the peaks empty
    with t.warning set (shown on the card, in /api/status and register 40081 bit 2)."""
    why = "the file is damaged" if damaged else None
    if isinstance(saved, str):
        why = saved
    elif saved is not None:
        try:
            _restore(t, saved)
        except ValueError as e:
            why = str(e)
    if why:
        t.warning = "Capacity tariff: peaks not restored (%s); they start empty. Check " \
                    "them on the settings page." % why
