"""Shared state of the fake CircuitPython modules, reset between tests."""

import sys


def fakes_reset(board_id="wiznet_w5500_evb_pico"):
    """Fresh state for every fake module that is loaded."""
    for name in ("board", "digitalio", "microcontroller", "storage", "supervisor",
                 "watchdog", "busio", "rp2pio"):
        mod = sys.modules.get(name)
        reset = getattr(mod, "_reset", None)
        if reset is not None:
            reset()
    import board

    board.board_id = board_id
