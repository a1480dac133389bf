"""Board wiring shared by code.py, boot.py and safemode.py: pin profiles, LED/button
service, watchdog, board temperature, the CIRCUITPY ownership rule and the power-up
DHCP request. Shell: every CircuitPython module comes in as an argument, so tests run it
on CPython with tests/fakes. Pins and the rule are documented in docs/wiring.md and
docs/settings.md.
"""

from micropython import const

from han2x_core import indicators
from han2x_core.settings import DEFAULTS
from han2x_core.storage import READ_ONLY_MESSAGE, SettingsStore
from han2x_core.ticks import ticks_add, ticks_diff

SETTINGS_PATH = "/settings.toml"
ENERGY_PATH = "/energy_state.txt"  # the meter's last hourly totals (energystate.py)
# CIRCUITPY ownership: the board writes the drive, unless this file exists at power-up.
# Then the computer writes it for that one start; boot.py deletes the file, so the next
# reset gives the drive back to the board. A file starting with "keep" is not deleted.
USB_WRITE_MARKER = "/usb_write.txt"

_NVM_DHCP = const(0)  # microcontroller.nvm byte: boot.py -> code.py "DHCP was requested"
_NVM_DHCP_FLAG = const(0xD1)
_TEMP_EVERY_MS = const(10000)
_BOOT_HOLD_MAX_MS = const(30000)  # a button stuck at power-up is not waited for longer

# Pin names per board.board_id (docs/wiring.md). None = not wired.
PROFILES = {
    "wiznet_w5500_evb_pico": {
        "name": "WIZnet W5500-EVB-Pico",
        "han_rx": "GP1", "han_led": "LED", "power_led": "GP14", "button": "GP15",
        "spi": ("GP18", "GP19", "GP16"), "w5500_cs": "GP17", "w5500_reset": "GP20",
    },
    "adafruit_feather_rp2040": {
        "name": "Adafruit Feather RP2040 + Ethernet FeatherWing",
        "han_rx": "RX", "han_led": "LED", "power_led": "D12", "button": "D5",
        "spi": ("SCK", "MOSI", "MISO"), "w5500_cs": "D10", "w5500_reset": None,
    },
}
DEFAULT_PROFILE = "wiznet_w5500_evb_pico"


def profile_for(board_id):
    """(profile dict, known?) for a board_id; unknown boards get the W5500-EVB-Pico pins."""
    if board_id in PROFILES:
        return PROFILES[board_id], True
    return PROFILES[DEFAULT_PROFILE], False


def pin(board, name):
    return getattr(board, name) if name else None


def output(digitalio, board, name, value=False):
    if not name:
        return None
    io = digitalio.DigitalInOut(getattr(board, name))
    io.switch_to_output(value=value)
    return io


def button(digitalio, board, name):
    """The FACTRESET button: to ground, internal pull-up; pressed reads False."""
    io = digitalio.DigitalInOut(getattr(board, name))
    io.switch_to_input(pull=digitalio.Pull.UP)
    return io


class LedButton:
    """App service: reads FACTRESET, runs the indicator machines, writes the LEDs."""

    name = "leds"

    def __init__(self, ind, app, button_io, han_led, power_led):
        self.ind = ind
        self.app = app
        self.button = button_io
        self.han_led = han_led
        self.power_led = power_led
        self._han = None
        self._power = None

    def poll(self, now_ms):
        pressed = self.button is not None and not self.button.value
        self.ind.update(now_ms, pressed, self.app.last_frame_ms)
        if self.han_led is not None and self.ind.han_led != self._han:
            self._han = self.ind.han_led
            self.han_led.value = self._han
        if self.power_led is not None and self.ind.power_led != self._power:
            self._power = self.ind.power_led
            self.power_led.value = self._power


def factory_reset(app):
    """FACTRESET held while running: every setting back to its default, saved and applied.

    Returns True when saved; False when the drive is not writable (the defaults are then
    applied anyway, until the next restart, and the web page says why)."""
    errors = app.save_settings(dict(DEFAULTS))
    if not errors:
        return True
    app.configure(dict(DEFAULTS))
    app.settings_warning = errors.get("_store") or READ_ONLY_MESSAGE
    return False


class Watchdog:
    """App service, polled last: feeds the hardware watchdog (WatchDogMode.RESET)."""

    name = "watchdog"

    def __init__(self, microcontroller, watchdog, timeout_s=8):
        wdt = microcontroller.watchdog
        wdt.timeout = timeout_s  # the RP2040 allows up to ~8.3 s
        wdt.mode = watchdog.WatchDogMode.RESET
        self.wdt = wdt
        self.feeds = 0

    def poll(self, now_ms):
        self.wdt.feed()
        self.feeds += 1


class BoardStatus:
    """App service: board temperature (degC x 100) into the registers every 10 s."""

    name = "board"

    def __init__(self, microcontroller, registers, now_ms):
        self.cpu = microcontroller.cpu
        self.registers = registers
        self._next_ms = now_ms
        self.temperature_c100 = None
        self.poll(now_ms)  # valid from the first Modbus request on

    def poll(self, now_ms):
        if ticks_diff(now_ms, self._next_ms) < 0:
            return
        self._next_ms = ticks_add(now_ms, _TEMP_EVERY_MS)
        t = self.cpu.temperature
        if t is None:
            return
        self.temperature_c100 = int(t * 100 + (0.5 if t >= 0 else -0.5))
        self.registers.set_board(temperature_c100=self.temperature_c100)


def dhcp_requested(microcontroller):
    """True once after boot.py saw FACTRESET held at power-up (and clears the flag)."""
    nvm = microcontroller.nvm
    if nvm is None or nvm[_NVM_DHCP] != _NVM_DHCP_FLAG:
        return False
    nvm[_NVM_DHCP] = 0
    return True


def request_usb_write(microcontroller, path=None, keep=False):
    """Open the drive to the computer from the next start on (then reset the board).

    For the serial console: the board owns the drive, so it can create the marker file
    that boot.py looks for. Raises OSError if it cannot (then nothing is reset)."""
    usb_write_hook(microcontroller, path, keep)()()


def usb_write_hook(microcontroller, path=None, keep=False):
    """App.usb_write, the web page's button: a callable that writes the marker at once
    (OSError if it cannot) and returns microcontroller.reset, which the web server calls
    once the answer page is sent."""
    def usb_write():
        marker = path or USB_WRITE_MARKER
        try:
            with open(marker, "w") as f:
                f.write("keep\n" if keep else "once\n")
        except OSError:  # disk full: no half marker, boot.py would act on an empty one
            try:
                import os

                os.remove(marker)
            except OSError:
                pass
            raise
        return microcontroller.reset

    return usb_write


def boot(storage, digitalio, board, microcontroller, sleep_ms, ticks_ms, exists=None,
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
    settings_path = settings_path or SETTINGS_PATH
    marker = marker or USB_WRITE_MARKER
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


def _set_dhcp(path, microcontroller, held_ms):
    store = SettingsStore(path)
    settings, warning = store.load()
    settings["dhcp"] = True
    try:
        store.save(settings)
    except OSError as e:
        return "DHCP requested (button held %d ms) but not saved: %s" % (held_ms, e)
    nvm = microcontroller.nvm
    if nvm is not None:
        nvm[_NVM_DHCP] = _NVM_DHCP_FLAG
    return "DHCP mode set (FACTRESET held at power-up for %d ms)" % held_ms


def _exists(path):
    import os

    try:
        os.stat(path)
        return True
    except OSError:
        return False


def safe_mode(supervisor, microcontroller, sleep_ms):
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
