#!/usr/bin/env python3
"""The settings page's form table (han2x_core/webfields.py FIELDS), derived from the one
settings schema (han2x_core/settings.py SCHEMA: key, kind, choices, group). The page must
not load the schema on the board (~10 KB of heap while it renders), so the form ships as
this derived copy; tests/test_schema.py fails when it differs from what this makes.

Usage: tools/webfields.py [--check]
Rewrites the FIELDS block in han2x_core/webfields.py; --check changes nothing and exits 1
when the block is out of date. Host only.
"""

import os
import sys

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tools._host  # noqa: E402,F401  (root and tests/ after the stdlib: docs/architecture.md)

ROOT = tools._host.ROOT
TARGET = os.path.join(ROOT, "han2x_core", "webfields.py")
BEGIN = "# Settings form, derived from settings.SCHEMA by tools/webfields.py: do not edit.\n"
END = "# End of the derived form.\n"


def form_fields(settings):
    """FIELDS from the settings module: (group, ((key, kind, choices), ...)) in schema
    order; kind b=bool i=int s=text p=password c=choice; keys without a group are left out
    (settings.toml only)."""
    kinds = {settings._BOOL: "b", settings._INT: "i", settings._ENUM: "c",
             settings._SECRET: "p"}
    groups = []  # type: list
    for key, kind, a, _b, group, _comment in settings.SCHEMA:
        if group is None:
            continue
        if not groups or groups[-1][0] != group:
            assert group not in [g for g, _ in groups], "group %s is split in SCHEMA" % group
            groups.append((group, []))
        form_kind = kinds.get(kind, "s")
        groups[-1][1].append((key, form_kind, tuple(a) if form_kind == "c" else None))
    return tuple((group, tuple(fields)) for group, fields in groups)


def source(fields):
    """FIELDS as the Python text between the markers."""
    lines = [BEGIN, "FIELDS = (\n"]
    for group, entries in fields:
        lines.append("    (%r, (\n" % group)
        for entry in entries:
            lines.append("        %r,\n" % (entry,))
        lines.append("    )),\n")
    lines.append(")\n")
    lines.append(END)
    return "".join(lines).replace("'", '"')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from han2x_core import settings

    with open(TARGET) as f:
        text = f.read()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + source(form_fields(settings)) + text[end:]
    if "--check" in argv:
        if new != text:
            print("han2x_core/webfields.py is out of date: run tools/webfields.py")
            return 1
        return 0
    if new != text:
        with open(TARGET, "w") as f:
            f.write(new)
        print("han2x_core/webfields.py: FIELDS rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
