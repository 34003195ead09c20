# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-unit bench soak lint format venv system-deps services screenshots clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing Python packages into $(VENV) (torch from this machine's disk: ~2 min the first time)"
	$(VENV)/bin/pip install -qq -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests use: docker-compose (validates docker-compose.yml
# without a Docker engine), chromium (the browser tests) and mosquitto (the MQTT
# broker results are pushed to). Installed only when missing.
system-deps:
	@scripts/install_system_deps.sh

# PostgreSQL and Redis must answer before the tests; start them when they do not.
services:
	@scripts/ensure_services.sh

demo: venv
	$(PY) scripts/demo.py

# tests/unit needs no services (under a minute); tests/integration runs real
# PostgreSQL, Redis, Celery workers and Chromium.
test: venv system-deps services
	$(PY) -m pytest tests/unit tests/integration

test-unit: venv
	$(PY) -m pytest tests/unit

bench: venv services
	$(PY) -m bench

# The line under 5x overload for 10 minutes, then an hour at half its rate (about
# 77 minutes; not part of `make test`): nothing lost, no memory, file or connection
# creeping up. Writes the Overload and Soak sections of docs/benchmarks.md.
# `make soak SOAK_ARGS=--quick` is a 3-minute smoke run of the same.
soak: venv services
	$(PY) -m bench.soak $(SOAK_ARGS)

# Re-take the screenshots in docs/screenshots/ (the browser tests, in Chromium): the
# pages as a supervisor works them, and each page at four screen widths.
screenshots: venv system-deps services
	SCREENSHOT_DIR=docs/screenshots $(PY) -m pytest -q tests/integration/test_browser*.py \
	  tests/integration/test_screen_widths.py tests/integration/test_review_in_place.py \
	  tests/integration/test_viewer.py tests/integration/test_dashboard_and_stale_forms.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf var runs .pytest_cache .ruff_cache
