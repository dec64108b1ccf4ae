# The two commands (see README): `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: run test lint check-python

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
		{ echo "Infatium needs Python 3.11 or newer (found: $$($(PYTHON) --version 2>&1))"; exit 1; }

$(STAMP): requirements/base.txt requirements/dev.txt | check-python
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	@touch $(STAMP)

## Set everything up and run the whole system in the foreground (Ctrl-C stops it).
run: $(STAMP)
	$(PY) scripts/run.py

## Run the whole test suite on PostgreSQL, Redis and NATS (started here if none answers).
test: $(STAMP)
	$(PY) scripts/services.py run --need postgres,redis,nats -- $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
