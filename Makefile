# itsm: `make run` to try it, `make test` to check it. Everything lives in .venv.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5000
export FLASK_APP := wsgi

.PHONY: run test lint bench install install-dev clean help

help:
	@echo "make run    install, migrate, seed demo data, start web + worker + scheduler"
	@echo "make test   install dev requirements and run the whole test suite"
	@echo "make lint   ruff"
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

run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask demo seed
	$(BIN)/flask schedules sync
	@echo
	@echo "  itsm is starting at   http://127.0.0.1:$(PORT)/"
	@echo "  demo admin login:     admin@example.com / demo-admin-pass"
	@echo "  demo agent login:     agent@example.com / demo-agent-pass"
	@echo "  stop with Ctrl-C"
	@echo
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho start --port $(PORT) web worker scheduler

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .

bench: install-dev
	$(BIN)/python bench/desk.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/artifacts
