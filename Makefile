# HAN2X open firmware: the two commands a newcomer needs are `make run` and `make test`.
# Both set themselves up first (Python venv from requirements-dev.txt, Debian packages).

PY      := .venv/bin/python
STAMP   := .venv/.installed
APT_PKGS := mbpoll libmodbus-dev mtools dosfstools chromium chromium-driver pkg-config gcc nodejs npm

.PHONY: setup run test test-fast bench lint clean

setup: $(STAMP) .system-deps

$(STAMP): requirements-dev.txt
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Debian packages for the real Modbus clients, FAT images and the headless browser.
.system-deps: Makefile
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

run: setup
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
