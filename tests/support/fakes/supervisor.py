"""Fake supervisor: ticks_ms() from a settable clock, runtime, reload()."""

_now = [0]


def ticks_ms():
    return _now[0] & ((1 << 29) - 1)


def advance(ms):
    _now[0] += ms


class Runtime:
    def __init__(self):
        self.usb_connected = False
        self.serial_connected = False
        self.safe_mode_reason = None
        self.run_reason = None
        self.autoreload = True


class SafeModeReason:  # exactly the members the stubs list
    NONE = "none"
    BROWNOUT = "brownout"
    FLASH_WRITE_FAIL = "flash_write_fail"
    GC_ALLOC_OUTSIDE_VM = "gc_alloc_outside_vm"
    HARD_FAULT = "hard_fault"
    INTERRUPT_ERROR = "interrupt_error"
    NLR_JUMP_FAIL = "nlr_jump_fail"
    NO_CIRCUITPY = "no_circuitpy"
    NO_HEAP = "no_heap"
    PROGRAMMATIC = "programmatic"
    SDK_FATAL_ERROR = "sdk_fatal_error"
    STACK_OVERFLOW = "stack_overflow"
    USB_BOOT_DEVICE_NOT_INTERFACE_ZERO = "usb_boot_device_not_interface_zero"
    USB_TOO_MANY_ENDPOINTS = "usb_too_many_endpoints"
    USB_TOO_MANY_INTERFACE_NAMES = "usb_too_many_interface_names"
    USER = "user"
    WATCHDOG = "watchdog"


runtime = Runtime()
reloads = []


def reload():
    reloads.append(True)


def set_next_code_file(filename, **options):
    pass


TEST_ONLY = ("advance", "reloads")


def _reset():
    global runtime
    _now[0] = 0
    runtime = Runtime()
    reloads.clear()
