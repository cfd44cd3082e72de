#!/usr/bin/env bash
# Runs benchmarks/gpu_check.py on a GPU machine without internet, from a copy of the repository.
# What src/train.py needs beyond the machine's torch stack (hydra-core, omegaconf, albumentations and
# their needs, tools/gpu_requirements.txt) comes from the wheels `make gpu-wheels` put in .gpu_wheels/
# (or GPU_WHEELS=<folder>): installed into .gpu_venv, a venv that sees the system's packages, so pip adds
# only what is missing there. Without the venv module, pip installs every carried wheel into .gpu_site.
#
#     benchmarks/gpu_check.sh                  # writes benchmarks/gpu_check.json and .md
#     benchmarks/gpu_check.sh --out /some/dir  # arguments go to gpu_check.py
#     PYTHON=/opt/conda/bin/python benchmarks/gpu_check.sh   # the interpreter with torch (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${GPU_WHEELS:-.gpu_wheels}
export NO_ALBUMENTATIONS_UPDATE=1 WANDB_MODE=disabled

if ! "$PYTHON" -c "import torch, lightning, timm" 2>/dev/null; then
  echo "gpu_check.sh: $PYTHON cannot import torch, lightning and timm; set PYTHON=<the python that has them>" >&2
  exit 1
fi

if ! "$PYTHON" -c "import hydra, omegaconf, albumentations" 2>/dev/null; then
  if [ ! -d "$WHEELS" ]; then
    echo "gpu_check.sh: hydra-core/albumentations are missing and there is no wheel folder $WHEELS;" \
         "run 'make gpu-wheels' where PyPI is reachable and bring $WHEELS along" >&2
    exit 1
  fi
  if "$PYTHON" -m venv --system-site-packages .gpu_venv 2>/dev/null; then
    .gpu_venv/bin/python -m pip install -q --no-index --find-links "$WHEELS" hydra-core omegaconf albumentations
    PYTHON=.gpu_venv/bin/python
  else
    "$PYTHON" -m pip install -q --no-index --no-deps --target .gpu_site "$WHEELS"/*.whl
    export PYTHONPATH=$PWD/.gpu_site${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
