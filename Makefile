# bitdust — `make demo` runs a private network on this host, `make test` proves it.
# Everything it needs is installed here: the virtualenv from pinned requirements, and the Debian
# tools (debhelper, lintian, debootstrap, nginx) through apt-get when they are missing.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements/*.txt pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: all venv deps lint format test test-fast demo bench clean
all: venv

# The pinned requirements, then bitdust itself, editable: .venv/bin/bitdust runs the source tree
# (as dist/bitdust runs its frozen copy), with no reinstall after an edit.
$(STAMP): requirements/runtime.txt requirements/dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --editable .
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# Debian tools the tests, the package build and `make repo` (apt-ftparchive, gpg) use; nginx is kept from starting on install.
APT_PACKAGES := debhelper devscripts dpkg-dev fakeroot lintian debootstrap nginx-light systemd \
	iproute2 util-linux curl strace zstd apt-utils gnupg wrk
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root (sudo make ...) to install:$$missing"; exit 1; fi; \
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing); rc=$$?; \
		rm -f /usr/sbin/policy-rc.d; \
		if command -v nginx >/dev/null && pgrep -x nginx >/dev/null; then (service nginx stop || pkill -x nginx) >/dev/null 2>&1; fi; \
		exit $$rc; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

include mk/packaging.mk

# The whole suite: unit, integration (real processes on 127.0.1.x), packaging (the frozen binary,
# the .deb installed into a fresh Debian root), and the benchmarks in smoke mode.
test: venv deps lint binary deb repo
	$(PY) -m pytest $(PYTEST_ARGS)

# Everything but the frozen binary and the package: the quick loop while developing.
test-fast: venv
	$(PY) -m pytest -m "not packaging" $(PYTEST_ARGS)

demo: venv deps binary
	$(PY) -m tests.demo

# The storage figures start nodes on the guide's fixed addresses and ports: one run at a time,
# and not beside a running `make test` (the lock its real-process tests share). The frozen binary
# is measured against the source tree; wrk and nginx load and serve the identity server's figures.
bench: venv deps binary
	BITDUST_FROZEN=$(CURDIR)/dist/bitdust flock /tmp/bitdust-it.lock $(PY) -m tests.bench.run

# Keeps build/apt-signing: hosts that added dist/apt as a source trust only that key.
clean:
	rm -rf dist .pytest_cache .ruff_cache
	@if [ -d build ]; then find build -mindepth 1 -maxdepth 1 ! -name apt-signing -exec rm -rf {} +; fi
