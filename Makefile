# The quick start: `make run` starts alertbridge on its embedded defaults,
# `make test` runs the whole test suite. Both set up the virtualenv first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= config.example.toml

.PHONY: run test lint check-config venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/alertbridge serve -c $(CONFIG)

check-config: $(STAMP)
	$(BIN)/alertbridge check-config -c $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest

# Formatting, lint and strict typing (not part of `make test`).
lint: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/ruff format --check alertbridge tests
	$(BIN)/ruff check alertbridge tests
	$(BIN)/mypy alertbridge

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis
