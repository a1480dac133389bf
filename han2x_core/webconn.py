"""One HTTP connection of the web server: buffers, state, and the response being sent; the
HTTP status texts (STATUS, the one table); the request helpers handlers use (equal,
local_path), here so that no handler imports webroutes.

Responses are written without blocking: conn.out holds the bytes not yet sent; a generator
body is pulled a piece at a time, coalesced into chunks of about _PIECE bytes (HTTP chunked
transfer coding), so a page is never built as one big string.
"""

from micropython import const

from han2x_core.netio import send

_HEAD_MAX = const(2048)  # request line + headers
_BODY_MAX = const(1024)  # the settings form is ~500 bytes
REQUEST_MAX = const(3072)  # _HEAD_MAX + _BODY_MAX: each connection slot's buffer
# A chunk: the generator's pieces until this many bytes. One chunk is made per poll (web.py),
# and its garbage (the pieces' formatting, texts, encoding) is what a page step costs the
# board's heap: 128 bytes cost at most ~1.7 KB (the dashboard) where 512 cost ~4.2 KB
# (CircuitPython 10.2.1, .mpy; docs/benchmarks.md).
_PIECE = const(128)
_GRACE_MS = const(1000)  # a connection this new is not closed for another (victim())
# ... or this new when it has sent nothing at all: a browser's speculative connection (a
# client's request follows its handshake within milliseconds; Chromium retries a request on
# an unused speculative connection that was closed)
_IDLE_GRACE_MS = const(250)
_CHUNK = const(1024)  # bytes per send() call
READING = const(0)
SENDING = const(1)
DRAINING = const(2)

STATUS = {200: "OK", 303: "See Other", 400: "Bad Request", 401: "Unauthorized",
          403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
          411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
          421: "Misdirected Request", 422: "Unprocessable Content", 429: "Too Many Requests",
          431: "Request Header Fields Too Large", 500: "Internal Server Error",
          503: "Service Unavailable"}


def equal(a, b):
    """Compare a presented string a with the secret b in a time that depends only on b's
    length: every character of b is read, whatever a is."""
    n = len(a)
    diff = n ^ len(b)
    for i in range(len(b)):
        diff |= (ord(a[i]) if i < n else 0x110000) ^ ord(b[i])
    return diff == 0


def local_path(target):
    """Where to go after logging in: a path on this device, never another site."""
    if not target or target[:1] != "/" or target[:2] == "//" or "\\" in target:
        return "/"
    for c in target:
        if ord(c) < 33 or ord(c) > 126:  # no header injection, no spaces
            return "/"
    return target


def pick_language(setting, accept_language):
    """'nb' or 'en': the setting, or for 'auto' the first of them in Accept-Language."""
    if setting in ("nb", "en"):
        return setting
    if accept_language:
        for part in accept_language.split(","):
            tag = part.strip()[:2].lower()
            if tag in ("nb", "no", "nn"):
                return "nb"
            if tag == "en":
                return "en"
    return "en"


def file_chunks(path):
    """A file's bytes in pieces of 512 (a response body that never holds the whole file)."""
    with open(path, "rb") as f:
        while True:
            piece = f.read(512)
            if not piece:
                break
            yield piece


def victim(conns, now_ms):
    """Which connection to close for a new one when all slots are taken: one that is only
    draining or has handed its whole answer to the socket (its client may already have it
    all and be connecting again: poll() accepts before it services, so the slot would still
    look busy), else the one that has waited longest for its request, once it has waited
    _GRACE_MS, or _IDLE_GRACE_MS if it has sent nothing (a slow or idle client must not
    lock others out, but a browser's two connections at once must not close each other);
    -1 when none: the new client waits."""
    from han2x_core.ticks import ticks_diff

    oldest = -1
    for i in range(len(conns)):
        c = conns[i]
        if c.state == DRAINING or (c.state == SENDING and c.gen is None
                                   and c.pos >= len(c.out)):
            return i
        if c.state == READING and ticks_diff(now_ms, c.t0) >= (
                _GRACE_MS if c.n else _IDLE_GRACE_MS) and (
                oldest < 0 or ticks_diff(conns[oldest].t0, c.t0) > 0):
            oldest = i
    return oldest


# The request headers we keep (others are skipped without storing them).
_WANTED = (b"host", b"origin", b"referer", b"cookie", b"authorization", b"content-type",
           b"accept-language")


