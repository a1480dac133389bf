"""libFuzzer (atheris) target: HdlcReader + decode_frame on arbitrary bytes.

Run: .venv/bin/python tests/fuzz/atheris_decode.py [libFuzzer args] [CORPUS_DIR]
Only DecodeError may escape decode_frame; the reader must never raise and must keep its
buffers. tests/test_fuzz_decode.py runs this for a bounded number of inputs.
"""

import os
import sys

import atheris

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.append(ROOT)
import tools._host  # noqa: E402,F401  (root and tests/ after the stdlib: docs/architecture.md)

with atheris.instrument_imports():
    from han2x_core import DecodeError, decode_frame
    from han2x_core.hdlc import HdlcReader, crc16

READER = HdlcReader()
CAP = len(READER._buf)


def wrap(info):
    """A frame with valid HCS/FCS around info: lets the fuzzer reach the APDU parser."""
    length = 2 + 3 + 2 + len(info) + 2
    head = bytes((0xA0 | (length >> 8) & 7, length & 0xFF, 0x41, 0x08, 0x83, 0x13))
    h = crc16(head, 0, len(head))
    body = head + bytes((h & 0xFF, h >> 8)) + info
    f = crc16(body, 0, len(body))
    return b"\x7e" + body + bytes((f & 0xFF, f >> 8)) + b"\x7e"


def test_one_input(data):
    """First byte odd: the rest is an information field, wrapped in a valid frame."""
    if data[:1] and data[0] & 1 and len(data) < 2000:
        data = wrap(data[1:])
    elif data:
        data = data[1:]
    try:
        r = decode_frame(data)
    except DecodeError:
        pass
    else:
        assert r["meter"] in ("aidon", "kaifa", "kamstrup", "unknown")
    pos = 0
    while pos < len(data):
        pos += READER.feed(data[pos:], len(data) - pos)
        while True:
            n = READER.next_frame()
            if not n:
                break
            try:
                decode_frame(bytes(READER.frame[:n]))
            except DecodeError:
                pass
    assert len(READER._buf) == CAP and READER.buffered() <= CAP


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
