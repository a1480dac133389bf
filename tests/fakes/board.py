"""Fake board: every pin name exists; board_id is set by the test (fakes_reset)."""

import microcontroller

board_id = "wiznet_w5500_evb_pico"
_pins = {}


def __getattr__(name):
    if name.startswith("_"):
        raise AttributeError(name)
    if name not in _pins:
        _pins[name] = microcontroller.Pin(name)
    return _pins[name]


def SPI():
    import busio

    return busio.SPI(__getattr__("SCK"), __getattr__("MOSI"), __getattr__("MISO"))


def W5K_SPI():
    import busio

    return busio.SPI(__getattr__("W5K_SCK"), __getattr__("W5K_MOSI"), __getattr__("W5K_MISO"))


def _reset():
    _pins.clear()
