"""One register map (issue 13): registers.LAYOUT is the one list of the map's registers. The
web's register page, /api/registers, www/registers.txt (the names) and docs/registers.md's
tables must list exactly the registers it lists; each test fails when one of them drifts."""

import html
import json
import os
import re
import struct

import pytest

from han2x_core import registers, webdata
from han2x_core.registers import COUNT, LAYOUT
from support.webdevice import Device

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TXT = os.path.join(ROOT, "han2x_core", "www", "registers.txt")
AIDON_L2 = "aidon-6534-l2-elwiz-x077"
# 40080 is documented as reserved and not listed (docs/registers.md, "Capacity tariff").
RESERVED_UNLISTED = {79}


def expected():
    """[(offset, words)] from registers.LAYOUT's runs, expanded here, not by webdata."""
    out = []
    assert len(LAYOUT) % 3 == 0
    for i in range(0, len(LAYOUT), 3):
        first, words, count = LAYOUT[i:i + 3]
        out += [(first + words * k, words) for k in range(count)]
    return out


def covered(pairs):
    return [o for first, words in pairs for o in range(first, first + words)]


def names():
    with open(TXT, encoding="utf-8") as f:
        return [line.rstrip("\n").split("|") for line in f if not line.startswith("#")]


@pytest.fixture
def dev(tmp_path):
    d = Device(tmp_path)
    yield d
    d.close()


def test_the_layout_covers_the_image_once_in_order():
    regs = covered(expected())
    assert regs == sorted(set(regs)), "overlapping or out of order"
    assert set(regs) | RESERVED_UNLISTED == set(range(COUNT))
    assert not set(regs) & RESERVED_UNLISTED
    assert all(words in (1, 2) for _o, words in expected())
    # registers.py's own named places are register starts of the layout, with their width
    starts = dict(expected())
    for offset in registers.NEVER_DECREASING:
        assert starts[offset] == 2
    assert starts[registers.TARIFF_OFF] == 1


def test_webdata_derives_its_layout_from_registers_py(monkeypatch):
    assert list(webdata.layout()) == expected()
    # a register added to registers.LAYOUT shows up in the API's layout without another edit
    monkeypatch.setattr(registers, "LAYOUT", LAYOUT + (COUNT, 2, 1))
    assert list(webdata.layout())[-1] == (COUNT, 2)


def test_registers_txt_names_every_register_of_the_layout():
    rows = names()
    assert len(rows) == len(expected()), "www/registers.txt: one line per register of LAYOUT"
    for row in rows:
        assert len(row) == 3 and row[0] and row[1], row


def test_docs_tables_list_the_registers_of_the_layout():
    """Every row "| 40001-40002 | 0-1 |" of docs/registers.md's register tables covers
    registers of the layout, whole (a row may cover several, e.g. the five peaks), and
    together the rows cover exactly the layout."""
    with open(os.path.join(ROOT, "docs", "registers.md"), encoding="utf-8") as f:
        text = f.read()
    rows = re.findall(r"^\| (\d{5})(?:-(\d{5}))? \| (\d+)(?:-(\d+))? \|", text, re.M)
    assert rows
    starts = {o for o, _w in expected()}
    ends = {o + w - 1 for o, w in expected()}
    doc = []
    for a1, a2, o1, o2 in rows:
        first, last = int(o1), int(o2 or o1)
        assert int(a1) - 40001 == first and int(a2 or a1) - 40001 == last, (a1, a2, o1, o2)
        assert first in starts and last in ends, "docs row %s-%s splits a register" % (o1, o2)
        doc += range(first, last + 1)
    assert sorted(doc) == covered(expected())


def modbus_values(regs):
    """{offset: value} read through Registers.read as a Modbus client reads them, decoded
    here by the layout's widths (the one int32 is 40060-40061)."""
    out = {}
    for offset, words in expected():
        buf = bytearray(2 * words)
        assert regs.read(offset, words, buf, 0) == 0
        if words == 1:
            out[offset] = struct.unpack(">H", buf)[0]
        else:
            out[offset] = struct.unpack(">i" if offset == 59 else ">I", buf)[0]
    return out


def test_api_registers_lists_the_layout_with_modbus_values(dev):
    dev.feed(AIDON_L2)
    regs = json.loads(dev.get("/api/registers")[2])["registers"]
    values = modbus_values(dev.regs)
    assert [r[0] for r in regs] == [o for o, _w in expected()]
    assert {r[0]: r[1] for r in regs} == values
    assert values[0] > 0  # the telegram's power is in it


def test_register_page_lists_the_layout_with_names_and_values(dev):
    dev.feed(AIDON_L2)
    for lang, column in (("en", 0), ("nb", 1)):
        page = dev.get("/registers", {"Accept-Language": lang})[2].decode()
        rows = re.findall(r"<tr><td>([\d-]+)</td><td>([\d-]+)</td><td>([^<]*)</td>"
                          r"<td>([^<]*)</td><td data-r=\"(\d+)\">([^<]*)</td></tr>", page)
        values = modbus_values(dev.regs)
        want = []
        for (offset, words), row in zip(expected(), names()):
            last = offset + words - 1
            span = "%d" if words == 1 else "%d-%d"
            want.append((span % ((40001 + offset,) if words == 1 else (40001 + offset,
                                                                          40001 + last)),
                         span % ((offset,) if words == 1 else (offset, last)),
                         row[column], row[2], str(offset), str(values[offset])))
        assert [tuple(html.unescape(c) for c in r) for r in rows] == want
