"""Start-up that fails again and again backs off instead of resetting for ever.

code.py calls begin(nvm) first: it counts this start in microcontroller.nvm and says how
much to start. Two starts in a row that do not reach a stable loop (60 s of running) ->
the next two start HAN input and Modbus only, without the web server; after two more ->
the safe state: nothing is started, the POWER LED blinks SAFE_BLINK and the serial console
repeats why, until the board is reset or powered again (which tries a full start once
more). docs/leds-and-button.md and docs/troubleshooting.md describe it for users. Shell:
nvm, the LED and sleep come in as arguments.
"""

from micropython import const

FULL = "full"
MODBUS_ONLY = "modbus-only"
SAFE = "safe"
FULL_TRIES = const(2)  # failed starts before the web server is left out
MODBUS_TRIES = const(2)  # then failed Modbus-only starts before the safe state
STABLE_MS = const(60000)  # a start is good once the loop has run this long
SAFE_BLINK = (200, 300, 3, 2000)  # POWER LED: 3 x (0.2 s on, 0.3 s off), 2 s dark

# microcontroller.nvm layout (byte 0 is board_io's DHCP flag from boot.py)
_MAGIC = const(0x5A)  # byte 1: bytes 2.. are ours (a new board's nvm reads 0xFF)
_FAILS = const(2)  # byte 2: starts in a row that did not reach a stable loop
_REASON = const(3)  # bytes 3..62: why the last failed start failed (ASCII)
_REASON_LEN = const(60)


def begin(nvm):
    """Count this start as failed until ok(); return (mode, failed starts before it,
    the last failure's reason)."""
    if nvm is None or len(nvm) < _REASON + _REASON_LEN:  # no nvm: always a full start
        return FULL, 0, ""
    failed = nvm[_FAILS] if nvm[1] == _MAGIC else 0
    reason = bytes(nvm[_REASON:_REASON + _REASON_LEN]).split(b"\0")[0].decode() if failed else ""
    if failed >= FULL_TRIES + MODBUS_TRIES:
        nvm[1:3] = bytes((_MAGIC, 0))  # a reset or power cycle tries a full start again
        return SAFE, failed, reason
    nvm[1:3] = bytes((_MAGIC, failed + 1))  # one write: each assignment is a flash erase
    return (FULL if failed < FULL_TRIES else MODBUS_ONLY), failed, reason


def ok(nvm):
    """The loop has run STABLE_MS: this start was good."""
    if nvm is not None and len(nvm) > _FAILS and nvm[_FAILS]:
        nvm[1:3] = bytes((_MAGIC, 0))


def failed(nvm, error):
    """Keep why this start failed, for the safe state's console message."""
    if nvm is None or len(nvm) < _REASON + _REASON_LEN:
        return
    text = ("%s: %s" % (type(error).__name__, error)).encode()[:_REASON_LEN]
    nvm[_REASON:_REASON + _REASON_LEN] = text + bytes(_REASON_LEN - len(text))


def safe_state(reason, failed_starts, led, sleep_ms, rounds=-1, log=print):
    """Blink SAFE_BLINK on led (None: no LED) for ever (rounds < 0), printing why every
    30 patterns. Nothing else runs: no watchdog, no reset."""
    on_ms, off_ms, count, pause_ms = SAFE_BLINK
    n = 0
    while n != rounds:
        if n % 30 == 0:
            log("HAN2X safe state: %d starts in a row failed; last: %s. Nothing is served. "
                "Fix the cause (docs/troubleshooting.md), then press reset."
                % (failed_starts, reason or "unknown"))
        for _ in range(count):
            if led is not None:
                led.value = True
            sleep_ms(on_ms)
            if led is not None:
                led.value = False
            sleep_ms(off_ms)
        sleep_ms(pause_ms)
        n += 1
