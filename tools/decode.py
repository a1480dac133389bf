#!/usr/bin/env python3
"""Decode captured HAN data: one JSON object per frame on stdout, a summary on stderr.

Usage: tools/decode.py [FILE] [--tree]
  FILE    hex text (frames one per line; spaces, colons, 0x prefixes and # comments are
          fine; frames split over several lines are joined) or a raw binary capture of the
          line. Reads stdin when FILE is missing or "-".
  --tree  add the raw COSEM structure of each frame ("cosem"; byte strings as hex): what we
          need to support an unknown meter.
Frames are cut by the HDLC length field, never at 0x7E (meters do not byte-stuff). A frame
that does not decode prints {"error": "..."}. Exit status: 0 all decoded, 1 some frame
failed, 2 nothing readable.
"""

import json
import os
import sys

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tools._host  # noqa: E402,F401  (root and tests/ after the stdlib: docs/architecture.md)

from han2x_core import DecodeError, decode_frame  # noqa: E402
from han2x_core.cosem import (  # noqa: E402
    T_ARRAY, T_NULL, T_STRUCTURE, content_pos, item_end, length_at, read_int,
)
from han2x_core.hdlc import crc16, hcs_pos  # noqa: E402

_HEX = set("0123456789abcdefABCDEF")
_SEPARATORS = " \t,:;-|"


def _hex_line(line):
    """bytes of one text line of hex, or None if it is not hex."""
    line = line.split("#", 1)[0].strip()
    if not line:
        return b""
    for sep in _SEPARATORS:
        line = line.replace(sep, " ")
    digits = []
    for word in line.split():
        if word[:2] in ("0x", "0X"):
            word = word[2:]
            if len(word) == 1:
                word = "0" + word
        if not word or not set(word) <= _HEX or len(word) % 2:
            return None
        digits.append(word)
    return bytes.fromhex("".join(digits))


