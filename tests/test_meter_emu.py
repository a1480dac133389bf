"""The meter profiles on a real server over 127.0.0.1, read by real clients: pysunspec2
(the SunSpec Alliance's own) scans the SunSpec map; Victron dbus-modbus-client's EM24
probe and read sequence, reimplemented here from its published behaviour (carlo_gavazzi.py,
device.py's read packing), through pymodbus; the SDM630's float reads through pymodbus
(MBAP) and as RTU frames over TCP. Every value is compared with the HAN2X registers of the
same reading, decoded from captured frames.
"""

import math
import socket
import struct
import threading
import time

import pytest
from pymodbus.client import ModbusTcpClient
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from han2x_core import decode_frame
from han2x_core.modbus_server import ModbusServer
from han2x_core.registers import COUNT, NEVER_DECREASING, Registers
from han2x_core.settings import DEFAULTS
from support.hanframes import by_id
from support.modbus_frames import rtu
from support.util import free_port

MASK = (1 << 29) - 1
THREE_PHASE = ("aidon-6534-l2-elwiz-x077", "aidon-6534-l3-elwiz-20221012T160000")
ONE_PHASE = ("kaifa-ma105h2e-l2-elwiz-20221012T174510",
             "kaifa-ma105h2e-l3-elwiz-20221014T210010")


def now_ms():
    return time.monotonic_ns() // 1_000_000 & MASK


class Device:
    """Registers fed with captured frames, a ModbusServer configured with settings, polled
    by a thread like the app loop."""

    def __init__(self, frames=THREE_PHASE, scaling=1000, **settings):
        self.regs = Registers(scaling=scaling, firmware_version=10)
        for name in frames:
            self.regs.update(decode_frame(by_id(name)[1]), now_ms())
        self.regs.tick(now_ms())
        self.port = free_port()
        self.server = ModbusServer(socket, self.regs, port=self.port)
        s = dict(DEFAULTS, modbus_port=self.port)
        s.update(settings)
        self.server.configure(s)
        self.server.start("127.0.0.1")
        self.handler = self.server.handler
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self._stop:
            self.server.poll(now_ms())
            time.sleep(0.0005)

    def stop(self):
        self._stop = True
        self.thread.join(5)
        self.server.stop()


@pytest.fixture
def device(request):
    made = []

    def make(*args, **kw):
        d = Device(*args, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


def han(regs):
    """The HAN2X values the profiles must agree with."""
    v = regs.value32
    return {
        "power": v(0) - v(2), "reactive": v(4) - v(6),
        "current": [v(8), v(10), v(12)], "voltage": [v(14), v(16), v(18)],
        "totals": [v(off) for off in NEVER_DECREASING],
    }


# ---- SunSpec, read by pysunspec2 ------------------------------------------------------------

@pytest.mark.parametrize("model", [203, 213])
def test_pysunspec2_scan_finds_common_and_meter_model_with_our_values(device, model):
    d = device(sunspec_model=model)
    h = han(d.regs)
    assert h["totals"][0] > 0 and h["power"] != 0 and h["current"][1] > 0
    client = SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=d.port,
                                          timeout=5)
    try:
        client.scan()
        assert client.base_addr == 40000
        assert set(client.models) == {1, "common", model, {203: "ac_meter_abcn", 213: "ac_meter_abcn_float"}[model]}
        common = client.common[0]
        assert common.Mn.cvalue == "HAN2X open firmware"
        assert common.SN.cvalue == "7359992891237028"  # the AMS meter's id
        assert common.Opt.cvalue == "Aidon"
        meter = client.models[model][0]
        meter.read()
        assert meter.W.cvalue == pytest.approx(h["power"])
        assert meter.A.cvalue == pytest.approx(sum(h["current"]) / 1000, abs=0.005)
        for i, ph in enumerate("ABC"):
            assert getattr(meter, "Aph" + ph).cvalue == pytest.approx(h["current"][i] / 1000,
                                                                     abs=0.005)
            assert getattr(meter, "PhVph" + ph).cvalue == pytest.approx(h["voltage"][i] / 10,
                                                                       abs=0.05)
        assert meter.TotWhImp.cvalue == pytest.approx(h["totals"][0])
        # This meter never exported: 0, which an acc32 of model 203 cannot tell from "not
        # implemented" (SunSpec's own ambiguity; the float of 213 can).
        assert h["totals"][1] == 0
        assert meter.TotWhExp.cvalue == (0 if model == 213 else None)
        assert meter.VAR.cvalue == pytest.approx(h["reactive"], abs=1)
        # Not in an AMS telegram: SunSpec's "not implemented" (None to the client).
        assert meter.Hz.cvalue is None and meter.WphA.cvalue is None and meter.PF.cvalue is None
    finally:
        client.close()


