"""The cooperative loop: HAN bytes -> frames -> readings -> registers -> services.

One App.step(now_ms) does a bounded amount of work and never blocks. The same App runs on
the board (code.py) and on the PC (tools/simulate.py); only the objects passed in differ.
"""

from array import array

from micropython import const

from han2x_core import DecodeError
from han2x_core.meters import decode_frame  # at start-up, before the heap fragments
from han2x_core.hdlc import HdlcReader
from han2x_core.ticks import ticks_add, ticks_diff

_TYPE_CHECKING = const(0)  # mypy: true (pyproject always_true); the compiler drops the block
if _TYPE_CHECKING:
    from cpmodules import Any

_RX_SIZE = const(512)
_HISTORY = const(180)  # power samples kept for the dashboard chart
_HISTORY_STEP_MS = const(10000)  # one sample per 10 s: 30 minutes of history
_LAST_ERROR_LEN = const(120)

# Keys of a reading that describe the meter rather than a measurement.
_STICKY = ("meter", "list_version", "meter_id", "meter_type")


def _import_energystate():
    from han2x_core import energystate

    return energystate


def _drop_energystate():
    """Loaded for the start and each hourly save only (it is not needed in between), with
    the file helpers it imports (storage.py: the board's settings file loads it per save)."""
    _drop("energystate")
    _drop("storage")


def _validate(merged):
    """settings.validate; the schema stays in sys.modules (for the file's text), but no
    reference to it is left here, so that dropping it frees it."""
    from han2x_core.settings import validate

    return validate(merged)


def _drop(name):
    from han2x_core import unload

    unload(name)


