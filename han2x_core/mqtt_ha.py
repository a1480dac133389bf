"""What the gateway publishes over MQTT: state payloads read from the register image (so
MQTT says what Modbus serves), meter info, and Home Assistant discovery configs.

Pure core. Topics and payloads are documented for users in docs/integration.md. Discovery:
per-entity configs `<discovery>/sensor/han2x_<meter id>/<key>/config` (Home Assistant's
MQTT discovery, one retained message per sensor, all of them in one device per meter).
"""

from micropython import const

_OFF_PRESENT = const(52)
_OFF_STATUS = const(50)
_OFF_NET = const(59)
_STATUS_TOTALS = const(4)
_STATUS_RESTORED = const(32)

# (key, offset, present bit, kind) of the power topic; kind: w = int, a = mA -> A,
# v = dV -> V. Offsets and bits: docs/registers.md.
_POWER = (("import_w", 0, 0, "w"), ("export_w", 2, 1, "w"),
          ("reactive_import_var", 4, 2, "w"), ("reactive_export_var", 6, 3, "w"),
          ("current_l1_a", 8, 4, "a"), ("current_l2_a", 10, 5, "a"),
          ("current_l3_a", 12, 6, "a"), ("voltage_l1_v", 14, 7, "v"),
          ("voltage_l2_v", 16, 8, "v"), ("voltage_l3_v", 18, 9, "v"))
ENERGY_KEYS = ("import_kwh", "export_kwh", "reactive_import_kvarh", "reactive_export_kvarh")
TOTALS = const(61)  # the never-decreasing hourly totals (registers.NEVER_DECREASING)
ESTIMATES = const(69)

# Discovery: (topic, key, name, unit, device_class, state_class). "" = left out.
SENSORS = (
    ("power", "import_w", "Power import", "W", "power", "measurement"),
    ("power", "export_w", "Power export", "W", "power", "measurement"),
    ("power", "net_w", "Net power", "W", "power", "measurement"),
    ("power", "reactive_import_var", "Reactive power import", "var", "reactive_power",
     "measurement"),
    ("power", "reactive_export_var", "Reactive power export", "var", "reactive_power",
     "measurement"),
    ("power", "current_l1_a", "Current L1", "A", "current", "measurement"),
    ("power", "current_l2_a", "Current L2", "A", "current", "measurement"),
    ("power", "current_l3_a", "Current L3", "A", "current", "measurement"),
    ("power", "voltage_l1_v", "Voltage L1", "V", "voltage", "measurement"),
    ("power", "voltage_l2_v", "Voltage L2", "V", "voltage", "measurement"),
    ("power", "voltage_l3_v", "Voltage L3", "V", "voltage", "measurement"),
    # The energy dashboard's sensors: never decreasing, hourly from the meter.
    ("energy", "import_kwh", "Energy import", "kWh", "energy", "total_increasing"),
    ("energy", "export_kwh", "Energy export", "kWh", "energy", "total_increasing"),
    ("energy", "reactive_import_kvarh", "Reactive energy import", "kvarh", "",
     "total_increasing"),
    ("energy", "reactive_export_kvarh", "Reactive energy export", "kvarh", "",
     "total_increasing"),
    # Estimated now: grows between the hourly totals; "total" because after a restart it
    # resumes from the last hourly save (docs/registers.md), which is not a meter reset.
    ("estimate", "import_kwh", "Energy import (estimated now)", "kWh", "energy", "total"),
    ("estimate", "export_kwh", "Energy export (estimated now)", "kWh", "energy", "total"),
)
COUNT = const(17)
_MAKERS = {"aidon": "Aidon", "kaifa": "Kaifa", "kamstrup": "Kamstrup"}


def _q(text):
    """A JSON string literal (meter texts come from the meter: escape them)."""
    out = str(text).replace("\\", "\\\\").replace('"', '\\"')  # allocates: short text
    return '"' + "".join(c if 32 <= ord(c) < 127 else "?" for c in out) + '"'


