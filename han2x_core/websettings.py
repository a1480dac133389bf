"""The settings page: the form (fields in webfields.py), the messages next to the fields,
and the "open the drive for a firmware update" button (its POST: webdrive.py). Loaded for
this page only and dropped again afterwards (webroutes.release), like webpages.py, whose
layout it uses.
"""

from han2x_core.i18n import tr
from han2x_core.webpages import esc, layout


def settings_page(ctx, form, errors, notice):
    return layout(ctx, "settings", "nav_settings", _settings(ctx, form, errors, notice))


def _error_text(key, message, lang):
    from han2x_core import webfields

    if lang != "nb":
        return message
    return tr(webfields.error_key(key, message), lang)


def _settings(ctx, form, errors, notice):
    from han2x_core.webfields import FIELDS

    lang = ctx.lang
    app = ctx.app
    current = app.settings
    if notice == "saved" or notice == "moved":
        yield '<p class="ok" id="notice">%s</p>' % esc(tr("saved", lang))
    if notice == "moved":
        net = app.network
        if getattr(net, "stays", False):  # the PC simulator does not move (tools/simulate.py)
            yield '<p class="ok" id="moved-pc">%s</p>' % esc(tr("moved_pc", lang))
        if current.get("dhcp"):
            name = current.get("hostname") or getattr(net, "hostname", "") or "han2x"
            yield '<p class="ok" id="moved">%s <b>%s</b></p>' % (esc(tr("moved_dhcp", lang)),
                                                                   esc(name))
        else:
            port = current.get("web_port", 80)
            url = "http://%s%s/" % (current.get("ip"), "" if port == 80 else ":%d" % port)
            yield '<p class="ok" id="moved">%s <a href="%s">%s</a></p>' % (
                esc(tr("moved", lang)), esc(url), esc(url))
    elif notice in ("not_saved", "expired", "bad_request"):
        yield '<p class="bad" id="notice">%s</p>' % esc(tr(notice, lang))
    if "_store" in errors or app.settings_warning:
        yield '<p class="bad" id="store">%s %s</p>' % (
            esc(tr("store_err", lang)), esc(errors.get("_store") or app.settings_warning))
    yield '<form method="post" action="/settings" id="settings" novalidate>'
    yield '<input type="hidden" name="csrf" value="%s">' % ctx.csrf
    for group, fields in FIELDS:
        yield '<fieldset><legend>%s</legend>' % esc(tr(group, lang))
        net = app.network if group == "net" else None
        if net is not None and getattr(net, "ip", None):
            yield '<p class="note" id="addr-now">%s: %s (%s), %s</p>' % (
                esc(tr("addr_now", lang)), esc(net.ip), esc(getattr(net, "mode", "")),
                esc(net.hostname))
        for key, kind, choices in fields:
            if form is not None and kind != "b":
                value = form.get(key, "")
            elif form is not None:
                value = key in form
            else:
                value = current.get(key, "")
            yield '<div class="f"><label for="%s">%s</label>' % (key, esc(tr(key, lang)))
            if kind == "b":
                yield '<input type="checkbox" id="%s" name="%s"%s>' % (
                    key, key, " checked" if value else "")
            elif kind == "c":
                yield '<select id="%s" name="%s">' % (key, key)
                for option in choices:  # type: ignore[union-attr]
                    label = tr("o_" + option.lower(), lang)  # every choice has one (test_schema)
                    yield '<option value="%s"%s>%s</option>' % (
                        option, " selected" if option == value else "", esc(label))
                yield "</select>"
            elif kind == "p":  # never echoed: empty keeps it, the box clears it (webforms)
                yield ('<input type="password" id="%s" name="%s" autocomplete="new-password" '
                       'placeholder="%s"><label class="inline"><input type="checkbox" '
                       'name="%s_clear" id="%s_clear"> %s</label>' % (
                           key, key, esc(tr("keep_pw", lang)), key, key,
                           esc(tr("clear_pw", lang))))
                if key == "web_password":
                    yield '<small>%s</small>' % esc(tr("pw_hint", lang))
            else:
                yield '<input id="%s" name="%s" value="%s"%s>' % (
                    key, key, esc(value), ' inputmode="numeric"' if kind == "i" else "")
            message = errors.get(key)
            yield '<span class="err" id="err-%s">%s</span></div>' % (
                key, esc(_error_text(key, message, lang)) if message else "")
        yield "</fieldset>"
    yield '<button type="submit" id="save">%s</button></form>' % esc(tr("save", lang))
    if app.tariff is not None:  # correct a wrong peak (docs/tariff.md)
        from han2x_core import webtariffedit

        yield from webtariffedit.editor(ctx)
    yield from _drive_section(ctx)


def _drive_section(ctx):
    """The settings page's last part: the button that opens the drive for a firmware update
    (its POST: webdrive.py), or that the drive is already open; nothing when the device has
    no App.usb_write."""
    app = ctx.app
    if app.usb_write is None:
        return
    from han2x_core.webdata import drive_open  # dropped with the page (webroutes)

    lang = ctx.lang
    yield '<form method="post" action="/usb-write" id="usb"><fieldset><legend>%s</legend>' % (
        esc(tr("usb_title", lang)))
    if drive_open(app):
        yield '<p class="note" id="usb-open">%s</p>' % esc(tr("usb_open", lang))
    else:
        yield ('<input type="hidden" name="csrf" value="%s"><p class="note">%s</p>'
               '<button type="submit" id="usb-write">%s</button>' % (
                   ctx.csrf, esc(tr("usb_note", lang)), esc(tr("usb_button", lang))))
    yield "</fieldset></form>"

