"""Board wiring shared by code.py, boot.py and safemode.py: pin profiles, LED/button
service, watchdog, board temperature, the CIRCUITPY ownership rule and the power-up
DHCP request (what only boot.py and safemode.py run is in bootio.py, so that it does not
stay on code.py's heap). Shell: every CircuitPython module comes in as an argument, so tests run it
on CPython with tests/support/fakes. Pins and the rule are documented in docs/wiring.md and
docs/settings.md.
"""

from micropython import const

_TYPE_CHECKING = const(0)  # mypy: true (pyproject always_true); the compiler drops the block
if _TYPE_CHECKING:
    from cpmodules import Board, Digitalio, Microcontroller, WatchdogModule

from han2x_core.ticks import ticks_add, ticks_diff

SETTINGS_PATH = "/settings.toml"
ENERGY_PATH = "/energy_state.txt"  # the meter's last hourly totals (energystate.py)
# CIRCUITPY ownership: the board writes the drive, unless this file exists at power-up.
# Then the computer writes it for that one start; boot.py deletes the file, so the next
# reset gives the drive back to the board. A file starting with "keep" is not deleted.
USB_WRITE_MARKER = "/usb_write.txt"

NVM_DHCP = const(0)  # microcontroller.nvm byte: boot.py -> code.py "DHCP was requested"
NVM_DHCP_FLAG = const(0xD1)
_TEMP_EVERY_MS = const(10000)

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


def pin(board: "Board", name):
    return getattr(board, name) if name else None


def output(digitalio: "Digitalio", board: "Board", name, value=False):
    if not name:
        return None
    io = digitalio.DigitalInOut(getattr(board, name))
    io.switch_to_output(value=value)
    return io


def button(digitalio: "Digitalio", board: "Board", name):
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

    def factory_reset(self, now_ms):
        """Indicators.on_factory_reset (assembly.build)."""
        return factory_reset(self.app)


def factory_reset(app):
    """FACTRESET held while running: every setting back to its default, saved and applied.

    Returns True when saved; False when the drive is not writable (the defaults are then
    applied anyway, until the next restart, and the web page says why)."""
    from han2x_core import unload
    from han2x_core.settings import DEFAULTS

    try:
        defaults = dict(DEFAULTS)
    finally:  # a MemoryError here must not keep the schema loaded
        unload("settings")
    errors = app.save_settings(dict(defaults))
    if not errors:
        return True
    app.configure(defaults)
    warning = errors.get("_store")
    if warning is None:
        from han2x_core.storage import READ_ONLY_MESSAGE as warning

        unload("storage")
    app.settings_warning = warning
    return False


class SettingsFile:
    """The App's settings store on the board: storage.SettingsStore's save(), with
    storage.py loaded for each save only (its code costs the heap nothing in between).
    extra: the keys the file holds that we do not own (SettingsStore.extra after load())."""

    def __init__(self, path, extra):
        self.path = path
        self.extra = extra

    def save(self, settings):
        from han2x_core import unload
        from han2x_core.storage import SettingsStore

        try:
            store = SettingsStore(self.path)
            store.extra = self.extra
            store.save(settings)
        finally:
            unload("storage")


class Watchdog:
    """App service, polled last: feeds the hardware watchdog (WatchDogMode.RESET)."""

    name = "watchdog"

    def __init__(self, microcontroller: "Microcontroller", watchdog: "WatchdogModule",
                 timeout_s=8):
        wdt = microcontroller.watchdog
        wdt.timeout = timeout_s  # type: ignore[union-attr]  # the RP2040 allows up to ~8.3 s
        wdt.mode = watchdog.WatchDogMode.RESET  # type: ignore[union-attr]
        self.wdt = wdt
        self.feeds = 0

    def poll(self, now_ms):
        self.wdt.feed()  # type: ignore[union-attr]
        self.feeds += 1


class BoardStatus:
    """App service: board temperature (degC x 100) into the registers every 10 s."""

    name = "board"

    def __init__(self, microcontroller: "Microcontroller", registers, now_ms):
        self.cpu = microcontroller.cpu
        self.registers = registers
        self._next_ms = now_ms
        self.temperature_c100 = None  # type: int | None
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


def dhcp_requested(microcontroller: "Microcontroller"):
    """True once after boot.py saw FACTRESET held at power-up (and clears the flag)."""
    nvm = microcontroller.nvm
    if nvm is None or nvm[NVM_DHCP] != NVM_DHCP_FLAG:
        return False
    nvm[NVM_DHCP] = 0
    return True


def request_usb_write(microcontroller: "Microcontroller", path=None, keep=False):
    """Open the drive to the computer from the next start on (then reset the board).

    For the serial console: the board owns the drive, so it can create the marker file
    that boot.py looks for. Raises OSError if it cannot (then nothing is reset)."""
    usb_write_hook(microcontroller, path, keep)()()


def usb_write_hook(microcontroller: "Microcontroller", path=None, keep=False):
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
