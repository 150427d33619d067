# Two commands do everything on a fresh Debian machine (as root the first time, to install Debian packages):
#   make demo   run the runbook headless (executed notebooks and HTML under out/)
#   make test   lint, type-check and run the whole test suite
# Both install what they need first and are safe to run again.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The emoji font makes the checks' ✅/❌ render in a browser on this machine (and in the browser tests' screenshots).
APT_PACKAGES := keepalived iptables iproute2 curl iputils-ping fonts-noto-color-emoji
# Only the tests need a browser: Playwright drives Debian's Chromium, since it cannot download its own here.
TEST_APT_PACKAGES := chromium
STAMP := $(VENV)/.kalab-installed
# JupyterLab defaults for the runbook (jupyterlab/overrides.json): widget state is saved into the notebook, so a
# reopened notebook shows its widgets rather than "Error displaying widget: model not found"; a notebook starts its
# Python kernel without asking; no news or update checks, which a classroom without internet would only fail.
# overrides.d is JupyterLab's place for a package's defaults; a user's own settings still win.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.d/kalab.json
# What `make lab` serves; the browser tests serve a copy of the notebooks through the same target.
NOTEBOOKS ?= notebooks

.PHONY: demo test lab serve-lab bench setup system-packages test-packages lint clean

demo: setup
	$(BIN)/kalab run --lab --out out

test: setup test-packages lint
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check kalab tests bench
	$(BIN)/ruff format --check kalab tests bench
	$(BIN)/mypy

bench: setup test-packages
	$(BIN)/python -m bench.lab_up
	$(BIN)/python -m bench.dataplane
	$(BIN)/python -m bench.runbook
	$(BIN)/python -m bench.labs
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.services
	$(BIN)/python -m bench.doctor
	$(BIN)/python -m bench.classroom
	$(BIN)/python -m bench.browser
	$(BIN)/python -m bench.reset

# The notebooks start (or attach to) the lab themselves; `kalab lab down` stops it. Ctrl-C stops JupyterLab and
# its kernels at once (-y answers its "Shut down this Jupyter server?"); the lab keeps running for the next session.
lab: setup
	@$(MAKE) --no-print-directory serve-lab

# `make lab` without the set-up step: the browser tests run it with their own NOTEBOOKS, BIN and environment
# (KALAB_LAB, JUPYTER_PORT, JUPYTER_TOKEN), so they test the JupyterLab an attendee gets.
# Kernels inherit this: ipykernel's shutdown otherwise prints a traceback about a coroutine it never awaited.
QUIET_KERNEL_SHUTDOWN := ignore:coroutine 'Kernel.dispatch_control' was never awaited:RuntimeWarning

serve-lab:
	$(BIN)/kalab lab up
	PYTHONWARNINGS="$(QUIET_KERNEL_SHUTDOWN)" $(BIN)/jupyter lab -y --notebook-dir=$(NOTEBOOKS) --ip=127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

setup: system-packages $(STAMP) $(LAB_SETTINGS)

# Debian packages: only fetched when one is missing, so a second run costs nothing.
define install_debian_packages
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" != 0 ]; then \
		echo "Missing Debian packages:$$missing; an administrator installs them with: sudo apt-get install$$missing"; \
		exit 1; \
	fi; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

system-packages:
	$(call install_debian_packages,$(APT_PACKAGES))
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kalab needs Python 3.11 or newer; set PYTHON=python3.11 or later.")'

test-packages:
	$(call install_debian_packages,$(TEST_APT_PACKAGES))

# The virtualenv is rebuilt only when the dependency list changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(LAB_SETTINGS): jupyterlab/overrides.json | $(STAMP)
	install -D -m 644 $< $@

clean:
	rm -rf out .mypy_cache .ruff_cache .pytest_cache
