"""Fake supervisor: ticks_ms() from a settable clock, runtime, reload()."""

_now = [0]


def ticks_ms():
    return _now[0] & ((1 << 29) - 1)


def advance(ms):
    _now[0] += ms


class _Runtime:
    def __init__(self):
        self.usb_connected = False
        self.serial_connected = False
        self.safe_mode_reason = None
        self.run_reason = None
        self.autoreload = True


class SafeModeReason:
    NONE = "none"
    BROWNOUT = "brownout"
    HARD_FAULT = "hard_fault"
    WATCHDOG = "watchdog"
    STACK_OVERFLOW = "stack_overflow"
    HEAP_OVERWRITTEN = "heap_overwritten"
    GC_ALLOC_OUTSIDE_VM = "gc_alloc_outside_vm"
    INTERRUPT_ERROR = "interrupt_error"
    NO_HEAP = "no_heap"
    NO_CIRCUITPY = "no_circuitpy"
    FLASH_WRITE_FAIL = "flash_write_fail"
    USER = "user"
    PROGRAMMATIC = "programmatic"
    SAFE_MODE_PY_ERROR = "safe_mode_py_error"
    USB_TOO_MANY_ENDPOINTS = "usb_too_many_endpoints"
    USB_TOO_MANY_INTERFACE_NAMES = "usb_too_many_interface_names"
    USB_BOOT_DEVICE_NOT_INTERFACE_ZERO = "usb_boot_device_not_interface_zero"
    SDK_FATAL_ERROR = "sdk_fatal_error"
    NLR_JUMP_FAIL = "nlr_jump_fail"


runtime = _Runtime()
reloads = []


def reload():
    reloads.append(True)


def set_next_code_file(filename, **kw):
    pass


def _reset():
    global runtime
    _now[0] = 0
    runtime = _Runtime()
    reloads.clear()