def test_sunspec_213_floats_and_203_scale_factors_raw(device):
    """The bytes behind the client's numbers: 213's float32 words, 203's int16 + SF."""
    d = device(sunspec_model=213)
    h = han(d.regs)
    c = ModbusTcpClient("127.0.0.1", port=d.port)
    assert c.connect()
    try:
        rr = c.read_holding_registers(40000, count=4, device_id=1)
        assert struct.pack(">4H", *rr.registers) == b"SunS\x00\x01\x00\x42"
        body = c.read_holding_registers(40070, count=125, device_id=1).registers
        assert body[:2] == [213, 124]
        w = struct.unpack(">f", struct.pack(">2H", *body[28:30]))[0]
        assert w == h["power"]
        hz = struct.unpack(">f", struct.pack(">2H", *body[26:28]))[0]
        assert math.isnan(hz)
        end = c.read_holding_registers(40196, count=2, device_id=1).registers
        assert end == [0xFFFF, 0]
        assert c.read_holding_registers(40198, count=1, device_id=1).isError()
    finally:
        c.close()


def test_sunspec_203_one_phase_marks_missing_phases_not_implemented(device):
    d = device(frames=ONE_PHASE, sunspec_model=203)
    c = ModbusTcpClient("127.0.0.1", port=d.port)
    assert c.connect()
    try:
        body = c.read_holding_registers(40070, count=107, device_id=1).registers
        assert body[:2] == [203, 105]
        assert body[3] == round(d.regs.value32(8) / 10)  # AphA in 0.01 A (A_SF -2)
        assert body[4] == body[5] == 0x8000  # AphB, AphC: not implemented
        assert body[6] == (-2) & 0xFFFF
        assert body[9] == body[10] == 0x8000
    finally:
        c.close()


# ---- Carlo Gavazzi EM24, the Venus OS sequence ------------------------------------------------

def _s32l(regs, i):
    return struct.unpack("<i", struct.pack("<2H", regs[i], regs[i + 1]))[0]


def _victron_blocks(base_regs, hole_max):
    """dbus-modbus-client's read packing (device.py pack_list): registers sorted by address,
    merged while a read stays within 125 registers and holes within hole_max."""
    regs = sorted(base_regs)
    blocks = [[regs[0]]]
    for base, count in regs[1:]:
        first = blocks[-1][0][0]
        last_base, last_count = blocks[-1][-1]
        end = last_base + last_count
        if base + count - first > 125 or base - end > hole_max:
            blocks.append([])
        blocks[-1].append((base, count))
    return [(b[0][0], b[-1][0] + b[-1][1] - b[0][0]) for b in blocks]


def venus_em24(port, unit):
    """The EM24 probe and read sequence of victronenergy/dbus-modbus-client, as published:
    probe holding 0x000b on the unit, model 1648-1653; application 0xa000 must read 7 or is
    written 7 and read back; info registers; then the data registers, packed into reads."""
    c = ModbusTcpClient("127.0.0.1", port=port)
    assert c.connect()
    try:
        rr = c.read_holding_registers(0x000B, count=1, device_id=unit)
        if rr.isError() or rr.registers[0] not in range(1648, 1654):
            return None
        found = {"model": rr.registers[0]}
        app = c.read_holding_registers(0xA000, count=1, device_id=unit).registers[0]
        if app != 7:
            assert not c.write_register(0xA000, 7, device_id=unit).isError()
            app = c.read_holding_registers(0xA000, count=1, device_id=unit).registers[0]
            assert app == 7
        for base, name in ((0x0302, "hw"), (0x0304, "fw"), (0x1002, "phase_config")):
            rr = c.read_holding_registers(base, count=1, device_id=unit)
            assert not rr.isError(), (hex(base), rr)
            found[name] = rr.registers[0]
        raw = struct.pack(">7H", *c.read_holding_registers(0x5000, count=7,
                                                           device_id=unit).registers)
        found["serial"] = raw.rstrip(b"\0").decode("ascii")
        phases = [3, 3, 2, 1, 3][found["phase_config"]]
        data = [(0x28, 2), (0x33, 1), (0x34, 2), (0x4E, 2), (0xA100, 1)]
        if phases == 3:
            data.append((0x32, 1))
        for n in range(phases):
            data += [(0x00 + 2 * n, 2), (0x0C + 2 * n, 2), (0x12 + 2 * n, 2), (0x40 + 2 * n, 2)]
        hole_max = (5 + 2 + 2 * (20 + 7) + 1) // 2  # modbus_overhead('tcp')
        values = {}
        for start, count in _victron_blocks(data, hole_max):
            rr = c.read_holding_registers(start, count=count, device_id=unit)
            assert not rr.isError(), (hex(start), count, rr)
            for i, v in enumerate(rr.registers):
                values[start + i] = v
        found["blocks"] = _victron_blocks(data, hole_max)
        reg = values
        found["power"] = _s32l([reg[0x28], reg[0x29]], 0) / 10
        found["frequency"] = reg[0x33] / 10
        found["forward"] = _s32l([reg[0x34], reg[0x35]], 0) / 10
        found["reverse"] = _s32l([reg[0x4E], reg[0x4F]], 0) / 10
        found["switch"] = reg[0xA100]
        for n in range(phases):
            s = 2 * n
            found["L%d" % (n + 1)] = (
                _s32l([reg[s], reg[s + 1]], 0) / 10,
                _s32l([reg[0x0C + s], reg[0x0D + s]], 0) / 1000,
                _s32l([reg[0x12 + s], reg[0x13 + s]], 0) / 10)
        return found
    finally:
        c.close()


