"""HAN decoding on MicroPython: every corpus frame, the stream reader, heap use per frame."""

import gc
from binascii import unhexlify

from corpus import entries
from han2x_core import DecodeError, decode_frame
from han2x_core.hdlc import HdlcReader


def _frames():
    """Yield (entry, frame) one at a time: the whole parsed corpus does not fit 192 KB."""
    for e in entries():
        yield e, unhexlify(e["hex"])


def _frame_list():
    out = []
    for e in entries():
        out.append(unhexlify(e["hex"]))
        e = None
        gc.collect()
    return out


def test_every_corpus_frame_decodes_to_expected():
    n = 0
    for e, f in _frames():
        r = decode_frame(f)
        for key in e["expected"]:
            if r[key] != e["expected"][key]:
                raise AssertionError("%s %s: %r != %r"
                                     % (e["id"], key, r[key], e["expected"][key]))
        if e["list"] != "SE" and r["list"] != int(e["list"]):
            raise AssertionError("%s list %r" % (e["id"], r["list"]))
        if r["meter"] != e["id"].split("-")[0]:
            raise AssertionError("%s meter %r" % (e["id"], r["meter"]))
        n += 1
    assert n == 72, n


def test_bad_frame_raises_decode_error():
    f = bytearray(_frame_list()[5])
    f[-3] ^= 0xFF
    try:
        decode_frame(f)
    except DecodeError as e:
        assert "FCS" in str(e)
        assert isinstance(e, ValueError)
    else:
        raise AssertionError("no DecodeError")


def test_reader_byte_by_byte_and_in_chunks():
    frames = _frame_list()
    stream = b"".join(frames)
    for chunk in (1, 7, 256):
        r = HdlcReader()
        got = 0
        for pos in range(0, len(stream), chunk):
            piece = stream[pos:pos + chunk]
            k = 0
            while k < len(piece):
                k += r.feed(piece[k:], len(piece) - k)
                while True:
                    n = r.next_frame()
                    if not n:
                        break
                    assert bytes(r.frame[:n]) == frames[got]
                    got += 1
        assert got == len(frames), got
        assert r.discarded_bytes == 0 and r.fcs_errors == 0


def _largest_list3():
    best = None
    for e, f in _frames():
        if e["list"] == "3" and (best is None or len(f) > len(best)):
            best = f
        e = None
    return best


def test_heap_per_frame_under_2k():
    f = _largest_list3()
    decode_frame(f)
    gc.collect()
    before = gc.mem_alloc()
    decode_frame(f)
    used = gc.mem_alloc() - before
    print("  heap per decode of the %d-byte list 3: %d bytes" % (len(f), used))
    assert used < 2048, used


def test_no_heap_growth_over_many_frames():
    f = _largest_list3()
    r = HdlcReader()
    gc.collect()
    start = gc.mem_alloc()
    for i in range(2000):
        r.feed(f, len(f))
        n = r.next_frame()
        decode_frame(r.frame[:n] if i & 1 else f)
        if i % 100 == 99:
            gc.collect()
    gc.collect()
    grown = gc.mem_alloc() - start
    assert grown < 256, grown
    assert r.frames_ok == 2000


def test_reader_trickle_feed_allocates_nothing():
    # Bytes arriving a few at a time (2400 baud) must not allocate until a frame completes.
    f = _largest_list3()
    r = HdlcReader()
    rx = bytearray(32)
    r.feed(b"\x00\x01\x7e", 3)
    r.next_frame()
    gc.collect()
    before = gc.mem_alloc()
    pos = 0
    while pos < len(f) - 1:
        n = min(7, len(f) - 1 - pos)
        for i in range(n):
            rx[i] = f[pos + i]
        r.feed(rx, n)
        assert r.next_frame() == 0
        pos += n
    used = gc.mem_alloc() - before
    assert used == 0, used
    r.feed(b"\x7e", 1)
    assert r.next_frame() == len(f)


def test_mutated_frames_raise_only_decode_error_on_micropython():
    # A small deterministic fuzz on the VM itself: flips, cuts and re-checksummed payload
    # edits must end in a reading or a DecodeError, never another exception.
    from han2x_core.hdlc import crc16

    frames = _frame_list()
    seed = 12345
    outcomes = [0, 0]
    for i in range(1500):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        f = bytearray(frames[seed % len(frames)])
        pos = 1 + (seed >> 8) % (len(f) - 2)
        op = (seed >> 4) % 4
        if op == 0:
            f[pos] ^= 1 << ((seed >> 16) % 8)
        elif op == 1:
            f = f[:pos]
        else:
            # edit a payload byte, then repair HCS and FCS so the parser sees it
            if pos < 14:
                pos = 14
            if pos < len(f) - 3:
                f[pos] = (seed >> 12) & 0xFF
            if op == 3 and pos + 2 < len(f) - 3:
                f[pos + 1] = 0x80 | (seed >> 20) & 0x7F  # a multi-byte A-XDR length
            n = len(f)
            h = 3
            while not f[h] & 1:
                h += 1
            h += 1
            while not f[h] & 1:
                h += 1
            h += 2
            c = crc16(f, 1, h)
            f[h] = c & 0xFF
            f[h + 1] = c >> 8
            c = crc16(f, 1, n - 3)
            f[n - 3] = c & 0xFF
            f[n - 2] = c >> 8
        try:
            decode_frame(f)
            outcomes[0] += 1
        except DecodeError:
            outcomes[1] += 1
    assert outcomes[0] > 0 and outcomes[1] > 0, outcomes
