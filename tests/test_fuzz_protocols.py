"""Property tests (hypothesis) of the other sans-I/O parsers a client or a user feeds:
the Modbus stream (modbus.ModbusConnection), the HTTP request reader (webconn), and
settings.toml (settings_toml, storage).

Contracts: nothing raises but the documented errors; a request split anywhere gets the same
answers as sent whole; every answer is a well-formed ADU of the connection's framing;
buffers stay within their fixed sizes; a settings dict written and read back is the same,
whatever the text fields hold.
"""

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from han2x_core import settings as S
from han2x_core import settings_toml, settings_write
from han2x_core.crc import crc_modbus
from han2x_core.modbus import ADU_SIZE, CLOSE, ModbusConnection
from han2x_core.modbus_pdu import ModbusHandler
from han2x_core.registers import Registers
from han2x_core.storage import SettingsStore
from han2x_core.webconn import Conn, Request
from support.modbus_frames import mbap, rtu

# make test explores the same 300 examples every run (CI must not turn red by chance);
# FUZZ_EXAMPLES=5000 explores anew. Known open finding: docs/registers.md, "Framing".
_EXPLORE = os.environ.get("FUZZ_EXAMPLES")
FUZZ = settings(max_examples=int(_EXPLORE or 300), derandomize=not _EXPLORE, database=None,
                deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- Modbus stream


def _pdu(fc, addr, qty):
    if fc in (3, 4):
        return struct.pack(">BHH", fc, addr, qty)
    if fc == 6:
        return struct.pack(">BHH", 6, addr, qty)
    if fc == 16:
        words = [(i * 7 + 1000) & 0xFFFF for i in range(qty)]
        return struct.pack(">BHHB", 16, addr, qty, 2 * qty) + b"".join(
            struct.pack(">H", w) for w in words)
    if fc == 0x16:
        return struct.pack(">BHHH", 0x16, addr, 0xFFFF, qty)
    return bytes([fc]) + struct.pack(">HH", addr, qty)


@st.composite
def pdus(draw):
    fc = draw(st.sampled_from([3, 4, 6, 16, 0x16, 0x2B, 1, 2, 5, 0x41]))
    addr = draw(st.integers(0, 90))
    qty = draw(st.integers(0, 130)) if fc != 16 else draw(st.integers(1, 10))
    if fc == 6 and addr in (44, 45, 48, 49):
        qty = draw(st.integers(0, 20))  # scaling halves: small values, mostly refused
    if fc == 0x2B:
        return bytes([0x2B, 0x0E, draw(st.integers(0, 5)), draw(st.integers(0, 8))])
    return _pdu(fc, addr, qty)


def run_stream(chunks, unit_id=0):
    """Feed chunks as a server would (feed, then respond until 0 or CLOSE). Returns the
    answers, whether the connection was closed, and the connection."""
    handler = ModbusHandler(Registers(firmware_version=0x0100), unit_id=unit_id)
    conn = ModbusConnection(handler)
    out = bytearray(ADU_SIZE)
    answers = []
    for chunk in chunks:
        data = bytearray(chunk)
        while data:
            took = conn.feed(data, len(data))
            del data[:took]
            assert 0 <= conn.rx_len <= ADU_SIZE
            while True:
                m = conn.respond(out)
                if m == CLOSE:
                    return answers, True, conn
                if m == 0:
                    break
                assert 0 < m <= ADU_SIZE
                answers.append(bytes(out[:m]))
            if took == 0 and data:  # full and nothing to answer: the server closes
                return answers, True, conn
    return answers, False, conn


def split(data, cuts, first):
    """data cut at cuts (taken modulo its length). The first segment holds at least the
    first request (first bytes): the framing is detected on it. Clients write a request
    with one send(), and a segment that short is not split; within a request the two
    framings can look alike (docs/registers.md, "Framing")."""
    cuts = sorted(set(first if c < 0 else first + c % (len(data) - first + 1) for c in cuts))
    pieces, last = [], 0
    for c in cuts:
        pieces.append(data[last:c])
        last = c
    pieces.append(data[last:])
    return [p for p in pieces if p]


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.sampled_from([0, 1, 17, 255]), pdus()),
                min_size=1, max_size=6), st.lists(st.integers(0, 2000), max_size=8))
def test_mbap_requests_split_anywhere_get_the_same_answers(requests, cuts):
    stream = b"".join(mbap(t, u, p) for t, u, p in requests)
    whole, closed, _ = run_stream([stream])
    assert not closed
    assert len(whole) == len(requests)  # one answer per request, in order
    for (tid, unit, pdu), answer in zip(requests, whole):
        assert struct.unpack(">HHHB", answer[:7]) == (tid, 0, len(answer) - 6, unit)
        fc = answer[7]
        assert fc in (pdu[0], pdu[0] | 0x80)
        if fc & 0x80:
            assert len(answer) == 9 and answer[8] in (1, 2, 3)
    pieces, closed, _ = run_stream(split(stream, cuts, 7 + len(requests[0][2])))
    assert not closed and pieces == whole


@FUZZ
@given(st.lists(st.tuples(st.sampled_from([0, 1, 17, 255]), pdus()), min_size=1, max_size=6),
       st.lists(st.integers(0, 2000), max_size=8))
def test_rtu_requests_split_anywhere_get_the_same_answers(requests, cuts):
    stream = b"".join(rtu(u, p) for u, p in requests)
    whole, closed, _ = run_stream([stream])
    assert not closed
    for answer in whole:
        assert crc_modbus(answer, 0, len(answer) - 2) == answer[-2] | answer[-1] << 8
    # every known function is answered; an unknown one too when its CRC ends the segment
    known = [p for _u, p in requests if p[0] in (1, 2, 3, 4, 5, 6, 15, 16, 0x16, 0x17, 0x2B)]
    assert len(whole) >= len(known)
    first = 3 + len(requests[0][1])
    if requests[0][1][0] not in (1, 2, 3, 4, 5, 6, 7, 11, 12, 15, 16, 17, 0x16, 0x17, 0x2B):
        # an unknown function code has no length of its own: the packet that carries the
        # first request must end with it (docs/registers.md, "Framing")
        cuts = list(cuts) + [-1]
    pieces, closed, _ = run_stream(split(stream, cuts, first))
    assert not closed
    if all(p[0] in (3, 4, 6, 16, 0x16, 0x2B) for _u, p in requests):
        assert pieces == whole


@FUZZ
@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=5),
       st.sampled_from([0, 1]))
def test_any_bytes_never_raise_and_answers_are_well_formed(chunks, unit_id):
    answers, _closed, conn = run_stream(chunks, unit_id)
    check_answers(answers, conn)


def check_answers(answers, conn):
    for a in answers:
        if conn.mode == 1:  # MBAP
            assert len(a) >= 9 and struct.unpack(">H", a[4:6])[0] == len(a) - 6
        else:
            assert len(a) >= 5 and crc_modbus(a, 0, len(a) - 2) == a[-2] | a[-1] << 8


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), pdus()), min_size=1, max_size=4),
       st.integers(0, 400), st.integers(0, 255))
def test_mutated_mbap_streams_never_raise(requests, at, value):
    stream = bytearray(b"".join(mbap(t, 1, p) for t, p in requests))
    stream[at % len(stream)] = value
    answers, closed, conn = run_stream([bytes(stream)])
    if at % len(stream) >= 12:  # the first request is intact: it is read as MBAP
        assert conn.mode == 1 and answers
    check_answers(answers, conn)


# ---------------------------------------------------------------- HTTP request reader


def reader(data, size=2048):
    buf = bytearray(size)
    n = min(len(data), size)
    buf[:n] = data[:n]
    conn = Conn(None, ("127.0.0.1", 1), buf, 0)
    conn.n = n
    return conn


TOKENS = st.sampled_from([b"GET ", b"POST ", b"/", b"/settings", b"?a=1&b", b" HTTP/1.1",
                          b"\r\n", b"\r\n\r\n", b"Host: x", b"Content-Length: ", b"12", b"-1",
                          b"99999999", b"Cookie: s=1; t", b"Content-Type: text/plain",
                          b"Transfer-Encoding: chunked", b":", b" ", b"\xff\xfe", b"a=b"])


@FUZZ
@given(st.one_of(st.binary(max_size=3000), st.lists(TOKENS, max_size=30).map(b"".join)))
def test_http_reader_never_raises_but_value_error(data):
    conn = reader(data)
    status = conn.complete()
    assert status in (0, 1, 400, 411, 413, 431)
    if status != 1:
        return
    assert conn.head_end <= conn.need <= conn.n
    try:
        req = Request(conn.buf[:conn.need], conn.head_end)
    except (ValueError, UnicodeError):
        return
    assert req.path.startswith("/")
    req.content_type()
    req.cookie("s")
    req.arg("a")
    assert len(req.body) == conn.need - conn.head_end


@FUZZ
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
       st.integers(0, 64))
def test_http_request_with_any_path_and_body_reads_back(path, body_len):
    path = path.replace(" ", "%20").replace("\r", "").replace("\n", "")
    raw = ("POST /%s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % (
        path, body_len)).encode()
    raw += b"x" * body_len
    conn = reader(raw)
    assert conn.complete() == 1
    if any(c < " " or c == "\x7f" for c in path):  # control characters: refused
        with pytest.raises(ValueError):
            Request(conn.buf[:conn.need], conn.head_end)
        return
    req = Request(conn.buf[:conn.need], conn.head_end)
    assert req.method == "POST" and req.body == b"x" * body_len


