"""The HAN receiver's PIO program as assembly text: the source of the instruction words that
han2x_core/han_uart.py ships (the board has no assembler; tests/test_han_uart.py checks the
shipped words against adafruit_pioasm for every line format and polarity). Host only.
"""


def program_source(line, polarity):
    """PIO assembly of the receiver for one line format and polarity (pin = in base 0).

    8 clocks per bit; t = clocks after the start edge is seen (0..1 clock late). The start
    bit is checked at t=3 (a shorter glitch restarts), data bit k sampled at t=11+8k, the
    stop bit at t=11+8D (D = 9 for 8E1, 8 for 8N1) where autopush hands the word over, and
    the next start edge is awaited from t=13+8D: one character takes the program 8D+13
    clocks (85 for 8E1 against 88 on the wire), so back-to-back characters from a sender
    up to ~3 % fast never accumulate lag. A low stop bit (framing error, break) waits for
    the line to return to idle first. Bits shift in from the right: the first data bit
    ends up highest, the stop bit in bit 0.
    """
    data_bits = 9 if line == "8E1" else 8  # 8 data (+ parity)
    if polarity == "inverted":  # idle (mark) is low: the start bit is high
        head = "broken:\n    wait 0 pin 0\n.wrap_target\nstart:\n    wait 1 pin 0\n"
        check = "    jmp pin good\n    jmp start\ngood:\n"
        tail = "    jmp pin broken\n"
    else:
        head = ".wrap_target\nbroken:\n    wait 1 pin 0\nstart:\n    wait 0 pin 0\n"
        check = "    jmp pin start\n"
        tail = "    jmp pin start\n"
    return (
        ".program han_rx\n"
        "%s"
        "    nop [1]\n"
        "%s"
        "    set x, %d [6]\n"
        "bitloop:\n"
        "    in pins, 1\n"
        "    jmp x-- bitloop [6]\n"
        "    in pins, 1\n"
        "%s"
        ".wrap\n"
    ) % (head, check, data_bits - 1, tail)
