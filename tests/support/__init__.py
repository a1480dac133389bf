"""What the tests share, kept apart from the test files: util (corpus, free ports), hanframes
(the captured frames by id), modbus_frames (MBAP and RTU request encoders), mpy (the
MicroPython binary and its runs), net_helpers and webdevice (devices on the W5500 model or
on CPython sockets), board_emu (the real CircuitPython in rp2040js), mqtt_broker,
tariffmonth and fakes/ (CircuitPython's modules for CPython). Tests import them as
`from support.util import ...`; the simulators themselves are in tools/sim/."""
