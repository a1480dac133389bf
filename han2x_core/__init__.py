"""HAN2X open firmware: AMS smart-meter HAN port to Modbus TCP, for RP2040 + W5500.

The same package runs on CircuitPython (the board), MicroPython and CPython (the PC).
"""

__version__ = "0.1.0"

# Served in register 40043. Encoding: major * 100 + minor * 10 + patch (0.1.0 -> 10),
# each part 0..9 except major. Documented in docs/registers.md.
FIRMWARE_VERSION = 10


class DecodeError(ValueError):
    """A frame that cannot be decoded: bad CRC, truncated, or an unknown layout. Defined
    here, not in cosem.py, so that importing the package (boot.py, safemode.py) does not
    load the decoder."""


def decode_frame(frame):
    """Decode one complete HDLC frame (flag to flag) into a reading dict.

    Raises DecodeError (a ValueError) for a frame it cannot decode. See meters.py.
    """
    from han2x_core.meters import decode_frame as _decode

    return _decode(frame)


def unload(*names):
    """Forget han2x_core modules (sys.modules and the package's attribute). On the board a
    module's code is in the heap: once nothing else holds it, it is freed. Used for code
    that only a rare path needs (settings files, energy state, page modules)."""
    import sys

    for name in names:
        sys.modules.pop("han2x_core." + name, None)
        globals().pop(name, None)