class Request:
    """Method, path, query, the headers in _WANTED and the body of one HTTP/1.x request.

    raw: the bytes from the request line to the end of the body; head_end: the index just
    after the blank line. Raises ValueError (or UnicodeError) for a malformed request.
    """

    def __init__(self, raw, head_end):
        # One copy of the head; only the request line and the headers kept are decoded
        # (a page's request step also loads its modules: issue 11).
        head = bytes(raw[:head_end - 2])  # allocates (per request): through the last CRLF
        eol = head.find(b"\r\n")
        line = head[:eol].decode()
        for c in line:
            if c < " " or c == "\x7f":  # a bare CR or LF would end up in a Location header
                raise ValueError("control character in the request line")
        parts = line.split(" ")
        if len(parts) != 3 or parts[2][:7] != "HTTP/1." or parts[1][:1] != "/":
            raise ValueError("bad request line")
        self.method = parts[0]
        target = parts[1]
        i = target.find("?")
        self.path = target if i < 0 else target[:i]
        self.query = "" if i < 0 else target[i + 1:]
        self.headers = {}
        at = eol + 2
        while at < len(head):
            eol = head.find(b"\r\n", at)
            i = head.find(b":", at, eol)
            if i <= at:
                raise ValueError("bad header line")
            name = head[at:i].strip().lower()
            if name in _WANTED:
                self.headers[name.decode()] = head[i + 1:eol].strip().decode()
            at = eol + 2
        self.body = bytes(raw[head_end:])

    def header(self, name):
        """The value of a header (lower-case name) or None."""
        return self.headers.get(name)

    def content_type(self):
        value = self.headers.get("content-type") or ""
        return value.split(";")[0].strip().lower()

    def cookie(self, name):
        for part in (self.headers.get("cookie") or "").split(";"):
            i = part.find("=")
            if i > 0 and part[:i].strip() == name:
                return part[i + 1:].strip()
        return None

    def arg(self, name):
        """A query-string argument, raw (not percent-decoded), or None."""
        for part in self.query.split("&"):
            i = part.find("=")
            if (part if i < 0 else part[:i]) == name:
                return "" if i < 0 else part[i + 1:]
        return None


class Conn:
    def __init__(self, sock, addr, buf, now_ms):
        self.sock = sock
        self.addr = addr
        self.buf = buf  # the slot's preallocated request buffer
        self.n = 0
        self.t0 = now_ms
        self.state = READING
        self.head_end = -1
        self.need = 0
        self.out = b""
        self.pos = 0
        self.sent = 0  # bytes of the answer handed to the socket (0: it has not started)
        self.path = None  # the request's path, for the error log
        self.gen = None
        self.unread = False  # the request body was not read (drain before closing)
        self.head = False  # HEAD: headers only
        self.transient = False  # the answer uses the page modules (see webroutes.release)
        self.after = None  # called once when the connection closes (webdrive's restart)

    def complete(self):
        """After new bytes: 0 = need more, 1 = the whole request is in buf, or the HTTP
        status (400, 411, 413, 431) of a request that will not be read."""
        buf = self.buf
        if self.head_end < 0:
            end = buf.find(b"\r\n\r\n", 0, self.n)
            if end < 0:
                return 431 if self.n >= _HEAD_MAX else 0
            if end + 4 > _HEAD_MAX:  # also when it all came in one segment
                return 431
            self.head_end = end + 4
            head = bytes(buf[:end]).lower()  # allocates (once per request)
            if b"\r\ntransfer-encoding:" in head:
                return 411
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                value = head[at + 17:stop if stop > 0 else len(head)].strip()
                if not value or len(value) > 9 or value.strip(b"0123456789"):
                    return 400  # ASCII digits only ("+5", "1_0" and "\xb2" are not)
                length = int(value)
            if self.head_end + length > len(buf) or length > _BODY_MAX:
                return 413
            self.need = self.head_end + length
        return 1 if self.n >= self.need else 0

    def drain(self, now_ms):
        """After answering a request that was not read: read and drop what the client still
        sends (closing with unread data would reset the connection before it reads the
        answer); shutdown() tells it we are done so it closes soon."""
        self.state = DRAINING
        self.t0 = now_ms
        shutdown = getattr(self.sock, "shutdown", None)
        if shutdown is not None:
            try:
                shutdown(1)
            except OSError:
                pass

    def respond(self, status, ctype, body, headers="", unread=False):
        """Start a response. body: str, bytes, or an iterator of str/bytes pieces."""
        text = "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nConnection: close\r\n" % (
            status, STATUS.get(status, "Error"), ctype)
        text += headers
        if isinstance(body, (str, bytes)):
            if isinstance(body, str):
                body = body.encode()
            text += "Content-Length: %d\r\n\r\n" % len(body)
            self.out = text.encode() + (b"" if self.head else body)
            self.gen = None
        else:
            text += "Transfer-Encoding: chunked\r\n\r\n"
            self.out = text.encode()
            self.gen = None if self.head else body
        self.pos = 0
        self.unread = unread
        self.state = SENDING

    def refill(self):
        """Next chunk of the body into self.out; False when the response is complete."""
        gen = self.gen
        if gen is None:
            return False
        pieces = []
        size = 0
        try:
            while size < _PIECE:
                piece = next(gen)
                if isinstance(piece, str):
                    piece = piece.encode()
                pieces.append(piece)
                size += len(piece)
        except StopIteration:
            self.gen = None
        if size:
            pieces.insert(0, ("%x\r\n" % size).encode())
            pieces.append(b"\r\n")
        if self.gen is None:
            pieces.append(b"0\r\n\r\n")
        self.out = b"".join(pieces)  # allocates: one chunk
        self.pos = 0
        return True

    def send(self, timeout_s):
        """Send some of self.out (netio.send): the count, 0 when the socket cannot take
        more now, -1 when the client has gone."""
        end = min(len(self.out), self.pos + _CHUNK)
        k = send(self.sock, memoryview(self.out)[self.pos:end], timeout_s)
        if k > 0:
            self.pos += k
            self.sent += k
        return k
