"""HAN / POWER LED and FACTRESET button state machines (han2x-spec: "Indicator LEDs",
"Button FACTRESET"). Pure core: time comes in as now_ms, the button as a boolean, and the
LED states go out as booleans (han_led, power_led) that the shell writes to the pins.
"""

from micropython import const

from han2x_core.ticks import ticks_add, ticks_diff

HAN_ON_MS = const(60000)  # HAN LED stays lit this long after the last valid telegram
RESET_HOLD_MS = const(5000)  # FACTRESET held this long while running -> factory reset
DEBOUNCE_MS = const(50)

# Acknowledgement blink patterns of the HAN LED: (on_ms, off_ms, duration_ms).
BLINK_FACTORY_RESET = (100, 100, 3000)  # fast: settings are back to factory defaults
BLINK_RESET_NOT_SAVED = (600, 200, 6000)  # long blinks: defaults in use but not saved
BLINK_DHCP = (250, 250, 3000)  # medium: started in DHCP mode (button held at power-up)
BLINK_BOOT_HOLD = (250, 250, 0)  # boot.py while the button is held at power-up

_IDLE = const(0)  # button released (or not yet seen released)
_HELD = const(1)  # pressed, counting towards RESET_HOLD_MS
_DONE = const(2)  # the hold fired; waiting for release


class Indicators:
    """update(now_ms, pressed, last_frame_ms) once per loop; then read han_led/power_led.

    on_factory_reset(now_ms) is called once per hold of RESET_HOLD_MS; it returns True
    when the defaults were saved, False when they are only in use (drive not writable).
    The button counts only after it has been seen released once, so a press held at
    power-up (DHCP mode, handled by boot.py) or a stuck button never resets anything.
    """

    def __init__(self, now_ms, on_factory_reset=None, hold_ms=RESET_HOLD_MS,
                 han_on_ms=HAN_ON_MS):
        self.on_factory_reset = on_factory_reset
        self.hold_ms = hold_ms
        self.han_on_ms = han_on_ms
        self.han_led = False
        self.power_led = True
        self.factory_resets = 0
        self._state = _IDLE
        self._armed = False
        self._raw = None  # unknown until the first update
        self._raw_since = now_ms
        self._pressed = False
        self._pressed_at = now_ms
        self._pattern = None
        self._pattern_at = now_ms

    def blink(self, pattern, now_ms):
        """Show an acknowledgement pattern (one of the BLINK_* tuples) from now on."""
        self._pattern = pattern
        self._pattern_at = now_ms

    @property
    def blinking(self):
        return self._pattern is not None

    def update(self, now_ms, pressed, last_frame_ms):
        """Advance the button and LED machines; pressed is True while the button is down."""
        self._debounce(now_ms, pressed)
        self._button(now_ms)
        self.power_led = True
        self.han_led = self._han(now_ms, last_frame_ms)

    def _debounce(self, now_ms, pressed):
        pressed = bool(pressed)
        if self._raw is None:  # first sample: take it as the settled state
            self._raw = self._pressed = pressed
            self._raw_since = self._pressed_at = now_ms
        if pressed != self._raw:
            self._raw = pressed
            self._raw_since = now_ms
        elif pressed != self._pressed and ticks_diff(now_ms, self._raw_since) >= DEBOUNCE_MS:
            self._pressed = pressed
            if pressed:
                self._pressed_at = self._raw_since

    def _button(self, now_ms):
        if not self._pressed:
            self._armed = True
            self._state = _IDLE
            return
        if not self._armed:
            return
        if self._state == _IDLE:
            self._state = _HELD
        if self._state == _HELD and ticks_diff(now_ms, self._pressed_at) >= self.hold_ms:
            self._state = _DONE
            self.factory_resets += 1
            saved = True
            if self.on_factory_reset is not None:
                saved = self.on_factory_reset(now_ms) is not False
            self.blink(BLINK_FACTORY_RESET if saved else BLINK_RESET_NOT_SAVED, now_ms)

    def _han(self, now_ms, last_frame_ms):
        pattern = self._pattern
        if pattern is not None:
            on_ms, off_ms, duration_ms = pattern
            age = ticks_diff(now_ms, self._pattern_at)
            if self._state == _DONE:  # keep blinking while the button is still held
                self._pattern_at = ticks_add(now_ms, -(age % (on_ms + off_ms)))
                age = ticks_diff(now_ms, self._pattern_at)
            if duration_ms == 0 or age < duration_ms:
                return age % (on_ms + off_ms) < on_ms
            self._pattern = None
        if self._state == _HELD:
            return False  # dark while counting: "keep holding until it blinks"
        if last_frame_ms is None:
            return False
        return 0 <= ticks_diff(now_ms, last_frame_ms) < self.han_on_ms
