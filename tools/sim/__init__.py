"""Stand-ins for what is outside the firmware, shared by tools/simulate.py and the tests:
metersim (a HAN meter: Aidon, Kaifa, Kamstrup telegrams at their cadence), w5500_model (the
W5500 chip behind a fake SPI bus, docs/w5500-model.md) and dhcp_server (a DHCP server on
127.0.0.1)."""
