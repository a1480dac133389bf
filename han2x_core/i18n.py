"""Web page texts: English (i18n_en.py) and Norwegian bokmål (i18n_nb.py).

Only the language a page needs is loaded (and dropped again after the request, see
webroutes.release()). Validation messages come from settings.validate in English; in
Norwegian the page shows the field's own message from i18n_nb (translated by key).
"""


def tr(key, lang):
    """The text for key in lang ('en' or 'nb'); the key itself when unknown."""
    if lang == "nb":
        from han2x_core.i18n_nb import T
    else:
        from han2x_core.i18n_en import T
    i = T.find("\n%s=" % key)  # T is one string of "\nkey=text" lines (i18n_en.py says why)
    if i < 0:
        return key
    i += len(key) + 2
    return T[i:T.find("\n", i)]

