"""HAN2X boot.py: who writes the CIRCUITPY drive, and the power-up FACTRESET check.

Ownership rule (docs/settings.md): the DEVICE writes the drive, so settings changed on the
web page are saved. To copy files from a computer, create the marker first (web page
button, or the serial console: see docs/settings.md); at the next start the COMPUTER
writes the drive, once: boot.py deletes the marker, so pressing reset gives the drive
back to the device. Safe mode entered with the reset button skips this file and also
leaves the drive to the computer. FACTRESET held at power-up: DHCP mode (saved).
"""

import board
import digitalio
import microcontroller
import storage
import supervisor
import time

from han2x_core import bootio

try:
    for line in bootio.boot(storage, digitalio, board, microcontroller,
                              lambda ms: time.sleep(ms / 1000), supervisor.ticks_ms):
        print(line)
except Exception as e:  # never stop the start-up: the drive then stays with the computer
    print("boot.py:", e)
