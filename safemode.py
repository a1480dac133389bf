"""HAN2X safemode.py: a device nobody watches must not sit in safe mode. After a
brown-out, hard fault or watchdog-type reason, wait 2 s and reset. Safe mode asked for on
purpose stays (reset button during start-up: this file does not even run; requested from
the console: PROGRAMMATIC), to reach the drive and the REPL."""

import microcontroller
import supervisor
import time

reason = supervisor.runtime.safe_mode_reason
print("safe mode:", reason)
try:
    from han2x_core import bootio
except Exception as e:  # a damaged han2x_core must not keep a cabinet device down
    print("safemode.py:", e)
    if reason not in (supervisor.SafeModeReason.USER, supervisor.SafeModeReason.PROGRAMMATIC):
        time.sleep(2)
        microcontroller.reset()
else:
    bootio.safe_mode(supervisor, microcontroller, lambda ms: time.sleep(ms / 1000))
