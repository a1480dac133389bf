"""The fakes in tests/support/fakes against circuitpython-stubs: every name a fake offers is one the
stubs declare (or a test-only hook the fake lists in TEST_ONLY), every function and method
takes exactly the stub's parameters with the stub's defaults, and the calls the board
refuses raise here too."""

import inspect

import pytest

from support.fakes import _stubs
from support.fakes._state import NAMES, installed, load

P = inspect.Parameter


def _public(mod):
    """What the fake module itself defines (not what it imports)."""
    return {n: v for n, v in vars(mod).items()
            if not n.startswith("_") and not inspect.ismodule(v)
            and getattr(v, "__module__", mod.__name__) == mod.__name__}


def _check_signature(fake_fn, stub_sigs, where):
    """The fake accepts each stub parameter the same way, with the same default, and
    nothing else (a **kw catch-all stands for the stub's remaining keywords)."""
    fake = inspect.signature(inspect.unwrap(fake_fn))
    params = list(fake.parameters.values())
    if params and params[0].name in ("self", "cls") and not isinstance(fake_fn, staticmethod):
        params = params[1:]
    mine = {p.name: p for p in params if p.kind not in (P.VAR_KEYWORD, P.VAR_POSITIONAL)}
    catch_all = any(p.kind == P.VAR_KEYWORD for p in params)
    stub = stub_sigs[0].parameters
    for name in mine:
        assert name in stub, "%s: parameter %r is not in the stubs" % (where, name)
    for name, sp in stub.items():
        if sp.kind in (P.VAR_KEYWORD, P.VAR_POSITIONAL):
            continue
        if name not in mine:
            assert catch_all and sp.kind == P.KEYWORD_ONLY, "%s: lacks %r" % (where, name)
            continue
        fp = mine[name]
        assert fp.kind == sp.kind, (where, name, fp.kind, sp.kind)
        assert (fp.default is P.empty) == (sp.default is P.empty), (where, name)
        if not isinstance(sp.default, _stubs._Opaque) and sp.default is not P.empty:
            assert fp.default == sp.default, (where, name, fp.default, sp.default)


@pytest.mark.parametrize("name", NAMES)
def test_every_fake_name_and_signature_comes_from_the_stubs(name):
    mod = load(name)
    stub = _stubs.names(name)
    test_only = set(getattr(mod, "TEST_ONLY", ())) | {"TEST_ONLY"}
    checked = 0
    for attr, obj in _public(mod).items():
        if attr in test_only:
            continue
        assert attr in stub, "%s.%s is not in circuitpython-stubs" % (name, attr)
        kind = stub[attr][0]
        if inspect.isclass(obj):
            assert kind == "class", (name, attr)
            checked += _check_class(obj, attr, stub, name, test_only)
        elif callable(obj):
            assert kind == "function", (name, attr)
            assert hasattr(obj, "__stub_signatures__"), (name, attr)  # strict() wrapped it
            _check_signature(obj, stub[attr][1], name + "." + attr)
            checked += 1
    assert checked or name == "board"


def _check_class(cls, qual, stub, module, test_only):
    checked = 0
    for attr, obj in vars(cls).items():
        if attr.startswith("_") and attr not in ("__init__", "__enter__", "__exit__"):
            continue
        q = qual + "." + attr
        if q in test_only:
            continue
        if inspect.isclass(obj):
            assert stub.get(q, ("",))[0] == "class", "%s.%s not in the stubs" % (module, q)
            checked += _check_class(obj, q, stub, module, test_only)
            continue
        if attr == "__init__" and q not in stub:
            continue  # the stubs give no constructor (exceptions): any fake one is internal
        assert q in stub, "%s.%s is not in circuitpython-stubs" % (module, q)
        if isinstance(obj, property) or not callable(obj) and not isinstance(obj, staticmethod):
            assert stub[q][0] == "attr", (module, q)
            continue
        if attr in ("__enter__", "__exit__"):
            continue
        assert stub[q][0] == "function", (module, q)
        fn = obj.__func__ if isinstance(obj, staticmethod) else obj
        assert hasattr(fn, "__stub_signatures__"), (module, q)
        _check_signature(fn, stub[q][1], module + "." + q)
        checked += 1
    return checked