class App:
    """The device: owns the HAN reader, the register image and the polled services.

    han: object with readinto(buf) -> n (0 or None when nothing is waiting), never blocking.
    registers: a han2x_core.registers.Registers.
    services: objects with poll(now_ms); each is run in its own try/except.
    on_frame: optional callable(reading, now_ms) for host tools (printing, logging).
    """

    def __init__(self, han, registers, now_ms, services=None, on_frame=None,
                 settings=None, store=None):
        self.han = han
        self.settings = settings if settings is not None else {}
        self.store = store  # storage.SettingsStore or None (then changes are not persisted)
        self.settings_warning = None  # shown on the web page, e.g. "drive is read-only"
        # The web page's "open the drive for a firmware update" button (docs/settings.md):
        # None (no button), or a callable that writes usb_write.txt (OSError when it
        # cannot) and returns the callable that restarts the board, which the web server
        # runs once its answer is sent (board_io.usb_write_hook).
        self.usb_write = None
        # The services by name, for the pages (webapi, websettings) and the stream below;
        # set by assembly.build, None where there is none (a web-less start, MQTT off).
        # network: pool, attach(server), hostname, ip, mode.
        self.network = self.modbus = self.web = self.mqtt = self.scaling = None  # type: Any
        # The raw HAN stream (hanstream.py, setting han_stream_port): raw_tap gets every HAN
        # chunk (feed(buf, n)). configure() builds it on the network, attached and polled,
        # when the setting turns it on (the module is not loaded while it is off);
        # stream_factory(port) replaces that (tests).
        self.raw_tap = None
        self.stream_factory = None
        # The energy state file (energystate.py): its path once restore_energy() ran, the
        # files object it is written through (None = the real os), the last warning, and
        # what was saved last (registers.hourly, meter hour).
        self.energy_path = None
        self.energy_files = None
        self.energy_warning = None
        self._energy_hourly = 0
        self._energy_hour = None
        # The capacity tariff (tariff.Tariff, docs/tariff.md): None while the setting
        # "tariff" is off, and then its module is not loaded at all.
        self.tariff = None  # type: Any
        self.registers = registers
        self.services = list(services or ())
        self.on_frame = on_frame
        self.hdlc = HdlcReader()
        self._rx = bytearray(_RX_SIZE)
        self.started_ms = now_ms
        self.latest = {}  # merged reading across lists 1/2/3
        self.last_frame_ms = None
        self.last_frame = b""  # the last raw frame, valid or not (diagnostics page)
        self.last_list = None
        # Power samples for the chart: a ring of (time_ms, import_w, export_w), preallocated
        # (180 tuples in a list would hold ~6.5 KB of the board's heap once full, and make
        # garbage every sample); history() reads it.
        self._history = array("l", range(3 * _HISTORY))
        self.history_len = 0
        self._history_at = 0  # slot of the next sample
        self._history_next_ms = now_ms
        self.decode_errors = 0
        self.service_errors = 0
        self.han_errors = 0
        self.loops = 0
        self.last_error = ""  # "where: what" of the newest contained error (error())
        self.free_memory_min = None  # lowest gc.mem_free() since start (code.py's loop)
        self._busy = []  # the parts with busy(): work waiting now (step's answer)
        for part in [han] + self.services:
            self._wire(part)

    def add(self, service):
        """Add a polled service (Modbus server, web server, indicators, watchdog...)."""
        self.services.append(service)
        self._wire(service)

    def _wire(self, part):
        """A part that contains its own errors (web, Modbus, HAN reader) has a `report`
        attribute: it calls report(where, what) for each, so last_error shows it."""
        if part is not None and getattr(part, "report", 0) is None:
            part.report = self.error
        if part is not None and hasattr(part, "busy"):
            self._busy.append(part)

    def _start_stream(self, port):
        from han2x_core.hanstream import HanStream

        net = self.network
        stream = HanStream(net.pool, port, send_timeout_s=self.modbus.send_timeout_s)
        net.attach(stream)
        self.add(stream)
        return stream

    def configure(self, settings):
        """Hand validated settings to every part that has configure(settings)."""
        self.settings = settings
        port = settings.get("han_stream_port")
        if port and self.raw_tap is None and (self.stream_factory or self.network) is not None:
            try:
                self.raw_tap = (self.stream_factory or self._start_stream)(port)
            except Exception as e:  # MemoryError: Modbus goes on without the stream
                self.service_errors += 1
                self.error("han_stream", e)
        self._tariff_setting(settings)
        for part in [self.han, self.registers, self.tariff] + self.services:
            configure = getattr(part, "configure", None) if part is not None else None
            if configure is not None:
                try:
                    configure(settings)
                except Exception as e:
                    self.service_errors += 1
                    self.error(part, e)

    def save_settings(self, changes):
        """Validate changes (a dict of some keys), persist, then apply.

        Returns a dict key -> error message; empty when saved and applied. Nothing is
        saved or applied unless every field is valid. A failed write (drive read-only to
        the board) is reported under the key "_store" and the settings are not applied.
        The schema (settings.py, ~11 KB of heap on the board) is loaded once for the
        validation and the file's text, and dropped before the drive is written
        (SettingsStore.save) and before this returns, also after a MemoryError.
        """
        merged = dict(self.settings)
        merged.update(changes)
        try:
            clean, errors = _validate(merged)
            del merged  # its heap, for the write
            if errors:
                return errors
            if self.store is not None:
                try:
                    self.store.save(clean)
                except OSError as e:
                    self.settings_warning = str(e)
                    self.error("settings", e)
                    return {"_store": str(e)}
                except Exception as e:  # e.g. MemoryError: the old file stays (atomic write)
                    message = "could not save: %s: %s" % (type(e).__name__, e)
                    self.settings_warning = message
                    self.error("settings", message)
                    return {"_store": message}
        finally:
            _drop("settings_toml")
            _drop("settings")
        self.settings_warning = None
        self.configure(clean)
        return {}

    def restore_energy(self, path, files=None):
        """At start: serve the energies saved before the restart, and from now on save them
        to path on each hourly total, at most once per meter hour. Returns a warning or
        None (a damaged file is not restored; the device goes on)."""
        self.energy_path = path
        self.energy_files = files
        energystate = _import_energystate()
        try:
            state, self.energy_warning = energystate.load(path, files)
        finally:
            _drop_energystate()
        self._tariff_setting(self.settings)
        if state is not None:
            self.registers.restore(*state[:4])
            self._energy_hour = state[1][:4] if state[1] else None
        if self.tariff is not None:
            from han2x_core import tariffstate

            try:
                tariffstate.restore(self.tariff, state[4] if state else None,
                                    self.energy_warning is not None)
            finally:
                _drop("tariffstate")
            self._render_tariff()
        return self.energy_warning

    def _tariff_setting(self, settings):
        """Load the tariff when the setting turns it on; forget it (module and registers)
        when it turns it off."""
        if settings.get("tariff") and self.tariff is None:
            from han2x_core.tariff import Tariff

            self.tariff = Tariff()
            self.tariff.configure(settings)
        elif not settings.get("tariff") and self.tariff is not None:
            self.tariff = None
            _drop("tariff")
            from han2x_core.registers import COUNT, TARIFF_OFF

            image = self.registers.image
            for i in range(2 * TARIFF_OFF, 2 * COUNT):
                image[i] = 0

    def _render_tariff(self):
        from han2x_core.registers import TARIFF_OFF

        self.tariff.render(self.registers.image, TARIFF_OFF)

    def save_tariff(self):
        """Save now (a peak edited on the settings page): the same file and write as the
        hourly save. Returns None, or why it failed."""
        if self.energy_path is None or not self.registers.energy_state()[0]:
            return "not saved: no meter telegram yet"
        self._energy_hour = None
        self._save_energy()
        if self.tariff is not None:
            self._render_tariff()
        return self.energy_warning

    def _save_energy(self):
        regs = self.registers
        self._energy_hourly = regs.hourly
        state = regs.energy_state()
        hour = state[1][:4] if state[1] else None  # meter clock: year, month, day, hour
        if hour is not None and hour == self._energy_hour:
            return  # at most once per meter hour (the autumn's repeated hour)
        tariff = self.tariff
        try:
            ints = None
            if tariff is not None:
                from han2x_core import tariffstate

                ints = tariffstate.state(tariff)
                _drop("tariffstate")
            if _import_energystate().save(self.energy_path, state, self.energy_files, ints):
                self._energy_hour = hour
                if tariff is not None:
                    tariff.warning = None  # a good file holds the peaks again
            self.energy_warning = None
        except Exception as e:  # read-only drive, out of memory: the next hour tries again
            self.energy_warning = "energy state not saved: %s: %s" % (type(e).__name__, e)
        finally:
            _drop_energystate()

    def step(self, now_ms):
        """Do one bounded round of work. Never raises; errors are counted and kept.
        True when work is waiting now (a full HAN chunk read, a service busy(): bytes to
        parse or send), so the caller must not idle before the next step."""
        self.loops += 1
        more = False
        try:
            more = self._read_han(now_ms)
        except MemoryError:
            self.error("han", "out of memory")
            self.han_errors += 1
        except Exception as e:  # a broken reader must not stop Modbus
            self.han_errors += 1
            self.error("han", e)
        try:
            self.registers.tick(now_ms)
        except Exception as e:
            self.service_errors += 1
            self.error("registers", e)
        for service in self.services:
            try:
                service.poll(now_ms)
            except MemoryError:
                self.service_errors += 1
                self.error(service, "out of memory")
            except Exception as e:
                self.service_errors += 1
                self.error(service, e)
        for part in self._busy:
            try:
                if part.busy():
                    return True
            except Exception:  # noqa: BLE001 - a broken part is not work waiting
                pass
        return more

    def data_age_ms(self, now_ms):
        """Milliseconds since the last valid telegram, or None before the first."""
        if self.last_frame_ms is None:
            return None
        return ticks_diff(now_ms, self.last_frame_ms)

    def _read_han(self, now_ms):
        """Read and feed the HAN bytes waiting; True when the buffer came back full (more
        may be waiting)."""
        n = self.han.readinto(self._rx) if self.han is not None else 0
        if not n:
            n = 0
        elif self.raw_tap is not None:
            self.raw_tap.feed(self._rx, n)  # the raw stream: every byte, valid or not
        # The common case: the reader takes the whole chunk, no slice object is made.
        pos = self.hdlc.feed(self._rx, n) if n else 0
        while True:
            length = self.hdlc.next_frame()
            if length:
                self._handle_frame(self.hdlc.frame, length, now_ms)
                continue
            if pos >= n:
                break
            pos += self.hdlc.feed(memoryview(self._rx)[pos:n], n - pos)  # allocates (rare)
        return n == len(self._rx)

    def _handle_frame(self, frame, length, now_ms):
        raw = bytes(frame[:length])  # allocates: one copy per telegram (every 2-10 s)
        try:
            reading = decode_frame(raw)
        except DecodeError as e:
            self.decode_errors += 1
            self.error("decode", e)
            self.last_frame = raw
            return
        self.last_frame = raw
        self.last_frame_ms = now_ms
        self.last_list = reading.get("list")
        self._merge(reading)
        self.registers.update(reading, now_ms)
        if self.tariff is not None:
            self.tariff.feed(reading, now_ms)
            self._render_tariff()
        if self.energy_path is not None and self.registers.hourly != self._energy_hourly:
            self._save_energy()  # before any client can read the new totals
        self._record_history(now_ms)
        if self.on_frame is not None:
            self.on_frame(reading, now_ms)

    def _merge(self, reading):
        latest = self.latest
        if reading.get("meter_id") and latest.get("meter_id") not in (None, reading["meter_id"]):
            latest.clear()  # another meter: forget the old one's values
        for key in reading:
            value = reading[key]
            if value is not None or key not in latest:
                latest[key] = value
        for key in _STICKY:
            if reading.get(key) is None and key in latest and latest[key] is None:
                latest.pop(key)

    def history(self):
        """The power samples, oldest first, as (time_ms, import_w, export_w). A sample
        taken while this is iterated reuses a slot already read (one per 10 s at most)."""
        h = self._history
        n = self.history_len
        first = (self._history_at - n) % _HISTORY
        for i in range(n):
            j = 3 * ((first + i) % _HISTORY)
            yield h[j], h[j + 1], h[j + 2]

    def _record_history(self, now_ms):
        if ticks_diff(now_ms, self._history_next_ms) < 0 and self.history_len:
            return
        self._history_next_ms = ticks_add(now_ms, _HISTORY_STEP_MS)
        h = self._history
        j = 3 * self._history_at
        h[j] = now_ms
        h[j + 1] = self.latest.get("active_power_import_w") or 0
        h[j + 2] = self.latest.get("active_power_export_w") or 0
        self._history_at = (self._history_at + 1) % _HISTORY
        if self.history_len < _HISTORY:
            self.history_len += 1

    def error(self, where, e):
        """Keep a contained error for /api/status and the diagnostics page: where (a name, or
        a part with .name) and what (an exception or a text)."""
        name = getattr(where, "name", None) or (where if isinstance(where, str) else
                                                 type(where).__name__)
        try:
            text = "%s: %s" % (name, e)
        except MemoryError:  # keep at least where it happened
            text = name
        self.last_error = text[:_LAST_ERROR_LEN]
