"""Atomic settings-file storage on the CIRCUITPY drive (or any directory on a PC).
The same write and recovery (write_atomic, read_recovering) keep energystate.py's file.

Write scheme (power may fail at any instant; the result is the old or the new file):
  1. write `<path>.new` with the full text plus a last line `# han2x-end <len> <crc32>`,
     flush, close, sync;
  2. remove `<path>` (if present), sync;         <- commit point
  3. rename `<path>.new` -> `<path>`, sync.
On load: `<path>` wins whenever it exists (even hand-edited, without the end line); a
`<path>.new` is used only if `<path>` is missing and its end line checks out (a crash
between 2 and 3), then the rename is finished. An unchecked `.new` is left-over from a crash
in step 1 and is deleted. A file that cannot be read gives the defaults plus a warning.
"""

from han2x_core import unload

_END = "# han2x-end "

# What the user sees when the board cannot write the drive (see boot.py and docs/settings.md).
READ_ONLY_MESSAGE = (
    "Settings not saved: the CIRCUITPY drive is open for copying files from a computer "
    "(USB write mode), so the device cannot write it. Press reset or power the device "
    "off and on to give the drive back to the device, then save again."
)

_UNREADABLE = "Settings file could not be read (%s); using the factory defaults."

_EROFS = 30
_EACCES = 13


def _crc32(data, crc=0):
    try:
        from binascii import crc32  # CPython, MicroPython, CircuitPython
    except ImportError:  # pragma: no cover
        from zlib import crc32
    return crc32(data, crc) & 0xFFFFFFFF


def seal(text):
    """Append the end line that proves the text was written completely."""
    return b"".join(sealed((text,)))


def sealed(pieces):
    """seal("".join(pieces)) as bytes, one piece at a time: the end line's length and CRC
    are counted as the pieces go, so nothing holds the whole text (files.write takes them)."""
    size = crc = 0
    for piece in pieces:
        body = piece.encode("utf-8")
        size += len(body)
        crc = _crc32(body, crc)
        yield body
    yield ("%s%d %08x\n" % (_END, size, crc)).encode()


def unseal(data):
    """Return the text without a valid end line, or None when the end line is missing/bad."""
    cut = data.rfind(_END.encode())
    if cut < 0:
        return None
    body = data[:cut]
    try:
        fields = data[cut + len(_END):].decode().strip().split()
    except UnicodeError:
        return None
    if len(fields) != 2:
        return None
    try:
        size = int(fields[0])
        crc = int(fields[1], 16)
    except ValueError:
        return None
    if size != len(body) or crc != _crc32(body):
        return None
    return body.decode("utf-8")


class OsFiles:
    """The few file-system calls the store needs, on the real os module."""

    def __init__(self):
        import os

        self._os = os

    def read(self, path):
        """File bytes, or None if it does not exist."""
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            if e.args and e.args[0] == 2:  # ENOENT
                return None
            raise

    def write(self, path, data):
        """data: bytes, or an iterable of bytes pieces written in turn (sealed())."""
        with open(path, "wb") as f:
            if isinstance(data, (bytes, bytearray)):
                f.write(data)
            else:
                for piece in data:
                    f.write(piece)
            f.flush()

    def exists(self, path):
        try:
            self._os.stat(path)
            return True
        except OSError:
            return False

    def remove(self, path):
        self._os.remove(path)

    def rename(self, old, new):
        self._os.rename(old, new)

    def sync(self):
        sync = getattr(self._os, "sync", None)
        if sync is not None:
            sync()


def write_atomic(files, path, data):
    """Write sealed bytes (or their pieces: sealed()) to path by the scheme above; OSError
    when the drive refuses."""
    new_path = path + ".new"
    files.write(new_path, data)
    files.sync()
    if files.exists(path):
        files.remove(path)
        files.sync()
    files.rename(new_path, path)
    files.sync()


def read_recovering(files, path):
    """The file's bytes, None when there is none; finishes or drops an interrupted save.
    Raises OSError when the drive cannot be read."""
    new_path = path + ".new"
    data = files.read(path)
    if data is None:
        data = files.read(new_path)
        if data is None:
            return None
        if unseal(data) is None:
            _drop(files, new_path)
            return None
        try:
            files.rename(new_path, path)
            files.sync()
        except OSError:
            pass  # read-only to the board now: use the .new content anyway
        return data
    _drop(files, new_path)
    return data


def _drop(files, path):
    if files.exists(path):
        try:
            files.remove(path)
            files.sync()
        except OSError:
            pass


class SettingsStore:
    """load() -> (settings, warning or None); save(settings) raises OSError when it cannot."""

    def __init__(self, path, files=None):
        self.path = path
        self.files = files if files is not None else OsFiles()
        self.extra = {}  # keys we do not own (CIRCUITPY_*), written back unchanged

    def load(self):
        """Read, recover and validate. Never raises: defaults plus a warning instead.
        The schema and the text format (settings.py, settings_toml.py: ~16 KB of heap on
        the board) are loaded for this and for save() only, and dropped again."""
        try:
            return self._load()
        finally:
            unload("settings_toml", "settings")

    def _load(self):
        from han2x_core.settings import DEFAULTS

        try:
            data = read_recovering(self.files, self.path)
        except Exception as e:
            return dict(DEFAULTS), _UNREADABLE % e
        if data is None:
            return dict(DEFAULTS), None
        try:
            text = unseal(data)
            if text is None:
                text = data.decode("utf-8")
        except Exception:
            return dict(DEFAULTS), _UNREADABLE % "not UTF-8 text"
        from han2x_core.settings_toml import from_text

        clean, extra, warnings = from_text(text)
        self.extra = extra
        if warnings:
            shown = warnings[:5]
            if len(warnings) > 5:
                shown.append("... %d more" % (len(warnings) - 5))
            return clean, "Settings file: " + "; ".join(shown)
        return clean, None

    def save(self, settings):
        """Write settings atomically.

        Raises OSError whose str() is the user-facing reason: READ_ONLY_MESSAGE when the
        board may not write the drive (one argument, so str(e) is the same on every VM).
        """
        if settings.get("web_password") is None:  # fail closed: never write "no password"
            raise OSError("Settings not saved: web_password in settings.toml cannot be used. "
                          "Correct it on the drive, or hold the button for a factory reset.")
        try:  # the text goes to the file a line at a time: it is never whole in the heap
            from han2x_core.settings_write import serialise_lines

            write_atomic(self.files, self.path, sealed(serialise_lines(settings, self.extra)))
        except OSError as e:
            code = e.args[0] if e.args else None
            if code in (_EROFS, _EACCES):
                raise OSError(READ_ONLY_MESSAGE)
            raise OSError("Settings not saved: writing %s failed (%s)." % (self.path, e))
        finally:
            unload("settings_write", "settings")
