"""Fixtures: compose the real Hydra configs with small, fast overrides; outputs go to tmp_path. What
the tests share besides fixtures lives in tests/helpers/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from effnetv2.config import register_resolvers
from helpers.configs import compose_config
from helpers.environment import apply_test_environment

apply_test_environment()
register_resolvers()

# Two cores in CI: `make test` runs two pytest workers (pytest-xdist) with one torch thread each; a
# serial run (no workers) gives its one process both threads.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="session", autouse=True)
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where runs of this test session keep betons and outputs (`paths.root_dir`, PROJECT_ROOT for
    entry points in subprocesses): a folder of this session, so tests never share state through the
    checkout's data/ (a beton left there by one test once made another see a test split) nor leave
    files in a user's data folder, and parallel workers never write the same beton."""
    root = tmp_path_factory.mktemp("project")
    os.environ["PROJECT_ROOT"] = str(root)
    return root


@pytest.fixture
def compose_train(tmp_path: Path):
    """`compose_train(overrides)` -> the train config, writing under tmp_path."""

    def _compose(overrides: list[str] | None = None, output_dir: Path | None = None) -> DictConfig:
        return compose_config("train", list(overrides or []), output_dir or tmp_path / "run")

    yield _compose
    GlobalHydra.instance().clear()
