"""Fake storage: remount() records who owns CIRCUITPY; getmount('/').readonly.

While the USB host holds the drive (`usb_host_holds_drive = True`: a computer has mounted
CIRCUITPY, which happens after boot.py), remount() raises RuntimeError as the board does."""


class _Mount:
    def __init__(self):
        self.readonly = True  # CircuitPython default: the USB host writes, code reads


_mount = _Mount()
remounts = []
usb_host_holds_drive = False  # boot.py runs before USB enumerates: the host holds nothing


def remount(mount_path, readonly=False, *, disable_concurrent_write_protection=False):
    if mount_path != "/":
        raise OSError(22, "EINVAL")  # only "/" is mounted on the board
    if usb_host_holds_drive:
        raise RuntimeError("Cannot remount path when visible via USB.")
    remounts.append((mount_path, readonly))
    _mount.readonly = readonly


def getmount(mount_path):
    if mount_path != "/":
        raise OSError(22, "EINVAL")
    return _mount


TEST_ONLY = ("remounts", "usb_host_holds_drive")


def _reset():
    global _mount, usb_host_holds_drive
    _mount = _Mount()
    remounts.clear()
    usb_host_holds_drive = False
