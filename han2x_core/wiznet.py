"""Import the W5500 driver (adafruit_wiznet5k) without its DHCP, DNS and debug modules.

The driver imports all three at its top level, yet the firmware has its own non-blocking
DHCP (dhcp.py), never resolves names, and never turns the driver's debug output on. On the
board they would hold heap for nothing, and lib/README.md forbids editing the library. So,
while the driver is imported, a stand-in object sits in sys.modules (and on the package)
under their names; afterwards the names are removed again, and only the driver's own global
still refers to the tiny stand-in. Calling the driver's set_dhcp() or get_host_by_name()
would then fail with AttributeError: the firmware does neither.

A driver version that needs more of these modules at import time gets the real ones
(import_driver() falls back to a plain import): the device still starts, and
tests/test_network.py fails until this is looked at.
"""

import sys

_PKG = "adafruit_wiznet5k"
_UNUSED = ("adafruit_wiznet5k_dhcp", "adafruit_wiznet5k_dns", "adafruit_wiznet5k_debug")


class _Unused:
    """What the driver sees as its dhcp, dns and debug modules."""

    @staticmethod
    def debug_msg(message, debugging):  # the driver's call, made with debugging False
        if debugging:
            print(message)


def import_driver():
    """(WIZNET5K, SocketPool) from adafruit_wiznet5k, loaded as the module doc says."""
    import adafruit_wiznet5k as pkg

    driver = _PKG + ".adafruit_wiznet5k"
    fresh = driver not in sys.modules  # already loaded (a PC test): nothing to do
    if fresh:
        for name in _UNUSED:
            sys.modules[_PKG + "." + name] = _Unused  # type: ignore[assignment]
            setattr(pkg, name, _Unused)
    try:
        from adafruit_wiznet5k.adafruit_wiznet5k import WIZNET5K
    except (ImportError, AttributeError):
        _forget(pkg)
        sys.modules.pop(driver, None)
        from adafruit_wiznet5k.adafruit_wiznet5k import WIZNET5K
    finally:
        if fresh:
            _forget(pkg)
    from adafruit_wiznet5k.adafruit_wiznet5k_socketpool import SocketPool

    return WIZNET5K, SocketPool


def _forget(pkg):
    for name in _UNUSED:
        if sys.modules.get(_PKG + "." + name) is _Unused:
            del sys.modules[_PKG + "." + name]
            delattr(pkg, name)
