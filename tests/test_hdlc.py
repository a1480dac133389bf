"""HdlcReader and CRC: real captured frames fed in every way the line can deliver them."""

import random

import pytest

from han2x_core import hdlc
from han2x_core.hdlc import HdlcReader, check_frame, crc16
from support.hanframes import by_id, corpus

FRAMES = [f for _, f in corpus()]


def drain(reader, data, chunk=None):
    """Feed data (in chunks of `chunk` bytes, or all at once); return the frames found."""
    out = []
    chunk = chunk or len(data) or 1
    for pos in range(0, len(data), chunk):
        piece = data[pos:pos + chunk]
        k = 0
        while k < len(piece):
            took = reader.feed(piece[k:], len(piece) - k)
            k += took
            while True:
                n = reader.next_frame()
                if not n:
                    break
                out.append(bytes(reader.frame[:n]))
    return out


def test_crc16_x25_check_value():
    assert crc16(b"123456789", 0, 9) == 0x906E
    assert crc16(b"xx123456789yy", 2, 11) == 0x906E


def test_every_corpus_frame_validates():
    for f in FRAMES:
        assert check_frame(f, len(f)) > 0


def test_corpus_has_raw_flag_and_escape_bytes_inside_frames():
    inside = [f for f in FRAMES if 0x7E in f[1:-1]]
    escape = [f for f in FRAMES if 0x7D in f[1:-1]]
    assert inside and escape  # the no-byte-stuffing case is really exercised
    assert drain(HdlcReader(), b"".join(inside)) == inside
    assert drain(HdlcReader(), b"".join(escape)) == escape


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 255, 4096, None])
def test_stream_any_chunking(chunk):
    r = HdlcReader()
    stream = b"".join(FRAMES)
    assert drain(r, stream, chunk) == FRAMES
    assert (r.frames_ok, r.hcs_errors, r.fcs_errors, r.discarded_bytes) == (len(FRAMES), 0, 0, 0)


def test_split_at_every_offset():
    for f in (by_id("aidon-6534-l3")[1], by_id("kamstrup-6841121bn243101040-l2")[1], FRAMES[0]):
        for cut in range(1, len(f)):
            r = HdlcReader()
            out = drain(r, f[:cut])
            assert out == []
            out += drain(r, f[cut:])
            assert out == [f], cut


def test_shared_flags_between_frames():
    stream = FRAMES[0] + b"".join(f[1:] for f in FRAMES[1:])
    assert drain(HdlcReader(), stream, 5) == FRAMES


def test_idle_flags_are_not_discards():
    stream = b"\x7e" * 50 + b"\x7e\x7e".join(FRAMES[:10]) + b"\x7e" * 3
    r = HdlcReader()
    assert drain(r, stream, 9) == FRAMES[:10]
    assert r.discarded_bytes == 0


def test_garbage_before_and_between_frames_is_counted():
    rng = random.Random(7)
    stream = b""
    garbage_total = 0
    for f in FRAMES[:20]:
        g = bytes(rng.choice(range(0x7E)) for _ in range(rng.randrange(0, 40)))
        garbage_total += len(g)
        stream += g + f
    r = HdlcReader()
    assert drain(r, stream, 13) == FRAMES[:20]
    assert r.discarded_bytes == garbage_total


def test_false_starts_inside_garbage():
    # Garbage full of flags and frame-format bytes: header candidates that fail.
    junk = bytes([0x7E, 0xA0, 0x27, 0x01, 0x02, 0x01, 0x10, 0x00, 0x00, 0x7E, 0xA8]) * 5
    stream = junk + FRAMES[3] + junk + FRAMES[4] + b"\x7e\xa1"
    r = HdlcReader()
    assert drain(r, stream, 1) == [FRAMES[3], FRAMES[4]]
    assert r.hcs_errors >= 5


def test_truncated_frame_then_good_frame():
    big = by_id("aidon-6534-l3")[1]
    small = by_id("aidon-6525-l1")[1]
    stream = big[:200] + small + big
    r = HdlcReader()
    assert drain(r, stream, 17) == [small, big]
    assert r.discarded_bytes > 0