def test_em24_found_and_read_the_way_venus_os_does(device):
    d = device(em24_unit=2)
    h = han(d.regs)
    found = venus_em24(d.port, 2)
    assert found is not None
    assert found["model"] == 1648
    assert found["blocks"] == [(0x0000, 0x50), (0xA100, 1)]
    assert found["serial"] == "7359992891237028"[-14:]  # 14 characters: 7 registers
    assert found["phase_config"] == 0  # 3P.n: three phases
    assert found["hw"] == found["fw"] == (0 << 12 | 1 << 8 | 0)  # 0.1.0
    assert found["power"] == h["power"]
    assert found["forward"] == h["totals"][0] // 100 / 10
    assert found["reverse"] == h["totals"][1] // 100 / 10
    assert found["frequency"] == 0  # AMS meters do not send it: 0, the EM24 has no marker
    for n in range(3):
        volts, amps, watts = found["L%d" % (n + 1)]
        assert volts == h["voltage"][n] / 10
        assert amps == h["current"][n] / 1000
    split = [found["L%d" % n][2] for n in (1, 2, 3)]
    assert sum(split) == pytest.approx(h["power"], abs=0.3)  # the total, split by current


def test_em24_serial_is_the_meter_id_and_one_phase_meter_is_1p(device):
    d = device(frames=ONE_PHASE, em24_unit=7)
    found = venus_em24(d.port, 7)
    assert found["serial"] == "6970631403151871"[-14:]
    assert found["phase_config"] == 3  # 1P
    assert "L2" not in found
    assert found["L1"][2] == han(d.regs)["power"]  # one phase carries it all


def test_em24_writes_only_the_application_mode(device):
    d = device(em24_unit=2)
    c = ModbusTcpClient("127.0.0.1", port=d.port)
    assert c.connect()
    try:
        assert not c.write_register(0xA000, 3, device_id=2).isError()
        assert c.read_holding_registers(0xA000, count=1, device_id=2).registers == [3]
        rr = c.write_register(0xA000, 8, device_id=2)
        assert rr.isError() and rr.exception_code == 3
        for base in (0x1002, 0x0000, 0x0028, 0xA100):
            rr = c.write_register(base, 1, device_id=2)
            assert rr.isError() and rr.exception_code == 2
        # The HAN2X map on every other unit, unchanged: voltage L1 at offset 14.
        assert c.read_holding_registers(14, count=2, device_id=1).registers == \
            [d.regs.value(14), d.regs.value(15)]
        # In the data block 0x000b is V L3-L1's high word; alone it is the identification.
        assert c.read_holding_registers(0x000A, count=2, device_id=2).registers == [0, 0]
    finally:
        c.close()


