# `make train` and `make test` set up everything they need on a fresh machine, then run.
# A second call finds the stamp files and starts within seconds.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=
WHEELHOUSE ?= wheelhouse
WITH_TORCH ?= 0

# System packages: the default data set and FFCV's build libraries (Debian names).
SYSTEM_PACKAGES := dataset-fashion-mnist pkg-config libturbojpeg0-dev libopencv-dev
SYSTEM_STAMP := $(VENV)/.system-packages
VENV_STAMP := $(VENV)/.installed

export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONUNBUFFERED := 1

.PHONY: help setup train test test-all lint format clean wheelhouse tables

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(SYSTEM_STAMP):
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else \
	    echo "Missing system packages:" $$missing; \
	    echo "Install them with: sudo apt-get install -y" $$missing; exit 1; fi; \
	  echo "Installing system packages:" $$missing; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

# FFCV's metadata asks for opencv-python while albumentations brings opencv-python-headless; both own
# cv2/, so FFCV goes in with --no-deps and its other needs come from the `ffcv` extra's list.
$(VENV_STAMP): pyproject.toml | $(SYSTEM_STAMP)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q $$($(PY) -c "import tomllib;d=tomllib.load(open('pyproject.toml','rb'));print(' '.join(r for r in d['project']['optional-dependencies']['ffcv'] if not r.startswith('ffcv')))")
	$(PY) -m pip install -q --no-deps --no-build-isolation 'ffcv==1.0.2'
	$(PY) -c "import cv2, ffcv, torch, lightning, albumentations; print('environment ready: torch', torch.__version__)"
	@touch $@

setup: $(VENV_STAMP) ## create .venv with the package, its extras and system packages

train: setup ## train the default model (EfficientNetV2-B0, progressive learning, Fashion-MNIST)
	$(PY) src/train.py $(ARGS)

test: setup ## run the test suite (slow tests excluded; see test-all)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: setup ## run every test, slow ones included
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup ## ruff check + format check + pre-commit hooks
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/pre-commit run --all-files

format: setup ## format the code
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Wheels for a machine without internet (a Kaggle kernel): effnetv2, its dependencies, the ffcv extra and
# FFCV built here with its system libraries inside (tools/wheelhouse.py; docs/finetune.md, Kaggle kernels).
wheelhouse: setup ## wheels for offline installs in WHEELHOUSE=wheelhouse (WITH_TORCH=1: torch too)
	$(PY) tools/wheelhouse.py $(WHEELHOUSE) $(if $(filter 1,$(WITH_TORCH)),--with-torch)

tables: setup ## rewrite the README/docs tables from the benchmarks' JSON results
	$(PY) tools/readme_tables.py

clean: ## remove outputs and caches (keeps .venv and data/)
	rm -rf outputs multirun wandb lightning_logs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
