"""Test helpers for HAN frames: the corpus as bytes, and re-framing edited payloads."""

from han2x_core.hdlc import crc16
from support.util import load_corpus


def corpus():
    """[(entry, frame_bytes)] for every frame in tests/data/frames.json."""
    return [(e, bytes.fromhex(e["hex"])) for e in load_corpus()]


def by_id(prefix):
    """The first corpus (entry, frame) whose id starts with prefix."""
    for e, f in corpus():
        if e["id"].startswith(prefix):
            return e, f
    raise KeyError(prefix)


def header_len(frame):
    """Bytes from the format field up to and including the control byte."""
    i = 3
    while not frame[i] & 1:
        i += 1
    i += 1
    while not frame[i] & 1:
        i += 1
    return i + 2 - 1  # up to the control byte, relative to frame[1]


def info_of(frame):
    """The information field (LLC + APDU) of a valid frame."""
    h = 1 + header_len(frame)
    return frame[h + 2:len(frame) - 3]


def reframe(frame, info):
    """A valid frame with frame's addresses/control and a new information field."""
    hl = header_len(frame)
    head = bytearray(frame[1:1 + hl])
    length = hl + 2 + len(info) + 2
    head[0] = 0xA0 | (length >> 8)
    head[1] = length & 0xFF
    hcs = crc16(head, 0, len(head))
    body = head + bytes((hcs & 0xFF, hcs >> 8)) + bytes(info)
    fcs = crc16(body, 0, len(body))
    return b"\x7e" + bytes(body) + bytes((fcs & 0xFF, fcs >> 8)) + b"\x7e"