# ---------------------------------------------------------------- settings.toml


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=64)


@FUZZ
@given(st.text(max_size=2000))
def test_settings_text_never_raises(text):
    d, warnings = settings_toml.parse(text)
    assert isinstance(d, dict) and all(isinstance(w, str) for w in warnings)
    clean, extra, warnings = settings_toml.from_text(text)
    assert set(clean) == set(S.DEFAULTS)
    assert S.validate(clean)[1] == {}


@FUZZ
@given(TEXT, st.integers(1, 65535), st.integers(10, 1_000_000), st.booleans())
def test_settings_round_trip_whatever_the_password(password, port, scaling, dhcp):
    clean, errors = S.validate(dict(S.DEFAULTS, web_password=password, modbus_port=port,
                                    scaling_factor=scaling, dhcp=dhcp))
    if errors:  # refused (control characters, too long, port clash): a message, no crash
        assert all(isinstance(m, str) and m for m in errors.values())
        return
    back, extra, warnings = settings_toml.from_text(settings_write.serialise(clean))
    assert back == clean and warnings == [] and extra == {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(TEXT)
def test_settings_store_saves_and_loads_any_valid_password(tmp_path, password):
    clean, errors = S.validate(dict(S.DEFAULTS, web_password=password))
    if errors:
        return
    store = SettingsStore(str(tmp_path / "settings.toml"))
    store.save(clean)
    loaded, warning = store.load()
    assert loaded == clean and not warning


def test_escapes_that_are_not_characters_are_refused():
    """TOML's \\u and \\U take a Unicode scalar value with all its digits: a surrogate
    (which no file can be saved with afterwards), too few digits or one out of range is a
    bad escape, reported; a password with one fails closed (docs/settings.md)."""
    for escape in ("\\ud800", "\\uDFFF", "\\U0000d800", "\\u12", "\\U00110000", "\\u+123"):
        clean, _extra, warnings = settings_toml.from_text('web_password = "a%sb"\n' % escape)
        assert clean["web_password"] is None and warnings == [
            "line 1: bad \\%s escape" % escape[1],
            settings_toml.LOCKED % "cannot be read"], escape
    clean, _extra, warnings = settings_toml.from_text('web_password = "\\u00e6\\U0001F600"\n')
    assert clean["web_password"] == "\u00e6\U0001F600" and warnings == []


# ---------------------------------------------------------------- form bodies


NAME = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@FUZZ
@given(st.dictionaries(NAME, TEXT, max_size=12))
def test_form_bodies_read_back_what_a_browser_encodes(fields):
    """urllib's urlencode (what browsers send for a form) read back by webforms.parse_form."""
    from urllib.parse import urlencode

    from han2x_core.webforms import parse_form

    assert parse_form(urlencode(fields).encode()) == fields


@FUZZ
@given(st.one_of(st.binary(max_size=200),
                 st.lists(st.sampled_from([b"a", b"=", b"&", b"%", b"%4", b"%41", b"%zz",
                                           b"+", b"%C3", b"%A6", b"%-1", b"\xc3"]),
                          max_size=40).map(b"".join)))
def test_any_form_body_reads_or_raises_value_error(body):
    from han2x_core.webforms import parse_form

    try:
        form = parse_form(body)
    except ValueError:  # UnicodeError is one: the page answers 400
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in form.items())


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(S.DEFAULTS)),
                       JSON | st.sampled_from([80, 502, "80", "502", 65535, 0]),
                       min_size=1, max_size=6))
def test_any_json_values_for_the_settings_are_checked_never_raise(data):
    """POST /api/settings takes any JSON object: each value is accepted and converted, or
    refused with a message; clean (what a settings file with bad lines starts with)
    validates again unchanged: found {"web_port": 0, "modbus_port": 80}, which left both
    servers wanting port 80."""
    clean, errors = S.validate(dict(S.DEFAULTS, **data))
    assert set(clean) == set(S.DEFAULTS)
    assert all(isinstance(m, str) and m for m in errors.values())
    # a port clash; a service that takes W5500 sockets (HAN stream, MQTT) turned on
    # against the default Modbus clients: the budget's message is on modbus_max_clients
    budget = {"modbus_max_clients"} if set(data) & {"han_stream_port", "mqtt_host"} else set()
    assert set(errors) <= set(data) | {"web_port", "modbus_port"} | budget
    again, errors2 = S.validate(clean)
    assert errors2 == {} and again == clean
