"""Fuzzing the frame reader and decoder over mutated real frames.

Contract: decode_frame raises nothing but DecodeError; HdlcReader never raises, keeps its
fixed buffers, and only ever hands out frames that pass the full check. Hypothesis runs
here on every `make test`; the libFuzzer (atheris) target in tests/fuzz/ runs for a
bounded number of inputs when atheris is installed.
"""

import os
import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from han2x_core import DecodeError, decode_frame
from han2x_core.hdlc import HdlcReader, check_frame
from han2x_core.meters import KEYS
from support.hanframes import corpus, info_of, reframe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMES = [f for _, f in corpus()]
INFOS = [bytes(info_of(f)) for f in FRAMES]
INTS = [k for k in KEYS if k.endswith(("_w", "_var", "_ma", "_dv", "_wh", "_varh"))]


@st.composite
def mutated(draw, pool):
    """A real byte string with a few flips, insertions, deletions, or a truncation."""
    b = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 4))
        i = draw(st.integers(0, max(0, len(b) - 1)))
        if op == 0 and b:
            b[i] = draw(st.integers(0, 255))
        elif op == 1:
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == 2 and b:
            del b[i:i + draw(st.integers(1, 8))]
        elif op == 3:
            del b[i:]
        elif op == 4 and b:
            b[i] ^= 1 << draw(st.integers(0, 7))
    return bytes(b)


def _check_reading(r):
    assert r["meter"] in ("aidon", "kaifa", "kamstrup", "unknown")
    assert r["list"] in (1, 2, 3, None)
    for key in INTS:
        assert r[key] is None or type(r[key]) is int
    for key in ("list_version", "meter_id", "meter_type"):
        assert r[key] is None or type(r[key]) is str


def _decode(frame):
    try:
        r = decode_frame(frame)
    except DecodeError as e:
        assert str(e)
        return None
    _check_reading(r)
    return r


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(FRAMES))
def test_mutated_frames_raise_only_decode_error(frame):
    _decode(frame)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(INFOS))
def test_mutated_payloads_with_valid_crc_raise_only_decode_error(info):
    # CRCs recomputed: the mutation reaches the DLMS/COSEM parser and the layouts.
    _decode(reframe(FRAMES[0], info))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_decode_error(data):
    _decode(data)
    _decode(reframe(FRAMES[0], data))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(mutated(FRAMES), st.sampled_from(FRAMES), st.binary(max_size=64)),
                max_size=12),
       st.lists(st.integers(1, 700), min_size=1, max_size=8))
def test_reader_survives_mutated_streams_with_bounded_memory(parts, chunks):
    r = HdlcReader()
    buf, frame = r._buf, r.frame
    cap = len(buf)
    stream = b"".join(parts)
    pos = 0
    i = 0
    while pos < len(stream):
        k = chunks[i % len(chunks)]
        i += 1
        piece = stream[pos:pos + k]
        took = 0
        while took < len(piece):
            took += r.feed(piece[took:], len(piece) - took)
            while True:
                n = r.next_frame()
                if not n:
                    break
                assert check_frame(r.frame, n) > 0  # only valid frames come out
                _decode(bytes(r.frame[:n]))
            assert r.buffered() <= cap
        pos += k
    # A cut-off header can make the reader wait for up to 2049 bytes before it gives up on
    # it; idle line (flags) lets it decide, so every intact frame must have come out.
    for _ in range(21):
        assert r.feed(b"\x7e" * 100, 100) == 100
        while r.next_frame():
            pass
    assert r._buf is buf and r.frame is frame is buf and len(buf) == cap  # one fixed buffer
    assert min(r.frames_ok, r.hcs_errors, r.fcs_errors, r.discarded_bytes) >= 0
    assert r.frames_ok >= sum(1 for p in parts if p in FRAMES)


def test_atheris_libfuzzer_run(tmp_path):
    import atheris  # noqa: F401  (pinned in requirements-dev.txt: missing is a failure)
    seeds = tmp_path / "corpus"
    seeds.mkdir()
    for i, f in enumerate(FRAMES):
        (seeds / ("f%d" % i)).write_bytes(b"\x00" + f)
        (seeds / ("i%d" % i)).write_bytes(b"\x01" + INFOS[i])
    p = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "fuzz", "atheris_decode.py"),
         "-runs=20000", "-seed=12345", "-artifact_prefix=%s/" % tmp_path, str(seeds)],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Done 20000 runs" in p.stderr
