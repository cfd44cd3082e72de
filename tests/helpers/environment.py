"""The environment tests and the runs they start share: no update checks, W&B offline and quiet, and
data or optional packages that must be there under CI=true."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

from helpers.paths import TESTS

TEST_ENVIRONMENT = {"NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
# Two cores: a run in a subprocess (two of them under DDP) uses one torch thread unless it sets torch_threads.
RUN_THREADS = {"OMP_NUM_THREADS": "1"}


def apply_test_environment() -> None:
    """Set the test defaults in this process, keeping values the caller set."""
    for key, value in TEST_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def train_env(**extra: str) -> dict[str, str]:
    """The environment of an entry point run by a test: the test defaults, tests/ importable (probe
    callbacks), one torch thread."""
    env = {**os.environ, **TEST_ENVIRONMENT, **RUN_THREADS}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def on_ci() -> bool:
    return os.environ.get("CI") == "true"


def require(available: bool, what: str) -> None:
    """Skip a test whose data or optional dependency is missing, or fail it under CI=true.

    CI installs everything the suite needs, so there a missing piece is a broken set-up, not a reason
    to prove less. Tests that need hardware (CUDA) skip with pytest.skip, not with this."""
    if available:
        return
    if on_ci():
        pytest.fail(f"{what} (CI=true: the suite needs it; install it)", pytrace=False)
    pytest.skip(what, allow_module_level=True)


def require_module(name: str, what: str = "") -> ModuleType:
    """`import name`, or require() it: skip locally, fail under CI=true."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        require(False, f"{name} cannot be imported ({what or error})")
        raise  # unreachable: require raised