def _u32(regs, offset):
    return regs.value32(offset)


def _fixed3(n):
    return "%d.%03d" % (n // 1000, n % 1000)


def power(regs):
    """The power topic's JSON from the register image: values as Modbus serves them (the
    scaling factor applied), null for what the meter does not send."""
    present = regs.value(_OFF_PRESENT)
    parts = []  # allocates: one small list and string per telegram
    for key, offset, bit, kind in _POWER:
        if not present >> bit & 1:
            parts.append('"%s":null' % key)
            continue
        n = _u32(regs, offset)
        if kind == "a":
            parts.append('"%s":%s' % (key, _fixed3(n)))
        elif kind == "v":
            parts.append('"%s":%d.%d' % (key, n // 10, n % 10))
        else:
            parts.append('"%s":%d' % (key, n))
    net = _u32(regs, _OFF_NET)
    if net & 0x80000000:
        net -= 0x100000000
    parts.append('"net_w":%d' % net if present & 3 else '"net_w":null')
    return "{" + ",".join(parts) + "}"


def have_energy(regs):
    """True once the registers hold real totals (a meter's hourly list, or restored)."""
    return bool(regs.value(_OFF_STATUS) & (_STATUS_TOTALS | _STATUS_RESTORED))


def energy(regs, offset):
    """The energy (TOTALS) or estimate (ESTIMATES) topic's JSON in kWh/kvarh with 3
    decimals, from the Wh registers; None before the registers hold totals (a 0 would look
    like a meter reset to long-term statistics)."""
    if not have_energy(regs):
        return None
    keys = ENERGY_KEYS if offset == TOTALS else ENERGY_KEYS[:2]
    return "{" + ",".join('"%s":%s' % (keys[i], _fixed3(_u32(regs, offset + 2 * i)))
                          for i in range(len(keys))) + "}"


def info(latest, version):
    """The info topic's JSON: what the meter says it is, and our firmware."""
    return '{"meter":%s,"meter_id":%s,"meter_type":%s,"list_version":%s,"firmware":%s}' % (
        _q(latest.get("meter") or ""), _q(latest.get("meter_id") or ""),
        _q(latest.get("meter_type") or ""), _q(latest.get("list_version") or ""),
        _q(version))


def node_id(meter_id):
    """han2x_<meter id> with only [a-zA-Z0-9_-] (Home Assistant's node_id rule)."""
    return "han2x_" + "".join(c if c.isalpha() or c.isdigit() else "_" for c in meter_id)


def discovery(i, disc, prefix, latest, version):
    """(topic, payload) of sensor i's retained discovery config."""
    topic, key, name, unit, dclass, sclass = SENSORS[i]
    node = node_id(latest.get("meter_id") or "")
    uid = node + ("_est_" if topic == "estimate" else "_") + key
    meter = latest.get("meter") or ""
    extra = ',"device_class":"%s"' % dclass if dclass else ""
    payload = (  # allocates: ~600 bytes per config, once per connection and sensor
        '{"name":"%s","unique_id":"%s","state_topic":"%s/%s",'
        '"value_template":"{{ value_json.%s }}","unit_of_measurement":"%s"%s,'
        '"state_class":"%s","availability_topic":"%s/status",'
        '"device":{"identifiers":["%s"],"name":%s,"manufacturer":%s,"model":%s,'
        '"serial_number":%s,"sw_version":%s},"origin":{"name":"HAN2X open firmware",'
        '"sw_version":%s}}' % (
            name, uid, prefix, topic, key, unit, extra, sclass, prefix, node,
            _q("HAN2X " + (_MAKERS.get(meter, meter) or "meter")),
            _q(_MAKERS.get(meter, meter) or "unknown"), _q(latest.get("meter_type") or ""),
            _q(latest.get("meter_id") or ""), _q(version), _q(version)))
    return "%s/sensor/%s/%s/config" % (disc, node, uid[len(node) + 1:]), payload