def test_fcs_error_counted_and_next_frame_found():
    f = bytearray(FRAMES[1])
    f[40] ^= 0x01
    r = HdlcReader()
    assert drain(r, bytes(f) + FRAMES[2], 3) == [FRAMES[2]]
    assert r.fcs_errors == 1 and r.frames_ok == 1


def test_hcs_error_counted():
    f = bytearray(FRAMES[1])
    f[4] ^= 0x40  # source address byte: HCS no longer matches
    r = HdlcReader()
    assert drain(r, bytes(f) + FRAMES[2]) == [FRAMES[2]]
    assert r.hcs_errors == 1


def test_feed_takes_fewer_bytes_when_full_and_memory_is_fixed():
    r = HdlcReader()
    buf_id, frame_id = id(r._buf), id(r.frame)
    stream = b"".join(FRAMES) * 3
    took = r.feed(stream, len(stream))
    assert 0 < took < len(stream)
    assert r.feed(stream[took:], len(stream) - took) == 0  # full until drained
    out = drain(r, b"")
    k = took
    while k < len(stream):
        k += r.feed(stream[k:], len(stream) - k)
        while True:
            n = r.next_frame()
            if not n:
                break
            out.append(bytes(r.frame[:n]))
    out += drain(r, b"")
    while True:
        n = r.next_frame()
        if not n:
            break
        out.append(bytes(r.frame[:n]))
    assert out == FRAMES * 3
    assert id(r._buf) == buf_id and id(r.frame) == frame_id
    assert len(r._buf) == hdlc._CAP >= 2049 and r.frame is r._buf  # one buffer, no copy


def test_feed_accepts_memoryview_and_n_smaller_than_buffer():
    r = HdlcReader()
    buf = bytearray(FRAMES[0] + b"\x00" * 100)
    assert r.feed(memoryview(buf), len(FRAMES[0])) == len(FRAMES[0])
    assert r.next_frame() == len(FRAMES[0])
    assert r.feed(buf, 0) == 0


def test_largest_length_field_garbage_does_not_block():
    # A fake header announcing a 2047-byte frame: the reader waits for it, rejects it and
    # still finds the real frames that arrived in the meantime.
    fake = bytearray(b"\x7e\xa7\xff\x41\x08\x83\x13\x00\x00")
    h = crc16(fake, 1, 7)
    fake[7], fake[8] = h & 0xFF, h >> 8
    stream = bytes(fake) + b"".join(FRAMES[:30]) + b"\x7e" * 2100
    r = HdlcReader()
    assert drain(r, stream, 50) == FRAMES[:30]


def test_random_chunks_invariant():
    rng = random.Random(2026)
    r = HdlcReader()
    expected = []
    stream = bytearray()
    for _ in range(10000):
        if rng.random() < 0.1:
            f = rng.choice(FRAMES)
            stream += f
            expected.append(f)
        else:
            stream += bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 12)))
    out = []
    pos = 0
    while pos < len(stream):
        k = rng.randrange(1, 300)
        out += drain(r, bytes(stream[pos:pos + k]))
        assert r.buffered() <= hdlc._CAP
        pos += k
    # Random bytes can cut into a frame only by being glued in front of it; every frame is
    # complete in the stream, so all of them must come out, in order.
    assert out == expected
    assert r.frames_ok == len(expected)
    assert r.discarded_bytes > 0


def test_feed_from_a_reused_receive_buffer_like_the_app():
    # The app reads the UART into one 512-byte buffer and feeds (rx, n): small n is
    # copied bytewise, large n through a memoryview; both must give the same frames.
    rng = random.Random(5)
    stream = b"".join(FRAMES)
    rx = bytearray(512)
    r = HdlcReader()
    out = []
    pos = 0
    while pos < len(stream):
        n = min(rng.choice((1, 2, 5, 31, 32, 33, 200, 512)), len(stream) - pos)
        rx[0:n] = stream[pos:pos + n]
        pos += n
        took = r.feed(rx, n)
        while True:
            k = r.next_frame()
            if not k:
                break
            out.append(bytes(r.frame[:k]))
        if took < n:
            rest = memoryview(rx)[took:n]
            assert r.feed(rest, n - took) == n - took
            while True:
                k = r.next_frame()
                if not k:
                    break
                out.append(bytes(r.frame[:k]))
    assert out == FRAMES
