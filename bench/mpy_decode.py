"""MicroPython half of bench_decode.py: heap per decoded frame, growth, frames/s.

Run by bench_decode.py as: micropython -X heapsize=192k bench/mpy_decode.py FRAMES_HEX_FILE
The file holds one frame per line in hex; the first line is the largest list-3 frame.
"""

import gc
import sys
import time
from binascii import unhexlify

sys.path.insert(0, sys.argv[0].rsplit("/", 2)[0] if sys.argv[0].count("/") >= 2 else ".")

from han2x_core import decode_frame  # noqa: E402
from han2x_core.hdlc import HdlcReader  # noqa: E402

frames = []
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if line:
            frames.append(unhexlify(line))
big = frames[0]

decode_frame(big)  # warm up
gc.collect()
before = gc.mem_alloc()
decode_frame(big)
per_frame = gc.mem_alloc() - before

reader = HdlcReader()
gc.collect()
before = gc.mem_alloc()
reader.feed(big, len(big))
reader.next_frame()
reader_alloc = gc.mem_alloc() - before

for i in range(1000):  # warm up: first-use allocations are not growth
    reader.feed(big, len(big))
    reader.next_frame()
    decode_frame(big)
gc.collect()
start_alloc = gc.mem_alloc()
start_free = gc.mem_free()
t0 = time.ticks_ms()
for i in range(10000):
    reader.feed(big, len(big))
    n = reader.next_frame()
    decode_frame(big)
    if i % 50 == 49:
        gc.collect()
elapsed = time.ticks_diff(time.ticks_ms(), t0)
gc.collect()
growth = gc.mem_alloc() - start_alloc

t0 = time.ticks_ms()
count = 0
for _ in range(20):
    for fr in frames:
        decode_frame(fr)
        count += 1
mixed_ms = time.ticks_diff(time.ticks_ms(), t0)

print("heap_per_frame", per_frame, len(big))
print("reader_alloc", reader_alloc)
print("growth_10000", growth, reader.frames_ok)
print("rate_big", 10000 * 1000 // max(1, elapsed))
print("rate_mixed", count * 1000 // max(1, mixed_ms))
print("mem_free", start_free)
