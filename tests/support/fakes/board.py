"""Fake board: the pins and bus functions of the board `board_id` names, as listed in the
stubs' board_definitions/ (a pin name that board lacks raises AttributeError, as on the
board). Aliases (RX and D0) are one Pin object. board_id is set by _state.installed()."""

from support.fakes import _stubs
import microcontroller

board_id = "wiznet_w5500_evb_pico"
_pins = {}  # (board_id, GPIO) -> Pin
_buses = {}


def __getattr__(name):
    pins, funcs = _stubs.board_pins(board_id)
    if name in pins:
        key = (board_id, pins[name])
        if key not in _pins:
            _pins[key] = microcontroller.Pin._make(name, pins[name])
        return _pins[key]
    if name in funcs and name in _BUSES:
        return lambda: _bus(name)
    raise AttributeError("'module' object has no attribute '%s'" % name)


def _bus(name):
    """board.SPI() and friends: one shared object per board, like CircuitPython's."""
    import busio

    if name not in _buses:
        _buses[name] = busio.SPI(*(__getattr__(p) for p in _BUSES[name]))
    return _buses[name]


_BUSES = {"SPI": ("SCK", "MOSI", "MISO"), "W5K_SPI": ("W5K_SCK", "W5K_MOSI", "W5K_MISO")}


def _reset():
    _pins.clear()
    _buses.clear()
