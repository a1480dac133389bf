"""docs/integration.md's Home Assistant YAML: it parses, and every energy sensor (what the
energy dashboard's long-term statistics take) reads a register that docs/registers.md
documents as never decreasing, the same registers the firmware keeps across restarts
(registers.NEVER_DECREASING; tests/test_simulate_energy.py restarts the device on them)."""

import os
import re

import yaml

from han2x_core.registers import COUNT, NEVER_DECREASING
from support.util import ROOT

DOCS = os.path.join(ROOT, "docs")


def _read(name):
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        return f.read()


def ha_yaml():
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", _read("integration.md"), re.S)
              if b.startswith("modbus:")]
    assert len(blocks) == 1, "integration.md has one tested Home Assistant YAML"
    return yaml.safe_load(blocks[0])


def documented_never_decreasing():
    """Offsets of the registers docs/registers.md lists under "Never decreasing:"."""
    line = re.search(r"\*\*Never decreasing: ([^*]+)\*\*", _read("registers.md"), re.S)
    assert line, "docs/registers.md names the never-decreasing registers"
    pairs = re.findall(r"(4\d{4})-(4\d{4})", line.group(1))
    return {int(a) - 40001 for a, b in pairs if int(b) == int(a) + 1}


def sensors():
    config = ha_yaml()
    (hub,) = config["modbus"]
    assert hub["type"] == "tcp" and hub["port"] == 502
    return hub["sensors"]


def test_docs_and_firmware_name_the_same_never_decreasing_registers():
    assert documented_never_decreasing() == set(NEVER_DECREASING)


def test_every_energy_sensor_reads_a_never_decreasing_register():
    safe = documented_never_decreasing()
    energy = [s for s in sensors() if s.get("device_class") == "energy"]
    assert {s["address"] for s in energy} == {61, 63}  # import and export, in Wh
    for s in energy:
        assert s["address"] in safe, s["name"]
        assert s["state_class"] == "total_increasing", s["name"]
        assert s["data_type"] == "uint32" and s["input_type"] == "holding", s["name"]
        assert s["unit_of_measurement"] == "kWh" and s["scale"] == 0.001, s["name"]
        assert s["nan_value"] == 0, s["name"]  # 0x00000000, read by YAML as the integer 0


def test_no_other_sensor_feeds_long_term_energy_statistics():
    safe = documented_never_decreasing()
    for s in sensors():
        if s.get("state_class") in ("total", "total_increasing"):
            assert s["address"] in safe, s["name"]


def test_every_sensor_reads_inside_the_map():
    words = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2}
    names = set()
    for s in sensors():
        assert s["name"] not in names
        names.add(s["name"])
        assert 0 <= s["address"] and s["address"] + words[s["data_type"]] <= COUNT, s["name"]


def test_country_note_quotes_no():
    text = _read("integration.md")
    snippet = re.search(r"`(country: \"NO\")`", text)
    assert snippet and yaml.safe_load(snippet.group(1)) == {"country": "NO"}
    assert yaml.safe_load("country: NO") == {"country": False}  # why it must be quoted
