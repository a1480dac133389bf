"""Fake storage: remount() records who owns CIRCUITPY; getmount('/').readonly."""


class _Mount:
    def __init__(self):
        self.readonly = True  # CircuitPython default: the USB host writes, code reads


_mount = _Mount()
remounts = []


def remount(path, readonly=False, *, disable_concurrent_write_protection=False):
    remounts.append((path, readonly))
    _mount.readonly = readonly


def getmount(path):
    return _mount


def _reset():
    global _mount
    _mount = _Mount()
    remounts.clear()
