"""MicroPython half of bench_heap.py's web comparison: the heap an HTTP server costs.

Figures: import_and_start (heap the server's modules and objects hold, after a collect),
request_peak (most heap in use at the end of a poll while serving, above what was in use
before the request: the collector runs after every poll, as in code.py), request_allocated
(bytes allocated by all polls of the request), after_request_free.

Run as: micropython -X heapsize=192k bench/mpy_http.py han2x|adafruit PORT SITE_PACKAGES
  han2x:    han2x_core.web.WebServer (with han2x_core imported first: its package import
            is on the board anyway and is reported apart)
  adafruit: adafruit_httpserver 4.8.2 from SITE_PACKAGES, the library web.py's docstring
            says it replaced. It does not import on stock MicroPython: it takes
            time.monotonic / time.monotonic_ns and traceback.print_exception from
            CircuitPython's built-ins. Stand-ins for those three names are put in
            sys.modules first (a few hundred bytes, counted in neither figure).
Both get the same socket pool: MicroPython's socket module in CircuitPython's shape
(tuple bind(), recv_into() raising EAGAIN): tests/mpy/vmsock.py, as tests/mpy/device_vm.py.
Both serve the same file, han2x_core/www/style.css, once; bench_heap.py fetches it.
Prints "figure NAME VALUE" lines.
"""

import gc
import sys
import time

MODE = sys.argv[1]
PORT = int(sys.argv[2])
SITE = sys.argv[3]
ROOT = (__file__.rsplit("/", 1)[0] if "/" in __file__ else ".") + "/.."
sys.path.insert(0, ROOT)
sys.path.insert(0, ROOT + "/tests/mpy")
from vmsock import Pool  # noqa: E402


class _Obj:
    pass


def _shims():
    """CircuitPython's time.monotonic(_ns) and traceback.print_exception, nothing else."""
    t = _Obj()
    for name in dir(time):
        if not name.startswith("__"):
            setattr(t, name, getattr(time, name))
    t.monotonic_ns = time.time_ns
    t.monotonic = lambda: time.ticks_ms() / 1000
    sys.modules["time"] = t
    import builtins

    class TimeoutError(OSError):  # a CircuitPython built-in; MicroPython has none
        pass

    builtins.TimeoutError = TimeoutError
    tb = _Obj()
    tb.print_exception = lambda *a: sys.print_exception(a[1] if len(a) > 1 else a[0])
    sys.modules["traceback"] = tb


def figure(name, value):
    print("figure", name, value)


def serve(listener, poll, done, seconds=20):
    """Wait (in select, not polling the server) until a client connects, then poll until
    done(), collecting after each poll as code.py does. Returns (peak heap in use at the end
    of a poll above what was in use before, bytes allocated by all those polls)."""
    import select

    waiter = select.poll()
    waiter.register(listener.fileno(), select.POLLIN)  # (a subclass instance: by fd)
    waiter.poll(seconds * 1000)
    waiter = None
    peak = 0
    allocated = 0
    gc.collect()
    start = gc.mem_alloc()
    t0 = time.ticks_ms()
    while not done() and time.ticks_diff(time.ticks_ms(), t0) < seconds * 1000:
        before = gc.mem_alloc()
        poll()
        used = gc.mem_alloc()
        peak = max(peak, used)
        allocated += used - before
        gc.collect()
        time.sleep_ms(1)
    return peak - start, allocated


def main():
    pool = Pool()
    www = ROOT + "/han2x_core/www"
    gc.collect()
    base = gc.mem_alloc()
    if MODE == "han2x":
        import han2x_core  # noqa: F401

        gc.collect()
        figure("package_import", gc.mem_alloc() - base)
        base = gc.mem_alloc()
        from han2x_core.web import WebServer

        class App:  # what the web server reads from the app for a static file
            settings = {"web_password": "", "web_protect": "settings", "language": "auto"}
            services = []

        server = WebServer(pool, App(), port=PORT)
        server.start("127.0.0.1")
        gc.collect()
        figure("import_and_start", gc.mem_alloc() - base)
        print("ready")
        now = time.ticks_ms
        peak, allocated = serve(server._lis.socks[0], lambda: server.poll(now() & 0x1FFFFFFF),
                                lambda: server.requests >= 1 and not any(server._conns))
    else:
        sys.path.insert(0, SITE)
        _shims()
        gc.collect()
        base = gc.mem_alloc()
        from adafruit_httpserver import Server
        from adafruit_httpserver import server as _server_module

        if not hasattr(_server_module, "SSLError"):
            # poll()'s error path names ssl.SSLError when not on CircuitPython; MicroPython's
            # ssl has none, so any error would become a NameError: a class nothing raises.
            class SSLError(Exception):
                pass

            _server_module.SSLError = SSLError

        server = Server(pool, www, debug=False)
        server.start("127.0.0.1", PORT)
        gc.collect()
        figure("import_and_start", gc.mem_alloc() - base)
        print("ready")
        served = []

        def poll():
            result = server.poll()
            if result != "no_request":
                served.append(result)

        peak, allocated = serve(server._sock, poll, lambda: bool(served))
        print("poll result", served)
    gc.collect()
    figure("request_peak", peak)
    figure("request_allocated", allocated)
    figure("after_request_free", gc.mem_free())


try:
    main()
except Exception as e:
    print("error", type(e).__name__, e)
    sys.print_exception(e)
