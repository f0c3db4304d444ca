# itsm: `make run` to try it, `make test` to check it. Everything lives in .venv.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5000
# The demo has a published admin password: `make run` listens on loopback only; HOST=0.0.0.0 shares it.
HOST ?= 127.0.0.1
MAIL_SINK_PORT ?= 1025
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
run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask demo seed
	$(BIN)/flask schedules sync
	@echo
	@echo "  itsm is starting at   http://$(if $(filter 0.0.0.0,$(HOST)),127.0.0.1,$(HOST)):$(PORT)/$(if $(filter 0.0.0.0,$(HOST)),   (on every interface),)"
	@echo "  demo admin login:     admin@example.com / demo-admin-pass"
	@echo "  demo agent login:     agent@example.com / demo-agent-pass"
	@if [ -z "$$MAIL_SERVER" ]; then echo "  emails:               a local sink on port $(MAIL_SINK_PORT); read them on /admin/outbox"; fi
	@echo "  stop with Ctrl-C"
	@echo
	@# Without a MAIL_SERVER of your own, email goes to the development sink, shown on the outbox page.
	export PATH="$(abspath $(BIN)):$$PATH"; \
	if [ -z "$$MAIL_SERVER" ]; then \
	  export MAIL_SERVER=127.0.0.1 MAIL_PORT=$(MAIL_SINK_PORT) MAIL_SINK_DIR="$(CURDIR)/instance/mail-sink"; \
	  exec $(BIN)/honcho start --port $(PORT) web worker scheduler mailsink; \
	fi; \
	exec $(BIN)/honcho start --port $(PORT) web worker scheduler

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# Every bench/ script, each rewriting its own section of bench/RESULTS.md; fails if any target is missed.
BENCHES := desk jobs schedules recurring archive backup outbox dashboard
bench: install-dev
	@failed=""; for b in $(BENCHES); do \
	  echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py --write-results || failed="$$failed $$b"; \
	done; \
	if [ -n "$$failed" ]; then echo "targets missed or errors in:$$failed (see bench/RESULTS.md)"; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/artifacts
