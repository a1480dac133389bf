"""The App's HAN input: HanReader picks the line format (8E1/8N1) and polarity, by hand
or automatically from CRC-valid frames, over the receivers in han_uart.py (PIO UART or
busio.UART). Shell: the receivers import the device modules only when built; tests pass
make_receiver fakes. Details: docs/han-input.md.
"""

from micropython import const

from han2x_core.han_uart import PioReceiver, UartReceiver

_TYPE_CHECKING = const(0)  # mypy: true (pyproject always_true); the compiler drops the block
if _TYPE_CHECKING:
    from cpmodules import Any

_JUDGE_WORDS = const(64)  # characters seen before an error rate can reject a format
_NO_FRAME_WORDS = const(1500)  # characters without a valid frame: try the next format
_LOST_WORDS = const(4000)  # locked, but no valid frame for this many: search again
_LOST_ERROR_WORDS = const(256)  # ...or this many with over half of them bad

LINES = ("8E1", "8N1")
POLARITIES = ("normal", "inverted")

_ring = []  # type: list  # the PIO ring, shared by the receivers _make_receiver builds


def _make_receiver(kind, pin, line, polarity):
    if kind == "uart":
        return UartReceiver(pin, line)
    rx = PioReceiver(pin, line, polarity, ring=_ring[0] if _ring else None)
    if not _ring:
        _ring.append(rx._ring)
    return rx


class HanReader:
    """The App's HAN source: readinto(buf) -> n, never blocking; configure(settings).

    With han_line / han_polarity "auto" it tries the formats in turn and keeps the first
    that gives CRC-valid frames, judged from the HdlcReader given to watch() (frames_ok).
    While searching, a format is dropped after 64 characters when more than 1 in 8 had a
    parity or stop-bit error, or after 1500 characters without a valid frame. Once a
    format gave a valid frame it is kept until 256 characters without a frame are more
    than half bad, or 4000 pass without one. `detected` names the working format
    ("8E1 normal"), None while searching.
    """

    name = "han"

    def __init__(self, pin, make_receiver=None):
        self.pin = pin
        self.make_receiver = make_receiver or _make_receiver
        self.receiver = None  # type: Any
        self.kind = "pio"
        self.line_setting = "auto"
        self.polarity_setting = "auto"
        self.candidates = []
        self.index = 0
        self.locked = False
        self.detected = None
        self.switches = 0
        self._bytes_done = 0  # counts of the receivers already replaced
        self._errors_done = 0
        self.last_error = ""
        self.report = None  # App.error(where, what), set by the App
        self._hdlc = None
        self._frames_seen = 0
        self._words_at_frame = 0
        self._errors_at_frame = 0
        self._set_candidates()

    def watch(self, hdlc):
        """Judge formats by hdlc.frames_ok (an HdlcReader, usually app.hdlc)."""
        self._hdlc = hdlc
        self._frames_seen = hdlc.frames_ok

    def configure(self, settings):
        kind = settings.get("han_input", "pio")
        line = settings.get("han_line", "auto")
        polarity = settings.get("han_polarity", "auto")
        same = (kind, line, polarity) == (self.kind, self.line_setting, self.polarity_setting)
        if same and self.receiver is not None:
            return
        self.kind, self.line_setting, self.polarity_setting = kind, line, polarity
        self._set_candidates()
        self._start(0)

    def _set_candidates(self):
        lines = LINES if self.line_setting == "auto" else (self.line_setting,)
        if self.kind == "uart":
            polarities = ("normal",)  # type: tuple  # busio cannot invert the input
        elif self.polarity_setting == "auto":
            polarities = POLARITIES
        else:
            polarities = (self.polarity_setting,)
        self.candidates = [(ln, p) for p in polarities for ln in lines]
        if self.kind == "uart" and self.polarity_setting == "inverted":
            self.last_error = "busio UART cannot read an inverted line; use han_input = pio"
            if self.report is not None:
                self.report(self.name, self.last_error)

    def _start(self, index):
        self.stop()
        self.index = index % len(self.candidates)
        line, polarity = self.candidates[self.index]
        self.locked = False
        self.detected = None
        self._words_at_frame = 0
        self._errors_at_frame = 0
        self.receiver = self.make_receiver(self.kind, self.pin, line, polarity)

    def stop(self):
        if self.receiver is not None:
            self._account()
            try:
                self.receiver.deinit()
            finally:
                self.receiver = None

    def _account(self):
        r = self.receiver
        self._bytes_done += r.bytes_ok
        self._errors_done += r.errors

    @property
    def bytes_ok(self):
        """Characters received since start-up, the running receiver's included."""
        r = self.receiver
        return self._bytes_done + (r.bytes_ok if r is not None else 0)

    @property
    def errors(self):
        """Framing and parity errors since start-up, the running receiver's included."""
        r = self.receiver
        return self._errors_done + (r.errors if r is not None else 0)

    @property
    def line(self):
        return self.candidates[self.index][0]

    @property
    def polarity(self):
        return self.candidates[self.index][1]

    @property
    def line_format(self):
        """What the web page shows: describe()."""
        return self.describe()

    def describe(self):
        """One line for the web page and the console."""
        name = "%s %s" % self.candidates[self.index]
        if self.detected:
            return name + (" (detected)" if len(self.candidates) > 1 else " (set)")
        if len(self.candidates) > 1:
            return "searching, trying " + name
        return name + " (set), no valid telegram yet"

    def readinto(self, buf):
        if self.receiver is None:
            self._start(self.index)
        n = self.receiver.readinto(buf)
        self._judge()
        return n

    def _judge(self):
        r = self.receiver
        errors = r.errors
        words = r.bytes_ok + errors
        hdlc = self._hdlc
        if hdlc is not None and hdlc.frames_ok != self._frames_seen:
            self._frames_seen = hdlc.frames_ok
            self._words_at_frame = words
            self._errors_at_frame = errors
            if not self.locked:
                self.locked = True
                self.detected = "%s %s" % self.candidates[self.index]  # allocates, once
            return
        if len(self.candidates) < 2 or hdlc is None:
            return
        since = words - self._words_at_frame
        bad = errors - self._errors_at_frame
        if self.locked:  # a working format: give up only on clear evidence
            if since >= _LOST_WORDS or (since >= _LOST_ERROR_WORDS and bad * 2 > since):
                self._switch()
        elif (since >= _JUDGE_WORDS and bad * 8 > since) or since >= _NO_FRAME_WORDS:
            self._switch()

    def _switch(self):
        self.switches += 1
        self._start(self.index + 1)
