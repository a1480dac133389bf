#!/usr/bin/env python3
"""What each CircuitPython 10.2.1 image leaves for Python, before our firmware runs.

For every RP2040 image it prints, from the UF2 alone: the RAM the image takes for itself
(.data, which holds the code it runs from RAM, and .bss) and the RAM left to CircuitPython's
outer heap, from which the VM heap grows (the RAM above .bss, less the 25 KB stack). Then,
unless --no-boot, it boots the two boards' images in the emulator (tests/support/board_emu.py)
with a code.py that only measures: gc.mem_free() after a collect, how many bytearray(1000) fit
until MemoryError (1 KB of heap each), the largest single bytearray, and whether the image
has `usb_host`. Of our firmware only boot.py runs. Prints figures, asserts
nothing (docs/architecture.md, "The board emulator").

    HAN2X_CIRCUITPYTHON_DIR=../shared/circuitpython .venv/bin/python bench/board_images.py
    ... --uf2 adafruit-circuitpython-adafruit_feather_rp2040-en_US-10.2.1.uf2   (any RP2040
        image, e.g. an official one: the UF2 figures only)
"""

import argparse
import os
import re
import struct
import sys
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tools._host  # noqa: E402,F401

RAM_END = 0x20041000  # the end of SCRATCH_Y, the top of the stack (link-rp2040.ld)
STACK = 25 * 1024  # CIRCUITPY_DEFAULT_STACK_SIZE 24 KB + the 1 KB exception stack
BOARDS = ("adafruit_feather_rp2040", "wiznet_w5500_evb_pico", "raspberry_pi_pico")
PROBE = """import gc, supervisor, time
while not supervisor.runtime.serial_connected:
    time.sleep(0.1)
gc.collect()
free = gc.mem_free()
keep = []
try:
    while True:
        keep.append(bytearray(1000))
except MemoryError:
    pass
n = len(keep)
keep = None
gc.collect()
lo, hi = 0, 262144
while hi - lo > 64:
    mid = (lo + hi) // 2
    try:
        b = bytearray(mid)
        lo = mid
    except MemoryError:
        hi = mid
    b = None
try:
    import usb_host
    host = "yes"
except ImportError:
    host = "no"
print("IMAGE free %d blocks %d largest %d usb_host %s" % (free, n, lo, host))
"""


def flash_image(path):
    """The UF2's blocks at their flash offsets (RP2040, flash at 0x10000000)."""
    img = bytearray(b"\xff" * (16 << 20))
    with open(path, "rb") as f:
        data = f.read()
    for off in range(0, len(data) - 511, 512):
        magic0, magic1, _flags, addr, size = struct.unpack_from("<5I", data, off)
        if (magic0, magic1) == (0x0A324655, 0x9E5D5157) and 0x10000000 <= addr < 0x11000000:
            img[addr - 0x10000000:addr - 0x10000000 + size] = data[off + 32:off + 32 + size]
    return img


def static_ram(path):
    """(data bytes, bss bytes, outer heap bytes) from the Pico SDK start-up code's tables:
    crt0's data_cpy_table (flash source, RAM start, RAM end; then SCRATCH_X, SCRATCH_Y, 0)
    and, in the literal pool after it, __bss_start__ and __bss_end__."""
    img = flash_image(path)

    def word(i):
        return struct.unpack_from("<I", img, i)[0]
    for i in range(0, 0x200000, 4):
        if word(i + 16) == 0x20041000 and word(i) >> 20 == 0x100 and word(i + 4) >> 28 == 2:
            ram = [w for w in (word(j) for j in range(i + 36, i + 200, 4)) if w >> 28 == 2]
            data_start, data_end, bss_start, bss_end = word(i + 4), word(i + 8), ram[0], ram[1]
            if data_start < data_end <= bss_start < bss_end < RAM_END:
                return (data_end - data_start, bss_end - bss_start,
                        RAM_END - STACK - bss_end)
    raise SystemExit("%s: no RP2040 start-up tables found" % path)


def boot(board):
    from support.board_emu import temp_board

    dev = temp_board(board, code=PROBE, timeout=300)
    try:
        dev.wait_for("IMAGE free", 280)
        time.sleep(1)
        m = re.search(r"IMAGE free (\d+) blocks (\d+) largest (\d+) usb_host (\w+)", dev.console)
    finally:
        dev.close()
    return m.groups() if m else ("?",) * 4


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--uf2", nargs="*", help="RP2040 UF2 images: their static RAM only")
    ap.add_argument("--no-boot", action="store_true", help="the UF2 figures only")
    args = ap.parse_args()
    print("| image | .data | .bss | outer heap | gc.mem_free() | bytearray(1000) | largest "
          "| usb_host |\n|---|---|---|---|---|---|---|---|")
    if args.uf2:
        for path in args.uf2:
            data, bss, heap = static_ram(path)
            print("| %s | %d | %d | %d | | | | |" % (os.path.basename(path), data, bss, heap))
        return
    from han2x_core import board_io
    from support.board_emu import CP_VERSION, cp_file

    for board in BOARDS:
        data, bss, heap = static_ram(cp_file("%s-%s.uf2" % (board, CP_VERSION)))
        bootable = board in board_io.PROFILES and not args.no_boot  # the Pico: a peer only
        booted = boot(board) if bootable else ("",) * 4
        print("| %s | %d | %d | %d | %s | %s | %s | %s |" % ((board, data, bss, heap) + booted))


if __name__ == "__main__":
    main()
