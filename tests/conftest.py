"""Fixtures: compose the real Hydra configs with small, fast overrides; outputs go to tmp_path. What
the tests share besides fixtures lives in tests/helpers/."""

from __future__ import annotations

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

# Two cores in CI: tests run serially with at most two torch threads.
torch.set_num_threads(2)


@pytest.fixture
def compose_train(tmp_path: Path):
    """`compose_train(overrides)` -> the train config, writing under tmp_path."""

    def _compose(overrides: list[str] | None = None, output_dir: Path | None = None) -> DictConfig:
        return compose_config("train", list(overrides or []), output_dir or tmp_path / "run")

    yield _compose
    GlobalHydra.instance().clear()
