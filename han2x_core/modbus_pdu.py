"""Modbus function codes, sans-I/O: request PDUs executed against a Registers image.

Governed by the Modbus Application Protocol 1.1b3: read holding/input registers (03, 04),
write single/multiple registers (06, 16), mask write (22), read device identification
(43/14). One ModbusHandler is shared by all connections and keeps the counters; the framing
(MBAP, RTU over TCP) is modbus.py. No allocation on the read path.
"""

import struct

from micropython import const

_MAX_READ = const(125)
_MAX_WRITE = const(123)

EX_ILLEGAL_FUNCTION = const(1)
EX_ILLEGAL_ADDRESS = const(2)
EX_ILLEGAL_VALUE = const(3)
EX_DEVICE_FAILURE = const(4)


class ModbusHandler:
    """Executes request PDUs against the registers; shared by all connections.

    unit_id: 0 answers any unit id; 1..255 answers only that one (others are dropped).
    ident: (vendor, product_code, revision, vendor_url, product_name, model_name) as bytes.
    """

    def __init__(self, regs, unit_id=0, ident=None):
        self.regs = regs
        self.unit_id = unit_id
        if ident is None:
            from han2x_core import __version__

            # VendorName, ProductCode, MajorMinorRevision, VendorUrl (none: empty),
            # ProductName, ModelName, UserApplicationName
            ident = (b"HAN2X open firmware", b"HAN2X", __version__.encode(), b"",
                     b"HAN2X open firmware", b"HAN2X AMS HAN to Modbus TCP", b"han2x")
        self.ident = ident
        self.requests = 0  # complete frames executed (answered or exception)
        self.exceptions = 0  # exception responses sent
        self.malformed = 0  # framing errors: connection closed or bytes discarded
        self.crc_errors = 0  # RTU frames dropped for a bad CRC
        self.ignored = 0  # frames for another unit id (restricted mode): no answer
        # Meter profiles (meterroute.py; None while all are off, the HAN2X-only path):
        self.routes = None  # tuple of maps served on their own unit id (EM24, SDM630)
        self.sunspec = None  # the SunSpec map at 40000, beside the HAN2X map
        self.target = None  # the map of the request accepts() took; None = HAN2X

    def accepts(self, unit):
        """Whether to answer unit; chooses the map that serves the request."""
        routes = self.routes
        if routes is not None:
            for r in routes:
                if r.unit == unit:
                    self.target = r
                    return True
        self.target = self.sunspec
        return self.unit_id == 0 or unit == self.unit_id

    def _get(self, fc, start, count, out, o):
        t = self.target
        if t is None:
            return self.regs.read(start, count, out, o)
        return t.read(fc, start, count, out, o)

    def _put(self, start, data, off, count):
        t = self.target
        return (self.regs if t is None else t).write(start, data, off, count)

    def execute(self, req, off, n, out, o):
        """Run the request PDU req[off:off+n]; write the response PDU at out[o:]; its length."""
        self.requests += 1
        fc = req[off]
        if fc == 3 or fc == 4:
            code = self._read(req, off, n, out, o)
        elif fc == 6:
            code = self._write_single(req, off, n, out, o)
        elif fc == 0x10:
            code = self._write_multiple(req, off, n, out, o)
        elif fc == 0x16:
            code = self._mask_write(req, off, n, out, o)
        elif fc == 0x2B:
            code = self._device_id(req, off, n, out, o)
        else:
            code = EX_ILLEGAL_FUNCTION
        if code > 0:
            return self._exception(fc, code, out, o)
        return -code

    # Each function returns -length of the response PDU, or a positive exception code.

    def _exception(self, fc, code, out, o):
        self.exceptions += 1
        out[o] = (fc | 0x80) & 0xFF
        out[o + 1] = code
        return 2

    def _read(self, req, off, n, out, o):
        if n != 5:
            return EX_ILLEGAL_VALUE
        start = (req[off + 1] << 8) | req[off + 2]
        count = (req[off + 3] << 8) | req[off + 4]
        if count < 1 or count > _MAX_READ:
            return EX_ILLEGAL_VALUE
        code = self._get(req[off], start, count, out, o + 2)
        if code:
            return code
        out[o] = req[off]
        out[o + 1] = 2 * count
        return -(2 + 2 * count)

    def _write_single(self, req, off, n, out, o):
        if n != 5:
            return EX_ILLEGAL_VALUE
        start = (req[off + 1] << 8) | req[off + 2]
        code = self._put(start, req, off + 3, 1)
        if code:
            return code
        for i in range(5):
            out[o + i] = req[off + i]
        return -5

    def _write_multiple(self, req, off, n, out, o):
        if n < 6:
            return EX_ILLEGAL_VALUE
        start = (req[off + 1] << 8) | req[off + 2]
        count = (req[off + 3] << 8) | req[off + 4]
        nbytes = req[off + 5]
        if count < 1 or count > _MAX_WRITE or nbytes != 2 * count or n != 6 + nbytes:
            return EX_ILLEGAL_VALUE
        code = self._put(start, req, off + 6, count)
        if code:
            return code
        for i in range(5):
            out[o + i] = req[off + i]
        return -5

    def _mask_write(self, req, off, n, out, o):
        if n != 7:
            return EX_ILLEGAL_VALUE
        start = (req[off + 1] << 8) | req[off + 2]
        and_mask = (req[off + 3] << 8) | req[off + 4]
        or_mask = (req[off + 5] << 8) | req[off + 6]
        # Read the current value into the response area, then write the result from there.
        code = self._get(3, start, 1, out, o)
        if code:
            return code
        current = (out[o] << 8) | out[o + 1]
        result = (current & and_mask) | (or_mask & (~and_mask & 0xFFFF))
        struct.pack_into(">H", out, o, result)
        code = self._put(start, out, o, 1)
        if code:
            return code
        for i in range(7):
            out[o + i] = req[off + i]
        return -7

    def _device_id(self, req, off, n, out, o):
        # Read Device Identification (MEI type 0x0E), conformity level 0x82:
        # basic + regular objects, stream and individual access.
        if n < 2:
            return EX_ILLEGAL_VALUE
        if req[off + 1] != 0x0E:
            return EX_ILLEGAL_FUNCTION  # other MEI types (CANopen) are not served
        if n != 4:
            return EX_ILLEGAL_VALUE
        code = req[off + 2]
        obj = req[off + 3]
        ident = self.ident
        last = len(ident) - 1
        if code < 1 or code > 4:
            return EX_ILLEGAL_VALUE
        if code == 4:
            if obj > last:
                return EX_ILLEGAL_ADDRESS
            first, end = obj, obj
        else:
            end = 2 if code == 1 else last
            first = obj if obj <= end else 0
        out[o] = 0x2B
        out[o + 1] = 0x0E
        out[o + 2] = code
        out[o + 3] = 0x82
        out[o + 4] = 0  # more follows: everything fits in one response
        out[o + 5] = 0
        p = o + 7
        count = 0
        for i in range(first, end + 1):
            value = ident[i]
            out[p] = i
            out[p + 1] = len(value)
            for k in range(len(value)):
                out[p + 2 + k] = value[k]
            p += 2 + len(value)
            count += 1
        out[o + 6] = count
        return -(p - o)