def test_stale_data_gives_exception_04_but_the_probe_still_answers(device):
    d = device(em24_unit=2, sdm630_unit=3, sunspec_model=213)
    d.regs._age_ms = 61000  # no telegram for 61 s (registers.STALE_MS)
    d.regs.tick(now_ms() + 5000)
    assert d.regs.value(50) & 1 == 0
    c = ModbusTcpClient("127.0.0.1", port=d.port)
    assert c.connect()
    try:
        assert c.read_holding_registers(0x000B, count=1, device_id=2).registers == [1648]
        for rr in (c.read_holding_registers(0, count=0x50, device_id=2),
                   c.read_input_registers(52, count=2, device_id=3),
                   c.read_holding_registers(40072, count=10, device_id=1)):
            assert rr.isError() and rr.exception_code == 4
        assert c.read_holding_registers(40000, count=70, device_id=1).registers[:2] == \
            [0x5375, 0x6E53]  # "SunS" and model 1 still answer
        assert not c.read_holding_registers(0, count=50, device_id=1).isError()  # HAN2X
    finally:
        c.close()


# ---- Eastron SDM630: float32 input registers, MBAP and RTU over TCP -------------------------

def _f32(words):
    return struct.unpack(">f", struct.pack(">2H", *words))[0]


def test_sdm630_floats_through_pymodbus(device):
    d = device(sdm630_unit=5)
    h = han(d.regs)
    c = ModbusTcpClient("127.0.0.1", port=d.port)
    assert c.connect()
    try:
        r = c.read_input_registers(0, count=60, device_id=5).registers
        for i in range(3):
            assert _f32(r[2 * i:2 * i + 2]) == pytest.approx(h["voltage"][i] / 10)
            assert _f32(r[6 + 2 * i:8 + 2 * i]) == pytest.approx(h["current"][i] / 1000)
        assert _f32(r[52:54]) == h["power"]
        assert _f32(r[48:50]) == pytest.approx(sum(h["current"]) / 1000)
        r = c.read_input_registers(70, count=10, device_id=5).registers
        assert _f32(r[0:2]) == 0  # frequency: not in the telegram
        assert _f32(r[2:4]) == pytest.approx(h["totals"][0] / 1000)
        assert _f32(r[4:6]) == pytest.approx(h["totals"][1] / 1000)
        r = c.read_input_registers(342, count=2, device_id=5).registers
        assert _f32(r) == pytest.approx((h["totals"][0] + h["totals"][1]) / 1000)
        rr = c.read_input_registers(0, count=62, device_id=5)  # over 30 parameters
        assert rr.isError() and rr.exception_code == 3
        rr = c.read_holding_registers(0, count=2, device_id=5)
        assert rr.isError() and rr.exception_code == 2
        rr = c.read_input_registers(100, count=2, device_id=5)
        assert rr.isError() and rr.exception_code == 2
        # Unit 5 is the SDM630's; unit 1 is still the HAN2X FC04 mirror.
        assert c.read_input_registers(0, count=2, device_id=1).registers == \
            [d.regs.value(0), d.regs.value(1)]
    finally:
        c.close()


def test_sdm630_rtu_over_tcp_like_evcc_rs485tcpip(device):
    d = device(sdm630_unit=1, modbus_unit_id=0)
    h = han(d.regs)
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
        s.sendall(rtu(1, struct.pack(">BHH", 4, 52, 2)))
        ans = _recv(s, 9)
        assert ans[:3] == bytes([1, 4, 4])
        assert ans == rtu(1, ans[1:7])  # CRC valid
        assert struct.unpack(">f", ans[3:7])[0] == h["power"]
        s.sendall(rtu(1, struct.pack(">BHH", 4, 72, 2)))
        ans = _recv(s, 9)
        assert struct.unpack(">f", ans[3:7])[0] == pytest.approx(h["totals"][0] / 1000)
        s.sendall(rtu(2, bytes.fromhex("03 00 0E 00 02")))  # the HAN2X map on unit 2
        ans = _recv(s, 9)
        assert ans == rtu(2, bytes([3, 4]) + struct.pack(">I", d.regs.value32(14)))


