# learnloop: two commands for a newcomer — `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when the project's dependencies change.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test lint test-fast notebook clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e ".[dev]"
	$(BIN)/pip check
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: install
	$(BIN)/learnloop demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q --durations=15 --nbmake tests notebooks

# Everything but the slow and browser suites, for the edit-test loop.
test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m "not slow and not browser and not integration"

# The data scientists' notebook in JupyterLab (installed into .venv on first use; not needed by the tests).
notebook: install
	$(BIN)/jupyter-lab --version >/dev/null 2>&1 || $(BIN)/pip install -q -e ".[notebook]"
	HF_HUB_OFFLINE=1 $(BIN)/jupyter-lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/risk_model.ipynb

clean:
	rm -rf var .pytest_cache .ruff_cache
