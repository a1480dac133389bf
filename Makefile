# HAN2X open firmware: the two commands a newcomer needs are `make run` and `make test`.
# Both set themselves up first. `make run` needs only Python 3.11+ (Linux, macOS, Windows with
# WSL): a venv with requirements-run.txt. `make test` adds requirements-dev.txt and the
# system packages the tests use (apt-get on Debian/Ubuntu; elsewhere it lists what is missing).

PY       := .venv/bin/python
RUN_STAMP := .venv/.installed-run
STAMP    := .venv/.installed
APT_PKGS := mbpoll libmodbus-dev mtools dosfstools chromium chromium-driver pkg-config gcc nodejs npm mosquitto

.PHONY: setup run test test-fast bench lint clean

setup: $(STAMP) .system-deps

# The venv itself: made once (an existing one, possibly shared, is left as it is).
$(PY):
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "make: Python 3.11 or newer is needed as python3 (this is $$(python3 --version 2>&1))"; exit 1; }
	@python3 -m venv .venv || { echo "make: python3 -m venv failed. On Debian/Ubuntu:" \
	  "apt-get install python3-venv; then run make again."; rm -rf .venv; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip

# What `make run` needs: the simulator and pyserial, nothing else.
$(RUN_STAMP): requirements-run.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-run.txt
	touch $(RUN_STAMP)

# Everything the tests and benchmarks need (requirements-dev.txt includes requirements-run.txt).
$(STAMP): requirements-dev.txt requirements-run.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP) $(RUN_STAMP)

# System packages for the real Modbus clients, FAT images and the headless browser (tests only).
.system-deps: Makefile tools/setup_system.sh
	@sh tools/setup_system.sh $(APT_PKGS)
	@touch .system-deps

# lib/ for the board, built from the pins (downloads into build/lib-cache once); the flash and
# build_lib tests build it again offline from that cache.
LIB_STAMP := lib/.han2x-lib.json
$(LIB_STAMP): lib/requirements.txt $(STAMP)
	$(PY) tools/build_lib.py

# rp2040js for the board emulator tests (tests/rp2040/package-lock.json pins it).
NPM_STAMP := tests/rp2040/node_modules/.installed
$(NPM_STAMP): tests/rp2040/package-lock.json .system-deps
	cd tests/rp2040 && npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

run: $(RUN_STAMP)
	$(PY) tools/simulate.py $(ARGS)

# --dist loadgroup: each emulated board boots once, on one worker (tests/test_board_emu.py).
test: setup $(LIB_STAMP) $(NPM_STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup tests

test-fast: setup $(LIB_STAMP)
	$(PY) -m pytest -n 2 -m "not slow" tests

bench: setup $(NPM_STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf .venv .system-deps .pytest_cache build dist tests/rp2040/node_modules
