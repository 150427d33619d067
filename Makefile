# Two commands do everything on a fresh Debian machine (as root the first time, to install Debian packages):
#   make demo   run the runbook headless (executed notebooks and HTML under out/)
#   make test   lint, type-check and run the whole test suite
# Both install what they need first and are safe to run again.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := keepalived iptables iproute2 curl iputils-ping
STAMP := $(VENV)/.kalab-installed

.PHONY: demo test lab bench setup system-packages lint clean

demo: setup
	$(BIN)/kalab run --lab --out out

test: setup lint
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check kalab tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/lab_up.py
	$(BIN)/python bench/dataplane.py
	$(BIN)/python bench/runbook.py
	$(BIN)/python bench/labs.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/services.py
	$(BIN)/python bench/doctor.py
	$(BIN)/python bench/classroom.py

# The notebooks start (or attach to) the lab themselves; `kalab lab down` stops it.
lab: setup
	$(BIN)/kalab lab up
	$(BIN)/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

setup: system-packages $(STAMP)

# Debian packages for the embedded lab: only fetched when one is missing, so a second run costs nothing.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" != 0 ]; then \
		echo "Missing Debian packages:$$missing; an administrator installs them with: sudo apt-get install$$missing"; \
		exit 1; \
	fi; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kalab needs Python 3.11 or newer; set PYTHON=python3.11 or later.")'

# The virtualenv is rebuilt only when the dependency list changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf out .mypy_cache .ruff_cache .pytest_cache