def test_the_fake_board_has_only_the_boards_pins():
    with installed(board_id="adafruit_feather_rp2040") as hw:
        assert hw.board.RX is hw.board.D0  # one GPIO, two names
        assert hw.board.RX.gpio == 1
        with pytest.raises(AttributeError):
            hw.board.GP1  # an EVB-Pico name
        assert hw.board.SPI() is hw.board.SPI()
    with installed() as hw:
        assert hw.board.W5K_CS.gpio == 17
        with pytest.raises(AttributeError):
            hw.board.SPI  # the W5500-EVB-Pico has W5K_SPI, not SPI
        with pytest.raises(TypeError):
            hw.microcontroller.Pin()


def test_unknown_keyword_and_wrong_positional_count_raise():
    with installed() as hw:
        with pytest.raises(TypeError, match="bogus"):
            hw.busio.SPI(hw.board.GP18, MOSI=hw.board.GP19, bogus=1)
        with pytest.raises(TypeError, match="MOSIX"):
            hw.busio.SPI(hw.board.GP18, MOSIX=hw.board.GP19)
        with pytest.raises(TypeError):
            hw.busio.SPI(hw.board.GP18, hw.board.GP19, hw.board.GP16, False, 1)
        with pytest.raises(TypeError, match="no_such_kwarg"):
            hw.rp2pio.StateMachine(b"\x00\x00", 1000, first_in_pin=hw.board.GP1,
                                   no_such_kwarg=3)
        with pytest.raises(TypeError, match="nonsense"):
            hw.storage.remount("/", False, nonsense=True)
        with pytest.raises(TypeError):
            hw.storage.remount("/", False, True)  # disable_... is keyword-only
        with pytest.raises(TypeError):
            hw.digitalio.DigitalInOut(hw.board.GP2).switch_to_input(pul=None)
        with pytest.raises(TypeError):
            hw.supervisor.set_next_code_file("code.py", relaod_on_success=True)
        spi = hw.busio.SPI(hw.board.GP18, hw.board.GP19, hw.board.GP16)
        assert spi.try_lock()
        with pytest.raises(TypeError):
            spi.configure(1000000)  # keyword-only on the board


def test_setting_an_inputs_value_raises():
    with installed() as hw:
        pin = hw.digitalio.DigitalInOut(hw.board.GP15)
        pin.switch_to_input(pull=hw.digitalio.Pull.UP)
        with pytest.raises(AttributeError, match="direction is input"):
            pin.value = True
        with pytest.raises(ValueError, match="in use"):
            hw.digitalio.DigitalInOut(hw.board.GP15)
        pin.switch_to_output(True)
        pin.value = False
        with pytest.raises(AttributeError):
            pin.pull = hw.digitalio.Pull.UP
        assert hw.digitalio.outputs["GP15"] == [True, False]


def test_spi_without_the_lock_raises():
    with installed() as hw:
        spi = hw.busio.SPI(hw.board.GP18, hw.board.GP19, hw.board.GP16)
        for call in (lambda: spi.write(b"\x00"), lambda: spi.readinto(bytearray(1)),
                     lambda: spi.configure(baudrate=1000000)):
            with pytest.raises(RuntimeError, match="requires lock"):
                call()
        assert spi.try_lock() and not spi.try_lock()
        spi.write(b"\x00")
        spi.unlock()
        with pytest.raises(RuntimeError):
            spi.write(b"\x00")


def test_remount_while_the_usb_host_holds_the_drive_raises():
    with installed() as hw:
        hw.storage.remount("/", readonly=False)  # boot.py: the host holds nothing yet
        hw.storage.usb_host_holds_drive = True
        with pytest.raises(RuntimeError, match="visible via USB"):
            hw.storage.remount("/", readonly=True)
        assert hw.storage.remounts == [("/", False)]


@pytest.mark.parametrize("seconds,ok", [(8, True), (8.388, True), (8.389, False), (10, False),
                                        (0, False)])
def test_watchdog_timeout_limit_of_the_rp2040(seconds, ok):
    with installed() as hw:
        wdt = hw.microcontroller.watchdog
        if ok:
            wdt.timeout = seconds
            assert wdt.timeout == seconds
        else:
            with pytest.raises(ValueError):
                wdt.timeout = seconds
