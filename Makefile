# VolumeViz backend: developer and CI entry points (GNU make).
#   make setup   create .venv and install the project with its dev extras
#   make run     start watcher + scanner + gateway with honcho (uses your real Docker)
#   make test    run the test suite against a private, throw-away Docker engine
#                (extra pytest arguments: make test PYTEST_ARGS="-k foo -x")
#   make lint    ruff + mypy
#   make bench   run every benchmark against its peer (bench/, ~10 min; needs root)
#   make clean   remove the venv and caches

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS ?=
LINT_PATHS := common services tests

.PHONY: help setup run test lint bench clean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

# Re-install only when the packaging or the C walk changes (or the venv is missing).
$(STAMP): pyproject.toml setup.py $(wildcard services/scanner/_walk*.[ch])
	@if [ ! -x $(BIN)/python ]; then \
	    scripts/ensure-python-venv.sh $(PYTHON); \
	    rm -rf $(VENV); \
	    $(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

setup: $(STAMP)

run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start

test: setup
	scripts/ensure-test-packages.sh
	@echo "$(BIN)/pytest $(PYTEST_ARGS)"; rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; \
	exit $$rc

lint: setup
	$(BIN)/ruff check $(LINT_PATHS) bench
	$(BIN)/mypy $(LINT_PATHS)

bench: setup
	scripts/ensure-test-packages.sh
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
