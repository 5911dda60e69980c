# The two set-up commands of the README: `make demo` runs the main job, `make test` the tests.
# Each creates the virtual environment when it is missing and installs what the project needs,
# so nothing installed by hand is relied on. VENV=/some/dir uses another environment.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
# torch first, pinned, so that the package's bare `torch` requirement installs nothing more.
# pip takes it from where its configuration points: a machine whose pip offers a CPU wheel of
# 2.13.0 (a local wheel directory, a mirror) gets that; plain PyPI serves the CUDA build on Linux
# x86_64 (several GB). TORCH_INDEX_URL names the index to take torch from instead, e.g.
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu for PyTorch's own CPU builds.
TORCH ?= torch==2.13.0
TORCH_INDEX_URL ?=
EXTRAS ?= dev,ray,flower,oiafed,privacy
# FLWR=flwr==1.41.0 pins Flower's version (the flower extra allows 1.41 and 1.42; pip takes the newest
# otherwise): with VENV=another-dir, `make test-flower` runs the Flower tests on that version.
FLWR ?=
# With the oiafed extra: OiaFed's package without its dependencies (its callbacks need only the
# extra's loguru, omegaconf and toml; its runner's torchvision and torchaudio are not needed).
OIAFED ?= oiafed==0.2.3

BIN := $(VENV)/bin
STAMP := $(VENV)/.lightning-bridge-installed

.PHONY: help venv demo test test-flower lint typecheck bench clean

help:
	@echo "make demo    run a federation from examples/fed.yaml with the CLI (creates $(VENV) if missing)"
	@echo "make test    ruff, mypy, the import contracts, then the test suite"
	@echo "make lint    ruff, mypy and the import contracts only"
	@echo "make test-flower  the Flower tests only (FLWR=flwr==1.41.0 VENV=.venv-flwr141: on another Flower)"
	@echo "make bench   every benchmark in benchmarks/ (ratios against in-process baselines)"
	@echo "make venv    create or update $(VENV) only"
	@echo "make clean   remove $(VENV) and build outputs"

venv: $(STAMP)

# Re-installs when pyproject.toml (the dependencies) or this file (the recipe) changes.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-input $(if $(TORCH_INDEX_URL),--index-url '$(TORCH_INDEX_URL)') '$(TORCH)'
	$(if $(findstring oiafed,$(EXTRAS)),$(BIN)/python -m pip install --quiet --no-input --no-deps '$(OIAFED)')
	$(BIN)/python -m pip install --quiet --no-input -e '.[$(EXTRAS)]' $(if $(FLWR),'$(FLWR)')
	@touch $@

demo: $(STAMP)
	$(BIN)/python -m lightning_bridge.fed --config examples/fed.yaml

test: lint
	$(BIN)/python -m pytest -q

test-flower: $(STAMP)
	$(BIN)/python -c 'import flwr; print("flwr", flwr.__version__)'
	$(BIN)/python -m pytest -q -m flower

# ruff; mypy with pyproject's [tool.mypy]; the import contracts of [tool.importlinter]
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python "$$script"; done

clean:
	rm -rf $(VENV) .venv-flwr141 build *.egg-info runs/digits
