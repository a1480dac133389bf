"""Web page strings in English and Norwegian bokmål; picks the language of a request.

T[key] = (english, bokmål). Validation messages come from settings.validate in English;
in Norwegian the page shows the field's own message from here (translated by key).
"""

T = {
    "title": ("HAN2X", "HAN2X"),
    "nav_dash": ("Dashboard", "Oversikt"),
    "nav_settings": ("Settings", "Innstillinger"),
    "nav_diag": ("Diagnostics", "Diagnostikk"),
    "nav_regs": ("Register map", "Registerkart"),
    "nav_login": ("Log in", "Logg inn"),
    "nav_logout": ("Log out", "Logg ut"),
    "meter": ("Meter", "Måler"),
    "meter_type": ("Model", "Modell"),
    "meter_id": ("Meter id", "Måler-ID"),
    "list": ("List", "Liste"),
    "meter_clock": ("Meter clock", "Målerens klokke"),
    "last_telegram": ("Last telegram", "Siste telegram"),
    "ago": ("s ago", "s siden"),
    "no_data": ("No telegram received yet", "Ingen telegram mottatt ennå"),
    "stale": ("No telegram for a while: check the HAN cable and that the port is opened",
              "Ingen telegram på en stund: sjekk HAN-kabelen og at porten er åpnet"),
    "power": ("Power", "Effekt"),
    "import": ("Import", "Import"),
    "export": ("Export", "Eksport"),
    "active": ("Active", "Aktiv"),
    "reactive": ("Reactive", "Reaktiv"),
    "phases": ("Phases", "Faser"),
    "phase": ("Phase", "Fase"),
    "current": ("Current", "Strøm"),
    "voltage": ("Voltage", "Spenning"),
    "energy": ("Energy", "Energi"),
    "measured": ("From the meter (hourly)", "Fra måleren (hver time)"),
    "estimated": ("Estimated now", "Estimert nå"),
    "est_note": ("estimated: last hourly value plus power integrated since",
                 "estimert: siste timeverdi pluss effekt integrert siden"),
    "chart": ("Power, last 30 minutes", "Effekt, siste 30 minutter"),
    "na": ("n/a", "–"),
    # settings page
    "net": ("Network", "Nettverk"),
    "modbus": ("Modbus TCP", "Modbus TCP"),
    "han": ("HAN port", "HAN-port"),
    "web": ("Web page", "Nettside"),
    "save": ("Save", "Lagre"),
    "saved": ("Saved.", "Lagret."),
    "not_saved": ("Nothing was saved: correct the marked fields.",
                  "Ingenting ble lagret: rett opp feltene som er merket."),
    "moved": ("The device moves to its new address within 10 seconds:",
              "Enheten flytter til sin nye adresse innen 10 sekunder:"),
    "moved_dhcp": ("The device now asks the DHCP server for an address; find it in your "
                   "router's list of clients, under the name",
                   "Enheten ber nå DHCP-serveren om en adresse; finn den i ruterens liste "
                   "over klienter, under navnet"),
    "expired": ("The form expired (the device restarted). Check the values and save again.",
                "Skjemaet er utløpt (enheten startet på nytt). Sjekk verdiene og lagre igjen."),
    "store_err": ("Could not write the settings file:", "Kunne ikke skrive innstillingsfilen:"),
    "keep_pw": ("leave empty to keep the current password", "la stå tomt for å beholde passordet"),
    "clear_pw": ("Remove the password", "Fjern passordet"),
    "pw_hint": ("Forgotten? Hold FACTRESET, or edit settings.toml on the USB drive.",
                "Glemt? Hold inne FACTRESET, eller rediger settings.toml på USB-disken."),
    # one label + Norwegian error text per settings key
    "dhcp": ("Use DHCP", "Bruk DHCP"),
    "ip": ("IP address", "IP-adresse"),
    "netmask": ("Netmask", "Nettmaske"),
    "gateway": ("Gateway", "Gateway"),
    "dns": ("DNS server", "DNS-server"),
    "hostname": ("Host name", "Vertsnavn"),
    "modbus_port": ("Modbus TCP port", "Modbus TCP-port"),
    "modbus_max_clients": ("Max clients", "Maks klienter"),
    "modbus_idle_timeout_s": ("Idle timeout (s)", "Tidsavbrudd ved inaktivitet (s)"),
    "modbus_unit_id": ("Unit id (0 = any)", "Enhets-ID (0 = alle)"),
    "scaling_factor": ("Scaling factor (1000 = x1)", "Skaleringsfaktor (1000 = x1)"),
    "han_line": ("Line format", "Linjeformat"),
    "han_polarity": ("Polarity", "Polaritet"),
    "han_input": ("Input", "Inngang"),
    "web_port": ("Web port", "Web-port"),
    "web_password": ("Password", "Passord"),
    "web_protect": ("Password protects", "Passordet beskytter"),
    "language": ("Language", "Språk"),
    "e_ip": ("Not a valid address for this network (like 192.168.1.232)",
             "Ikke en gyldig adresse for dette nettet (som 192.168.1.232)"),
    "e_netmask": ("Not a valid netmask (like 255.255.255.0)",
                  "Ikke en gyldig nettmaske (som 255.255.255.0)"),
    "e_gateway": ("Must be an address in the same network (or 0.0.0.0)",
                  "Må være en adresse i samme nett som IP-adressen (eller 0.0.0.0)"),
    "e_port": ("Must be a whole number from 1 to 65535", "Må være et heltall fra 1 til 65535"),
    "e_modbus_max_clients": ("Must be 1 to 5", "Må være 1 til 5"),
    "e_modbus_idle_timeout_s": ("Must be 5 to 3600 seconds", "Må være 5 til 3600 sekunder"),
    "e_modbus_unit_id": ("Must be 0 to 255", "Må være 0 til 255"),
    "e_scaling_factor": ("Must be 10 to 1000000", "Må være 10 til 1000000"),
    "e_hostname": ("Letters, digits and '-' only, at most 63",
                   "Kun bokstaver, sifre og '-', høyst 63"),
    "e_choice": ("Choose one of the listed values", "Velg en av verdiene i listen"),
    "e_web_password": ("At most 64 printable characters", "Høyst 64 synlige tegn"),
    "o_auto": ("automatic", "automatisk"),
    "o_settings": ("settings only", "bare innstillinger"),
    "o_all": ("all pages", "alle sider"),
    "o_normal": ("normal", "normal"),
    "o_inverted": ("inverted", "invertert"),
    # diagnostics
    "frames_ok": ("Frames OK", "Rammer OK"),
    "hcs_errors": ("Header CRC errors", "CRC-feil i hode"),
    "fcs_errors": ("Frame CRC errors", "CRC-feil i ramme"),
    "discarded_bytes": ("Discarded bytes", "Forkastede byte"),
    "decode_errors": ("Undecodable frames", "Ukjente rammer"),
    "line_format": ("Detected line format", "Oppdaget linjeformat"),
    "last_frame": ("Last raw frame (hex)", "Siste rå ramme (hex)"),
    "frame_hint": ("Send this when a meter is not understood.",
                   "Send denne når en måler ikke blir forstått."),
    "uptime": ("Uptime", "Oppetid"),
    "temperature": ("Board temperature", "Korttemperatur"),
    "firmware": ("Firmware", "Fastvare"),
    "modbus_clients": ("Modbus clients connected", "Tilkoblede Modbus-klienter"),
    "modbus_requests": ("Modbus requests served", "Besvarte Modbus-forespørsler"),
    "free_memory": ("Free memory", "Ledig minne"),
    "ip_now": ("Address", "Adresse"),
    "web_requests": ("Web requests / errors", "Web-forespørsler / feil"),
    "last_error": ("Last error", "Siste feil"),
    # register map
    "address": ("Address", "Adresse"),
    "offset": ("Offset", "Offset"),
    "name": ("Name", "Navn"),
    "unit": ("Unit", "Enhet"),
    "value": ("Value", "Verdi"),
    "regs_note": ("Values as a Modbus client reads them (after scaling). Offset = address - 40001.",
                  "Verdier slik en Modbus-klient leser dem (etter skalering). "
                  "Offset = adresse - 40001."),
    # login
    "login_title": ("Password required", "Passord kreves"),
    "login_bad": ("Wrong password.", "Feil passord."),
    "login_wait": ("Too many attempts; wait a minute.", "For mange forsøk; vent et minutt."),
    "bad_request": ("Refused: the form did not come from this device's page.",
                    "Avvist: skjemaet kom ikke fra enhetens egen side."),
}


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


def tr(key, lang):
    """The text for key in lang ('en' or 'nb'); the key itself when unknown."""
    pair = T.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "nb" else pair[0]
