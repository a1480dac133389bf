"""What boot.py and safemode.py do (the power-up FACTRESET check, who writes the drive,
leaving an unasked-for safe mode). Apart from board_io.py so that none of it stays on the
heap code.py runs in. Shell: every CircuitPython module comes in as an argument.
"""

from micropython import const

_TYPE_CHECKING = const(0)  # mypy: true (pyproject always_true); the compiler drops the block
if _TYPE_CHECKING:
    from cpmodules import Board, Digitalio, Microcontroller, Storage, Supervisor

from han2x_core import board_io, indicators
from han2x_core.board_io import button, output, profile_for
from han2x_core.storage import SettingsStore
from han2x_core.ticks import ticks_diff

_BOOT_HOLD_MAX_MS = const(30000)  # a button stuck at power-up is not waited for longer


def boot(storage: "Storage", digitalio: "Digitalio", board: "Board",
         microcontroller: "Microcontroller", sleep_ms, ticks_ms, exists=None,
         settings_path=None, marker=None):
    """What boot.py does. Returns a short list of lines for boot_out.txt.

    1. The board takes write access to CIRCUITPY (so web-page settings persist).
    2. FACTRESET held at power-up: blink the HAN LED until release, then save dhcp = true
       and leave a flag for code.py (which acknowledges it with BLINK_DHCP).
    3. The USB marker file present: delete it (unless it says "keep") and give write
       access back to the computer for this start (drag-and-drop updates).
    """
    if exists is None:
        exists = _exists
    settings_path = settings_path or board_io.SETTINGS_PATH
    marker = marker or board_io.USB_WRITE_MARKER
    lines = []
    storage.remount("/", readonly=False)
    prof, known = profile_for(getattr(board, "board_id", ""))
    if not known:
        lines.append("unknown board %s: using %s pins" % (board.board_id, prof["name"]))
    btn = button(digitalio, board, prof["button"])
    try:
        if not btn.value:
            led = output(digitalio, board, prof["han_led"])
            held = _wait_release(btn, led, sleep_ms, ticks_ms)
            if led is not None:
                led.deinit()
            lines.append(_set_dhcp(settings_path, microcontroller, held))
    finally:
        btn.deinit()
    usb = exists(marker)
    if usb:
        try:
            with open(marker) as f:
                keep = f.read(4) == "keep"
            if not keep:
                import os

                os.remove(marker)
        except OSError as e:
            lines.append("could not read %s: %s" % (marker, e))
        storage.remount("/", readonly=True)
        lines.append("CIRCUITPY: the computer writes the drive for this start; "
                     "press reset to give it back to the device")
    else:
        lines.append("CIRCUITPY: the device writes the drive (settings are saved); "
                     "to copy files by USB see docs/settings.md")
    return lines


def _wait_release(btn, led, sleep_ms, ticks_ms):
    on_ms, off_ms, _ = indicators.BLINK_BOOT_HOLD
    start = ticks_ms()
    while not btn.value:
        age = ticks_diff(ticks_ms(), start)
        if age >= _BOOT_HOLD_MAX_MS:
            return age
        if led is not None:
            led.value = age % (on_ms + off_ms) < on_ms
        sleep_ms(20)
    return ticks_diff(ticks_ms(), start)


def _set_dhcp(path, microcontroller: "Microcontroller", held_ms):
    store = SettingsStore(path)
    settings, warning = store.load()
    settings["dhcp"] = True
    try:
        store.save(settings)
    except OSError as e:
        return "DHCP requested (button held %d ms) but not saved: %s" % (held_ms, e)
    nvm = microcontroller.nvm
    if nvm is not None:
        nvm[board_io.NVM_DHCP] = board_io.NVM_DHCP_FLAG
    return "DHCP mode set (FACTRESET held at power-up for %d ms)" % held_ms


def _exists(path):
    import os

    try:
        os.stat(path)
        return True
    except OSError:
        return False


def safe_mode(supervisor: "Supervisor", microcontroller: "Microcontroller", sleep_ms):
    """What safemode.py does: reset out of any safe mode the user did not ask for.

    A device nobody watches must not sit in safe mode after a brown-out or a crash. Safe
    mode asked for on purpose is kept: PROGRAMMATIC (requested from the console); USER
    (reset button during start-up) never runs safemode.py at all. Those are the ways to
    reach the drive and the REPL. Returns the reason when it stays."""
    reason = supervisor.runtime.safe_mode_reason
    reasons = supervisor.SafeModeReason
    stay = []
    for name in ("USER", "PROGRAMMATIC", "NONE", "NO_CIRCUITPY", "FLASH_WRITE_FAIL",
                 "USB_TOO_MANY_ENDPOINTS", "USB_TOO_MANY_INTERFACE_NAMES",
                 "USB_BOOT_DEVICE_NOT_INTERFACE_ZERO"):
        value = getattr(reasons, name, None)
        if value is not None:
            stay.append(value)
    if reason in stay:
        return str(reason)
    sleep_ms(2000)  # let a sagging supply recover before starting again
    microcontroller.reset()
    return None
