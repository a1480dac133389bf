"""The circuitpython-stubs in the venv (pinned in requirements-dev.txt) as the fakes' rule book.

The stubs are generated from CircuitPython's own sources (10.x; see README.md for what that
means for 9.2). `strict(module)` wraps every function and method of a fake module that the
stubs describe, so a call binds against the stub's signature first: an unknown or misspelled
keyword, a missing argument or one positional too many raises TypeError, as on the board.
`board_pins(board_id)` gives the pin names of a board (board_definitions/), GPIO numbers too.
"""

import ast
import functools
import inspect
import os
import re
import sysconfig

SITE = sysconfig.get_paths()["purelib"]
_cache = {}


def stub_path(module):
    return os.path.join(SITE, module + "-stubs", "__init__.pyi")


def _default(node):
    try:
        return ast.literal_eval(node)
    except ValueError:  # DriveMode.PUSH_PULL, sys.maxsize: a default, value not compared
        return _Opaque(ast.unparse(node))


class _Opaque:
    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


def _signature(fn, method):
    a = fn.args
    P = inspect.Parameter
    params = []
    positional = [(x, P.POSITIONAL_ONLY) for x in a.posonlyargs]
    positional += [(x, P.POSITIONAL_OR_KEYWORD) for x in a.args]
    defaults = [P.empty] * (len(positional) - len(a.defaults)) + [_default(d) for d in a.defaults]
    for (arg, kind), d in zip(positional, defaults):
        params.append(P(arg.arg, kind, default=d))
    if a.vararg:
        params.append(P(a.vararg.arg, P.VAR_POSITIONAL))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults):
        params.append(P(arg.arg, P.KEYWORD_ONLY, default=P.empty if d is None else _default(d)))
    if a.kwarg:
        params.append(P(a.kwarg.arg, P.VAR_KEYWORD))
    if method and params and not any(_decorated(fn, "staticmethod")):
        params = params[1:]  # self
    return inspect.Signature(params)


def _decorated(fn, name):
    return [d for d in fn.decorator_list if ast.unparse(d) == name]


def _walk(body, prefix, out, method):
    for node in body:
        if isinstance(node, ast.ClassDef):
            name = prefix + node.name
            out[name] = ("class", None)
            _walk(node.body, name + ".", out, True)
        elif isinstance(node, ast.FunctionDef):
            name = prefix + node.name
            if any(ast.unparse(d).endswith((".setter", "property")) for d in node.decorator_list):
                out[name] = ("attr", None)
            elif name in out and out[name][0] == "function":  # @overload
                out[name][1].append(_signature(node, method))
            else:
                out[name] = ("function", [_signature(node, method)])
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[prefix + node.target.id] = ("attr", None)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[prefix + t.id] = ("attr", None)


def names(module):
    """{qualified name: (kind, [signatures] or None)} of what a stub module declares."""
    if module not in _cache:
        with open(stub_path(module), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        out = {}
        _walk(tree.body, "", out, False)
        _cache[module] = out
    return _cache[module]


def board_pins(board_id):
    """{pin name: GPIO number} and the names of the board's bus functions (SPI(), ...)."""
    path = os.path.join(SITE, "board_definitions", board_id, "__init__.pyi")
    pins, funcs = {}, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"(\w+): microcontroller\.Pin\s+# GPIO(\d+)", line)
            if m:
                pins[m.group(1)] = int(m.group(2))
            m = re.match(r"def (\w+)\(\)", line)
            if m:
                funcs.append(m.group(1))
    return pins, funcs


def _bind(sigs, qualname, args, kw):
    err = None
    for sig in sigs:
        try:
            sig.bind(*args, **kw)
            return
        except TypeError as e:
            err = e
    raise TypeError("%s(): %s (circuitpython-stubs: %s%s)" % (qualname, err, qualname, sigs[0]))


def _wrap(fn, sigs, qualname, method):
    @functools.wraps(fn)
    def checked(*args, **kw):
        _bind(sigs, qualname, args[1:] if method else args, kw)
        return fn(*args, **kw)

    checked.__stub_signatures__ = sigs
    return checked


def strict(mod, module):
    """Wrap mod's functions and class methods named in the stubs of `module`."""
    stub = names(module)
    for name, obj in list(vars(mod).items()):
        kind = stub.get(name, (None,))[0]
        if kind == "function" and inspect.isfunction(obj):
            setattr(mod, name, _wrap(obj, stub[name][1], module + "." + name, False))
        elif kind == "class" and inspect.isclass(obj) and obj.__module__ == mod.__name__:
            _strict_class(obj, name, stub, module)
    return mod


def _strict_class(cls, name, stub, module):
    own = {}
    for klass in reversed(cls.__mro__[:-1]):  # inherited methods too, the class's own last
        own.update(vars(klass))
    for attr, obj in list(own.items()):
        q = name + "." + attr
        entry = stub.get(q)
        if entry is None or entry[0] != "function":
            if inspect.isclass(obj) and entry is not None:
                _strict_class(obj, q, stub, module)
            continue
        if isinstance(obj, staticmethod):
            setattr(cls, attr, staticmethod(_wrap(obj.__func__, entry[1], module + "." + q,
                                                  False)))
        elif inspect.isfunction(obj):
            setattr(cls, attr, _wrap(obj, entry[1], module + "." + q, True))
