# For mypy only (never on the board): the CircuitPython modules that code.py, boot.py and
# safemode.py hand to the shells, as protocols over circuitpython-stubs, so that a call
# through an injected module is checked like a direct one. A module satisfies a protocol
# structurally; the shells import these names under `if _TYPE_CHECKING:` (docs/architecture.md).
from typing import Protocol

import busio
import digitalio
import microcontroller
import nvm
import rp2pio
import storage
import supervisor
import watchdog

class Board(Protocol):
    @property
    def board_id(self) -> str: ...

class Busio(Protocol):
    @property
    def UART(self) -> type[busio.UART]: ...

class Digitalio(Protocol):
    @property
    def DigitalInOut(self) -> type[digitalio.DigitalInOut]: ...
    @property
    def Pull(self) -> type[digitalio.Pull]: ...

class Microcontroller(Protocol):
    @property
    def cpu(self) -> microcontroller.Processor: ...
    @property
    def nvm(self) -> nvm.ByteArray | None: ...
    @property
    def watchdog(self) -> watchdog.WatchDogTimer | None: ...
    def reset(self) -> None: ...

class Rp2pio(Protocol):
    @property
    def StateMachine(self) -> type[rp2pio.StateMachine]: ...

class Storage(Protocol):
    def remount(self, mount_path: str, readonly: bool = ..., *,
                disable_concurrent_write_protection: bool = ...) -> None: ...

class Supervisor(Protocol):
    @property
    def runtime(self) -> supervisor.Runtime: ...
    @property
    def SafeModeReason(self) -> type[supervisor.SafeModeReason]: ...

class WatchdogModule(Protocol):
    @property
    def WatchDogMode(self) -> type[watchdog.WatchDogMode]: ...

# Attributes that hold a socket or a receiver once attached (None before): `# type: Any`.
from typing import Any as Any
