# The two commands (see README): `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: run test chaos lint check-python

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

## Only the chaos scenario (also part of `make test`): workers, Redis, NATS and database
## connections killed under load, then exact counts. It starts its own Redis and NATS.
chaos: $(STAMP)
	$(PY) scripts/services.py run --need postgres -- $(PY) -m pytest -m chaos tests/chaos $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## End-to-end benchmark (2-4 minutes): the real processes, local feeds, WebSocket and NATS
## clients; prints throughput, latency, CPU and memory, and a one-line summary last.
.PHONY: bench
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) scripts/services.py run --need postgres -- $(PY) bench/e2e.py $(BENCH_ARGS)
