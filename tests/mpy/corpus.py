"""The frame corpus for tests under MicroPython: tests/data/frames.json, one object at a time.

json.load of the whole 115 KB file does not fit a 192 KB heap, so the top-level array is
split into its objects here and each is parsed alone.
"""

import json


def _data_path():
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    return here + "/../data/frames.json"


def entries(path=None):
    """Yield each corpus entry (a dict) in file order."""
    depth = 0
    in_str = False
    escape = False
    obj = []
    with open(path or _data_path()) as f:
        while True:
            chunk = f.read(1024)
            if not chunk:
                break
            start = 0 if depth >= 1 else -1
            for i in range(len(chunk)):
                c = chunk[i]
                if in_str:
                    if escape:
                        escape = False
                    elif c == "\\":
                        escape = True
                    elif c == '"':
                        in_str = False
                elif c == '"':
                    in_str = True
                elif c == "{" or c == "[":
                    depth += 1
                    if depth == 2:
                        start = i
                elif c == "}" or c == "]":
                    depth -= 1
                    if depth == 1:
                        obj.append(chunk[start:i + 1])
                        yield json.loads("".join(obj))
                        obj = []
                        start = -1
            if depth >= 2 and start >= 0:
                obj.append(chunk[start:])
