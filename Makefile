# Two commands set everything up on a fresh machine:
#   make demo   install into .venv, then run a broker, a test stream and a live consumer
#   make test   install into .venv (and, as root, the Debian packages the RTSP and browser
#               tests use: GStreamer's RTSP server, chromium),
#               then lint (ruff), type-check (mypy) and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-arm64 lint bench install system-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml framebus/shm/_order.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,web]'
	touch $@

demo: $(STAMP)
	$(BIN)/framebus demo $(DEMO_ARGS)

test: lint system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Lint and types first: a finding fails the run before the suite's minutes are spent.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The ring's tests on aarch64 under qemu-user emulation (root; minutes the first time, as it
# builds a Debian arm64 root). Not part of `make test`: see docs/ring.md, "Under emulation".
test-arm64:
	tests/arm64/run

bench: $(STAMP)
	$(BIN)/python -m bench.bus $(BENCH_ARGS)

# The RTSP tests read a real RTSP server: GStreamer's, run by Debian's own python3
# (framebus/testing/rtsp_server.py; the venv has no gi). Installed from Debian's packages
# when missing and we are root; without them those tests are skipped. `make demo` needs
# none of this.
SYSTEM_PYTHON := /usr/bin/python3
SYSTEM_DEPS := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
RTSP_CHECK := $(SYSTEM_PYTHON) -I framebus/testing/rtsp_server.py --check
# The browser tests (tests/browser.py) drive Debian's chromium through Playwright's driver:
# Playwright's own browser download is not used.
BROWSER := /usr/bin/chromium

system-deps:
	@if missing=$$($(RTSP_CHECK) 2>&1); then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian packages for the RTSP tests: $(SYSTEM_DEPS)"; \
		apt-get -o DPkg::Lock::Timeout=300 update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
			--no-install-recommends $(SYSTEM_DEPS) >/dev/null && \
		$(RTSP_CHECK); \
	else \
		echo "NOTE: RTSP tests will be skipped ($$missing);" \
			"install with: sudo apt-get install --no-install-recommends $(SYSTEM_DEPS)"; \
	fi
	@if [ -x $(BROWSER) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get -o DPkg::Lock::Timeout=300 update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
			--no-install-recommends chromium >/dev/null; \
	else \
		echo "NOTE: browser tests will be skipped (no $(BROWSER));" \
			"install with: sudo apt-get install --no-install-recommends chromium"; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache
