# Tarjotin: `make run` starts everything with demo data, `make test` runs the whole test suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run stop status test test-unit lint bench chaos ordering venv clean

run:            ## install what is missing, start RabbitMQ, 4 services, their workers, nginx; load demo data
	bash scripts/tarjotin.sh up

stop:           ## stop what `make run` started
	bash scripts/tarjotin.sh down

status:
	bash scripts/tarjotin.sh status

venv:
	bash scripts/bootstrap.sh venv

test: venv      ## unit + integration + e2e, on SQLite and on PostgreSQL, against real RabbitMQ
	bash scripts/bootstrap.sh all
	$(PY) -m pytest -q

test-unit: venv
	$(PY) -m pytest -q tests/unit

lint: venv      ## ruff + mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

clean: stop
	rm -rf var

bench: venv     ## the floor and the system under load, SQLite and PostgreSQL; prints a table, writes JSON
	bash scripts/bootstrap.sh all
	$(PY) -m bench.run

chaos: venv     ## the full chaos burst: 10,000 enrolments while services are SIGKILLed and RabbitMQ restarts
	bash scripts/bootstrap.sh all
	TARJOTIN_CHAOS_N=10000 $(PY) -m pytest -q tests/e2e/test_chaos.py -k sigkill

ordering: venv  ## the ordering and duplicates property tests (hypothesis) with 25 times the suite's examples
	bash scripts/bootstrap.sh all
	TARJOTIN_TEST_EXAMPLES_SCALE=25 $(PY) -m pytest -q tests/integration/test_enrolment_ordering.py \
		tests/integration/test_billing_ordering.py tests/integration/test_reporting_ordering.py