def _recv(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk
        data += chunk
    return data


# ---- scaling, energies and switching profiles -------------------------------------------------

def test_values_follow_the_scaling_factor_like_the_han2x_registers(device):
    d = device(scaling=2500, sdm630_unit=3, em24_unit=4)
    h = han(d.regs)
    c = ModbusTcpClient("127.0.0.1", port=d.port)
    assert c.connect()
    try:
        r = c.read_input_registers(52, count=2, device_id=3).registers
        assert _f32(r) == h["power"] == d.regs.value32(0) - d.regs.value32(2)
        r = c.read_holding_registers(0x0C, count=2, device_id=4).registers
        assert _s32l(r, 0) == h["current"][0]
    finally:
        c.close()


def test_turning_profiles_off_drops_their_modules():
    import sys

    regs = Registers()
    server = ModbusServer(socket, regs, port=0)
    server.configure(dict(DEFAULTS, sunspec_model=203, em24_unit=2, sdm630_unit=3))
    h = server.handler
    assert h.sunspec.model == 203 and [r.unit for r in h.routes] == [2, 3]
    em24 = h.routes[0]
    server.configure(dict(DEFAULTS, sunspec_model=213, em24_unit=2))
    assert h.sunspec.model == 213 and h.routes == (em24,)  # unchanged: the same map
    server.configure(dict(DEFAULTS))
    assert h.sunspec is None and h.routes is None
    for name in ("meterroute", "meter_sunspec", "meter_em24", "meter_sdm630", "meterutil"):
        assert "han2x_core." + name not in sys.modules


# ---- the HAN2X map with every profile on ---------------------------------------------------

def test_han2x_map_unchanged_with_every_profile_on(device):
    """The spec's register map (test_simulate.check_map), both framings, FC03 and its FC04
    mirror, on units 0, 1 and 255, while SunSpec, EM24 (unit 2) and SDM630 (unit 3) are on;
    and the manual's RTU example byte for byte."""
    from pymodbus import FramerType

    from test_simulate import check_map

    case = "kaifa-ma304h3e-l3-elwiz-20230331T130010"
    d = device(frames=(case,), sunspec_model=203, em24_unit=2, sdm630_unit=3)
    reading = by_id(case)[0]["expected"]
    tcp = ModbusTcpClient("127.0.0.1", port=d.port)
    rtu = ModbusTcpClient("127.0.0.1", port=d.port, framer=FramerType.RTU)
    assert tcp.connect() and rtu.connect()
    try:
        words = tcp.read_holding_registers(0, count=50, device_id=1).registers
        check_map(words, reading, 1000)
        whole = tcp.read_holding_registers(0, count=COUNT, device_id=1).registers
        assert struct.pack(">%dH" % COUNT, *whole) == bytes(d.regs.image)
        for unit in (0, 1, 255):
            assert tcp.read_input_registers(0, count=COUNT, device_id=unit).registers == whole
            assert rtu.read_holding_registers(0, count=COUNT, device_id=unit).registers == whole
            assert rtu.read_input_registers(0, count=COUNT, device_id=unit).registers == whole
        rr = tcp.read_holding_registers(COUNT, count=1, device_id=1)  # past the map: as before
        assert rr.isError() and rr.exception_code == 2
    finally:
        tcp.close()
        rtu.close()
    d.regs.update({"voltage_l1_dv": 2390}, now_ms())  # the manual's example value
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
        s.sendall(bytes.fromhex("01 03 00 0E 00 02 A5 C8"))
        assert _recv(s, 9) == bytes.fromhex("01 03 04 00 00 09 56 7C 5D")


# ---- settings -------------------------------------------------------------------------------

def test_settings_refuse_what_would_hide_a_map_and_count_sockets():
    from han2x_core.settings import W5500_SOCKETS as SOCKETS, sockets_needed, validate

    clean, errors = validate({"sunspec_model": "213", "em24_unit": "2", "sdm630_unit": "3"})
    assert errors == {} and (clean["sunspec_model"], clean["em24_unit"],
                             clean["sdm630_unit"]) == (213, 2, 3)
    clean, errors = validate({"sunspec_model": 204})
    assert errors == {"sunspec_model": "must be 0 (off), 203 or 213"}
    assert clean["sunspec_model"] == 0
    clean, errors = validate({"modbus_unit_id": 5, "em24_unit": 5})
    assert "modbus_unit_id" in errors["em24_unit"] and clean["em24_unit"] == 0
    clean, errors = validate({"em24_unit": 4, "sdm630_unit": 4})
    assert errors == {"sdm630_unit": "must differ from em24_unit"}
    assert clean["em24_unit"] == 4 and clean["sdm630_unit"] == 0
    clean, errors = validate({"em24_unit": 248})
    assert "em24_unit" in errors
    # Profiles by unit id take no socket: the budget is DHCP + 2 listeners + Modbus clients.
    assert sockets_needed(dict(clean, modbus_max_clients=5)) == SOCKETS == 8
    assert sockets_needed(dict(clean, modbus_max_clients=5, em24_unit=2, sdm630_unit=3,
                               sunspec_model=213)) == SOCKETS
