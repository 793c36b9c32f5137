# ser-mtl: `make demo` and `make test` work on a fresh machine with only Python >= 3.10.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Versions this repository was tested with (pyproject.toml keeps the ranges a cluster needs).
CONSTRAINTS := requirements/tested.txt
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help install demo test test-fast lint bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install ser-mtl with its test tools

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

demo: install  ## synthetic corpus -> pretrain (LibriSpeech part) -> fine-tune + test (IEMOCAP part), prints WA/UA
	PATH=$(CURDIR)/$(BIN):$$PATH bash scripts/demo.sh

test: install  ## the whole test suite (slow end-to-end and 2-process DDP tests included)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: install  ## the test suite without slow-marked tests
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: install  ## ruff over the package and tests
	$(BIN)/ruff check ser_mtl tests bench

bench: install  ## throughput/memory benchmarks (CPU; BENCH_ARGS="--device cuda" for a GPU); recorded in bench/RESULTS.md
	$(BIN)/python bench/bench_features.py
	$(BIN)/python bench/bench_training.py $(BENCH_ARGS)
	$(BIN)/python bench/bench_ssl_store.py --utterances 24

clean:  ## remove the demo outputs and caches (not the venv)
	rm -rf demo .cache .pytest_cache
