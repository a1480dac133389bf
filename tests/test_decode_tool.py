"""tools/decode.py: read_capture on hex and binary captures, and the CLI end to end."""

import json
import os
import random
import subprocess
import sys

import pytest

from han2x_core.cosem import DecodeError
from tools.decode import main, read_capture, split_frames, to_python
from support.hanframes import by_id, corpus, info_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMES = [f for _, f in corpus()]


def test_binary_capture_split_by_length_field():
    assert read_capture(b"".join(FRAMES)) == FRAMES


def test_binary_capture_with_shared_flags_and_noise():
    rng = random.Random(3)
    data = b"\x00\x13garbage" + FRAMES[0] + b"".join(f[1:] for f in FRAMES[1:10])
    data += bytes(rng.randrange(0x7E) for _ in range(50)) + FRAMES[10]
    frames, skipped = split_frames(data)
    assert frames == FRAMES[:11]
    assert skipped == 9 + 50


def test_hex_one_frame_per_line():
    text = "\n".join(f.hex() for f in FRAMES).encode()
    assert read_capture(text) == FRAMES


def test_hex_with_spaces_comments_and_upper_case():
    lines = ["# Aidon capture, 2400 8E1", ""]
    for f in FRAMES[:5]:
        lines.append(" ".join("%02X" % b for b in f) + "   # frame")
    assert read_capture("\r\n".join(lines).encode()) == FRAMES[:5]
    text = "\n".join(", ".join("0x%02x" % b for b in f) for f in FRAMES[5:8]).encode()
    assert read_capture(text) == FRAMES[5:8]


def test_hex_lines_split_at_flags_by_a_logger_are_rejoined():
    # Loggers that split at every 0x7E cut frames that carry 0x7E in their data.
    f = next(f for f in FRAMES if 0x7E in f[1:-1])
    cut = f.index(0x7E, 1)
    text = (f[:cut].hex() + "\n" + f[cut:].hex() + "\n" + FRAMES[0].hex()).encode()
    assert read_capture(text) == [f, FRAMES[0]]


def test_hex_lines_without_flags():
    text = "\n".join(f[1:-1].hex() for f in FRAMES[:4]).encode()
    assert read_capture(text) == FRAMES[:4]


def test_bad_fcs_frame_is_a_candidate_so_the_user_sees_the_error():
    bad = bytearray(FRAMES[2])
    bad[-3] ^= 1
    assert read_capture(bytes(bad) + FRAMES[3]) == [bytes(bad), FRAMES[3]]


def test_garbage_input_gives_no_frames():
    rng = random.Random(11)
    for _ in range(50):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 600)))
        assert isinstance(read_capture(data), list)
    assert read_capture(b"") == []
    assert read_capture(b"hello world\n") == []


def test_cli_prints_one_json_object_per_frame(tmp_path, capsys):
    path = tmp_path / "cap.bin"
    bad = bytearray(FRAMES[1])
    bad[20] ^= 0x55
    path.write_bytes(FRAMES[0] + bytes(bad) + FRAMES[2])
    assert main(["decode.py", str(path)]) == 1
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3
    assert lines[0]["active_power_import_w"] == 4524
    assert lines[1] == {"error": "frame checksum (FCS) mismatch"}
    assert lines[2]["list"] == 3
    assert "3 frames: 2 decoded, 1 failed" in err


def test_cli_tree_option_shows_cosem_structure(tmp_path, capsys):
    path = tmp_path / "cap.txt"
    path.write_text(FRAMES[0].hex() + "\n")
    assert main(["decode.py", str(path), "--tree"]) == 0
    obj = json.loads(capsys.readouterr()[0])
    assert obj["cosem"] == [4524]
    assert obj["hex"] == FRAMES[0].hex()


def test_cli_stdin_and_bad_input_never_crash():
    script = os.path.join(ROOT, "tools", "decode.py")
    text = "\n".join(f.hex() for f in FRAMES).encode()
    p = subprocess.run([sys.executable, script], input=text, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == len(FRAMES)
    assert b"72 frames: 72 decoded, 0 failed" in p.stderr
    junk = bytes(range(256)) * 20 + b"\x7e\xa0\x27" + b"\x7e" * 30
    p = subprocess.run([sys.executable, script, "-"], input=junk, capture_output=True,
                       timeout=60)
    assert p.returncode == 2 and b"Traceback" not in p.stderr
    p = subprocess.run([sys.executable, script, "/nonexistent/capture.bin"],
                       capture_output=True, timeout=60)
    assert p.returncode == 2 and b"cannot read" in p.stderr and b"Traceback" not in p.stderr


def test_hex_line_with_bad_header_checksum_is_still_reported(capsys, tmp_path):
    bad = bytearray(FRAMES[1])
    bad[5] ^= 0x10  # HCS no longer matches
    path = tmp_path / "cap.txt"
    path.write_text(FRAMES[0].hex() + "\n" + bad.hex() + "\n" + FRAMES[2].hex() + "\n")
    assert read_capture(path.read_bytes()) == [FRAMES[0], bytes(bad), FRAMES[2]]
    assert main(["decode.py", str(path)]) == 1
    lines = [json.loads(x) for x in capsys.readouterr()[0].splitlines()]
    assert lines[1] == {"error": "header checksum (HCS) mismatch"}


def test_to_python_gives_the_cosem_tree():
    b = bytes.fromhex("0202" "0f01" "161e")  # scaler-unit
    assert to_python(b, 0, len(b)) == ([1, 30], len(b))
    b = bytes.fromhex("0203" "0903414243" "0300" "0401c0")  # string, boolean, 1-bit string
    assert to_python(b, 0, len(b)) == ([b"ABC", False, b"\xc0"], len(b))
    _, f = by_id("aidon-6534-l3")
    info = info_of(f)
    body = 3 + 5 + 1  # LLC, tag + 4-byte invoke id, 00 = no date-time
    tree, end = to_python(info, body, len(info))
    assert end == len(info) and len(tree) == 18
    assert tree[3] == [bytes.fromhex("0100010700ff"), 3356, [0, 27]]
    with pytest.raises(DecodeError):
        to_python(info, body, len(info) - 1)