def _hex_text(data):
    """The bytes of a hex-text capture as a list of lines' bytes, or None if not hex text."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    lines = []
    for line in text.splitlines():
        b = _hex_line(line)
        if b is None:
            return None
        if b:
            lines.append(b)
    return lines if lines else None


def _restore_flags(line):
    """Loggers sometimes drop the flags: give a lone frame its 7E ... 7E back."""
    if len(line) >= 3 and line[0] & 0xF0 == 0xA0:
        total = ((line[0] & 7) << 8 | line[1]) + 2
        if len(line) == total - 2:
            return b"\x7e" + line + b"\x7e"
        if len(line) == total - 1 and line[-1] == 0x7E:
            return b"\x7e" + line
    return line


def split_frames(stream):
    """Cut a byte stream into candidate frames by the HDLC length field.

    Returns (frames, skipped): frames whose header checksum is right (their FCS may still
    be wrong: decode_frame reports that), and the number of bytes that belonged to none.
    """
    frames = []
    skipped = 0
    i = 0
    n = len(stream)
    while i < n:
        if stream[i] != 0x7E or i + 3 > n or stream[i + 1] & 0xF0 != 0xA0:
            if stream[i] != 0x7E:
                skipped += 1
            i += 1
            continue
        total = ((stream[i + 1] & 7) << 8 | stream[i + 2]) + 2
        h = hcs_pos(stream, i, n, total)  # the firmware's own header walk
        if (h <= 0 or i + total > n or stream[i + total - 1] != 0x7E
                or crc16(stream, i + 1, h) != stream[h] | stream[h + 1] << 8):
            i += 1
            continue
        frames.append(bytes(stream[i:i + total]))
        i += total - 1  # the closing flag may open the next frame
    return frames, skipped


def read_capture(data):
    """Candidate HDLC frames (bytes, flag to flag) in a capture: hex text or raw binary."""
    return _read(data)[0]


def _whole_frame(line):
    """True if the line is exactly one frame by its flags and length field."""
    return (len(line) >= 5 and line[0] == 0x7E and line[-1] == 0x7E
            and line[1] & 0xF0 == 0xA0 and ((line[1] & 7) << 8 | line[2]) + 2 == len(line))


def _read(data):
    lines = _hex_text(data)
    if lines is None:
        return split_frames(data)
    # A line that is exactly one frame is taken as it is, even with a bad checksum, so the
    # user sees the error; anything else (frames split over lines by a logger that cut at
    # every 0x7E, several frames on one line) is joined and cut by the length field.
    frames = []
    skipped = 0
    pending = []
    for line in lines:
        line = _restore_flags(line)
        if _whole_frame(line):
            if pending:
                got, lost = split_frames(b"".join(pending))
                frames += got
                skipped += lost
                pending = []
            frames.append(line)
        else:
            pending.append(line)
    if pending:
        got, lost = split_frames(b"".join(pending))
        frames += got
        skipped += lost
    return frames, skipped


def _hexify(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_hexify(v) for v in value]
    return value

_BYTES_WITH_LENGTH = (0x04, 0x09, 0x0A, 0x0C)  # bit, octet, visible and UTF-8 strings


def to_python(buf, pos, end, depth=0):
    """(value, next_pos) for the A-XDR item at pos, as plain Python values: arrays and
    structures become lists, strings and other types bytes, numbers ints, null None,
    booleans bool. cosem.item_end checks the item (DecodeError if it overruns end)."""
    stop = item_end(buf, pos, end, depth)
    tag = buf[pos]
    if tag == T_ARRAY or tag == T_STRUCTURE:
        p = content_pos(buf, pos)
        out = []
        for _ in range(length_at(buf, pos + 1, end)):
            v, p = to_python(buf, p, end, depth + 1)
            out.append(v)
        return out, stop
    v = read_int(buf, pos)
    if v is not None:
        return v, stop
    if tag == T_NULL:
        return None, stop
    if tag == 0x03:
        return buf[pos + 1] != 0, stop
    p = content_pos(buf, pos) if tag in _BYTES_WITH_LENGTH else pos + 1
    return bytes(buf[p:stop]), stop


def cosem_tree(frame):
    """The notification body of a frame as nested lists (byte strings as hex), or None."""
    try:
        i = frame.index(b"\xe6\xe7\x00\x0f")
        p = i + 8
        if frame[p] == 0:
            p += 1
        elif frame[p] == 0x0C:
            p += 13
        else:
            p += 14
        value, _ = to_python(frame, p, len(frame) - 3)
        return _hexify(value)
    except (ValueError, IndexError):
        return None


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    tree = "--tree" in argv
    if "-h" in argv or "--help" in argv or len(args) > 1:
        sys.stderr.write(__doc__)
        return 2
    try:
        if not args or args[0] == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args[0], "rb") as f:
                data = f.read()
    except OSError as e:
        sys.stderr.write("decode.py: cannot read %s: %s\n" % (args[0], e))
        return 2
    frames, skipped = _read(data)
    ok = 0
    errors = 0
    kinds = {}
    out = sys.stdout
    for frame in frames:
        try:
            reading = decode_frame(frame)
        except DecodeError as e:
            errors += 1
            obj = {"error": str(e)}
        except Exception as e:  # a decoder bug must not lose the rest of the capture
            errors += 1
            obj = {"error": "internal error: %s: %s" % (type(e).__name__, e)}
        else:
            ok += 1
            obj = reading
            key = "%s list %s" % (reading["meter"], reading["list"])
            kinds[key] = kinds.get(key, 0) + 1
        if tree:
            obj = dict(obj)
            obj["cosem"] = cosem_tree(frame)
            obj["hex"] = frame.hex()
        out.write(json.dumps(obj) + "\n")
    summary = "%d frames: %d decoded, %d failed; %d bytes outside frames" % (
        len(frames), ok, errors, skipped)
    if kinds:
        summary += " (" + ", ".join("%s: %d" % kv for kv in sorted(kinds.items())) + ")"
    sys.stderr.write(summary + "\n")
    if not frames:
        return 2
    return 1 if errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
