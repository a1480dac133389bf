#!/usr/bin/env python3
"""HAN decoding speed: han2x decode_frame vs amshan 2.1.1 on the same captured frames.

CPython: frames/s for both on all 72 corpus frames (each side validates the frame and
decodes it), and the ratio (aim: at least 5x amshan). MicroPython (192 KB heap): heap
bytes allocated per decode of the largest list-3 frame (aim < 2 KB), heap growth over
10,000 frames through HdlcReader + decode_frame (aim: none), and frames/s. Prints figures;
asserts nothing about time.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)
import tools._host  # noqa: E402,F401  (root and tests/ after the stdlib: docs/architecture.md)

from han2x_core import decode_frame  # noqa: E402
from han2x_core.hdlc import HdlcReader  # noqa: E402

ROUNDS = 30


def load_frames():
    with open(os.path.join(ROOT, "tests", "data", "frames.json")) as f:
        corpus = json.load(f)
    return corpus, [bytes.fromhex(e["hex"]) for e in corpus]


def rate(fn, frames, rounds=ROUNDS):
    fn(frames)  # warm up
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(rounds):
            fn(frames)
        dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    return rounds * len(frames) / best


def ours(frames):
    for f in frames:
        decode_frame(f)


def ours_stream(frames):
    r = HdlcReader()
    for f in frames:
        r.feed(f, len(f))
        while True:
            n = r.next_frame()
            if not n:
                break
            decode_frame(r.frame[:n])


def amshan_side():
    from han import autodecoder, hdlc

    decoder = autodecoder.AutoDecoder()

    def run(frames):
        failures = 0
        for f in frames:
            reader = hdlc.HdlcFrameReader(use_octet_stuffing=False)
            for frame in reader.read(f):
                if frame.is_good_ffc and frame.is_expected_length:
                    try:
                        decoder.decode_message(frame)
                    except Exception:  # amshan's AutoDecoder can raise on a vendor switch
                        failures += 1
        run.failures = failures

    return run


def common_frames(corpus, frames):
    """The frames both sides decode: the comparison runs on exactly these."""
    from han import autodecoder, hdlc

    both = []
    failed = []
    for e, f in zip(corpus, frames):
        decode_frame(f)
        got = [fr for fr in hdlc.HdlcFrameReader(use_octet_stuffing=False).read(f)
               if fr.is_good_ffc]
        try:
            ok = bool(got) and autodecoder.AutoDecoder().decode_message(got[0]) is not None
        except Exception as exc:
            ok = False
            failed.append("%s (%s)" % (e["id"], type(exc).__name__))
        else:
            if not ok:
                failed.append("%s (None)" % e["id"])
        if ok:
            both.append(f)
    return both, failed


def micropython(corpus, frames):
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    if not os.path.exists(exe):
        print("micropython: binary not found next to %s (make setup)" % sys.executable)
        return
    big = max((f for e, f in zip(corpus, frames) if e["list"] == "3"), key=len)
    with tempfile.NamedTemporaryFile("w", suffix=".hex", delete=False) as tmp:
        tmp.write(big.hex() + "\n")
        for f in frames:
            tmp.write(f.hex() + "\n")
    try:
        p = subprocess.run([exe, "-X", "heapsize=192k", os.path.join(ROOT, "bench",
                                                                     "mpy_decode.py"),
                            tmp.name], capture_output=True, text=True, timeout=600, cwd=ROOT)
    finally:
        os.unlink(tmp.name)
    if p.returncode:
        print("micropython run failed:\n" + p.stdout + p.stderr)
        sys.exit(1)
    fig = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        fig[parts[0]] = [int(x) for x in parts[1:]]
    per, size = fig["heap_per_frame"]
    growth, ok = fig["growth_10000"]
    print("MicroPython %s, -X heapsize=192k (64-bit unix port: pointers are twice the "
          "RP2040's)" % ".".join(str(x) for x in _mpy_version(exe)))
    print("  heap per decode_frame, largest list 3 (%d bytes): %d bytes  (aim < 2048: %s)"
          % (size, per, "ok" if per < 2048 else "OVER"))
    print("  HdlcReader feed+next_frame of that frame: %d bytes" % fig["reader_alloc"][0])
    print("  heap growth over 10,000 frames (reader + decode, %d frames ok): %d bytes  (%s)"
          % (ok, growth, "ok: nothing kept per frame" if growth < per else "GROWS"))
    print("  frames/s: %d (largest list 3 via reader), %d (all corpus frames)"
          % (fig["rate_big"][0], fig["rate_mixed"][0]))


def _mpy_version(exe):
    p = subprocess.run([exe, "-c", "import sys; print(*sys.implementation.version[:3])"],
                       capture_output=True, text=True, timeout=30)
    return p.stdout.split()


def main():
    corpus, frames = load_frames()
    print("corpus: %d frames, %d bytes" % (len(frames), sum(len(f) for f in frames)))
    both, failed = common_frames(corpus, frames)
    if failed:
        print("amshan fails on %d frame(s), left out of the comparison: %s"
              % (len(failed), ", ".join(failed)))
    amshan_run = amshan_side()
    a = rate(amshan_run, both)
    b = rate(ours, both)
    c = rate(ours_stream, both)
    d = rate(ours, frames)
    import han

    print("CPython %s, %d frames both decode" % (sys.version.split()[0], len(both)))
    print("  amshan %s (HdlcFrameReader + AutoDecoder): %8.0f frames/s"
          % (getattr(han, "__version__", "2.1.1"), a))
    if amshan_run.failures:
        print("  (amshan raised on %d of %d frames per round)" % (amshan_run.failures, len(both)))
    print("  han2x decode_frame:                            %8.0f frames/s  = %.1fx amshan"
          % (b, b / a))
    print("  han2x HdlcReader + decode_frame:               %8.0f frames/s  = %.1fx amshan"
          % (c, c / a))
    print("  han2x decode_frame, all %d frames:             %8.0f frames/s" % (len(frames), d))
    micropython(corpus, frames)


if __name__ == "__main__":
    main()
