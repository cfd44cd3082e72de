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
GPU_WHEELS ?= .gpu_wheels

# System packages: the default data set and FFCV's build libraries (Debian names).
SYSTEM_PACKAGES := dataset-fashion-mnist pkg-config libturbojpeg0-dev libopencv-dev
SYSTEM_STAMP := $(VENV)/.system-packages
VENV_STAMP := $(VENV)/.installed

export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONUNBUFFERED := 1

.PHONY: help setup train test test-fast test-all lint format clean wheelhouse tables gpu-wheels gpu-check

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
	$(PY) -m pytest -n 2 --dist worksteal -m "not slow" $(PYTEST_ARGS)

test-fast: setup ## unit tests only: no slow tests, none that runs src/*.py or Python in a subprocess
	$(PY) -m pytest -m "not slow and not subprocess" $(PYTEST_ARGS)

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

# benchmarks/gpu_check.sh on a CUDA machine without internet (Python 3.12, a torch stack without hydra-core or
# albumentations): their Linux x86-64 wheels, ~43 MB (scipy 35 MB of it), carried with the repository.
# antlr4-python3-runtime 4.9.3 (omegaconf's) exists only as a source package: its pure-Python wheel is built.
GPU_PIP := $(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m pip
gpu-wheels: ## wheels benchmarks/gpu_check.sh installs offline, into GPU_WHEELS=.gpu_wheels (Python 3.12)
	$(GPU_PIP) download -q --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
	  --abi cp312 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux_2_28_x86_64 -r tools/gpu_requirements.txt -d $(GPU_WHEELS)
	$(GPU_PIP) wheel -q --no-deps -w $(GPU_WHEELS) antlr4-python3-runtime==4.9.3
	@du -sh $(GPU_WHEELS)

gpu-check: ## the GPU check (5 minutes on one CUDA GPU): benchmarks/gpu_check.json and .md
	benchmarks/gpu_check.sh $(ARGS)

clean: ## remove outputs and caches (keeps .venv and data/)
	rm -rf outputs multirun wandb lightning_logs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
