"""The settings form's fields, shared by the settings page (websettings, on GET) and the
form's POST handler (webforms), so that showing the page does not load the POST handlers.
FIELDS is derived from settings.SCHEMA (the one home of keys, kinds, choices and groups)
by tools/webfields.py: the page never loads the schema (~10 KB of the board's heap)."""

# (group, ((key, kind, choices), ...)); kind b=bool i=int s=text p=password c=choice
# Settings form, derived from settings.SCHEMA by tools/webfields.py: do not edit.
FIELDS = (
    ("net", (
        ("dhcp", "b", None),
        ("ip", "s", None),
        ("netmask", "s", None),
        ("gateway", "s", None),
        ("dns", "s", None),
        ("hostname", "s", None),
    )),
    ("modbus", (
        ("modbus_port", "i", None),
        ("modbus_max_clients", "i", None),
        ("modbus_idle_timeout_s", "i", None),
        ("modbus_unit_id", "i", None),
        ("modbus_read_only", "b", None),
        ("scaling_factor", "i", None),
    )),
    ("han", (
        ("han_line", "c", ("auto", "8E1", "8N1")),
        ("han_polarity", "c", ("auto", "normal", "inverted")),
        ("han_input", "c", ("pio", "uart")),
        ("han_stream_port", "i", None),
    )),
    ("web", (
        ("web_port", "i", None),
        ("web_password", "p", None),
        ("web_protect", "c", ("settings", "all")),
        ("language", "c", ("auto", "nb", "en")),
    )),
    ("tariff", (
        ("tariff", "b", None),
        ("tariff_peaks", "i", None),
        ("tariff_steps", "s", None),
    )),
    ("mqtt", (
        ("mqtt_host", "s", None),
        ("mqtt_port", "i", None),
        ("mqtt_user", "s", None),
        ("mqtt_password", "p", None),
        ("mqtt_client_id", "s", None),
        ("mqtt_prefix", "s", None),
        ("mqtt_discovery_prefix", "s", None),
        ("mqtt_interval_s", "i", None),
    )),
)
# End of the derived form.

# Which Norwegian message explains an invalid value of each key.
_NB_ERROR = {"ip": "e_ip_net", "netmask": "e_netmask", "gateway": "e_gateway",
             "modbus_port": "e_port", "web_port": "e_port", "mqtt_port": "e_port", "mqtt_user": "e_web_password",
             "mqtt_password": "e_web_password", "mqtt_client_id": "e_hostname",
             "mqtt_prefix": "e_mqtt_topic", "mqtt_discovery_prefix": "e_mqtt_topic"}

PORT_CLASH = "must differ from the Modbus port"  # settings.validate's messages
NOT_IPV4 = "must be an IPv4 address"


def error_key(key, message):
    """The i18n key of the Norwegian message for settings.validate's `message` on key."""
    if message == PORT_CLASH:
        return "e_port_clash"
    if key == "modbus_max_clients" and message.startswith("must be at most"):
        # settings.sockets_needed: the W5500's 8 sockets; the limit depends on what is on
        if "and MQTT" in message:
            return "e_sockets_both"
        return "e_sockets_mqtt" if "MQTT" in message else "e_sockets"
    if message.startswith(NOT_IPV4) and key in ("ip", "gateway", "dns"):  # before the net
        return "e_ip" if key == "ip" else "e_dns"
    for _, fields in FIELDS:
        for field, kind, _ in fields:
            if field == key and kind == "c":
                return "e_choice"
    return _NB_ERROR.get(key, "e_" + key)
