"""Shared fixtures: compose the real Hydra configs with small, fast overrides; outputs go to tmp_path."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from effnetv2.config import register_resolvers

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

register_resolvers()

# Two cores in CI: tests run serially with at most two torch threads.
torch.set_num_threads(2)

# Overrides that make a training run take seconds on a CPU.
TINY_TRAINING = [
    "data.subset=64",
    "data.batch_size=16",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.progress_bar=null",
    # two warm-up steps barely move a zero-initialised classifier, and tests compare outputs across
    # sizes, checkpoints and ranks: the official uniform init makes the outputs depend on the input
    "model.classifier_init=uniform",
]


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a config as the entry point would, with hydra.runtime.output_dir set to output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
        cfg.paths.root_dir = str(ROOT)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture
def compose_train(tmp_path: Path):
    """`compose_train(overrides)` -> the train config, writing under tmp_path."""

    def _compose(overrides: list[str] | None = None, output_dir: Path | None = None) -> DictConfig:
        return compose_config("train", list(overrides or []), output_dir or tmp_path / "run")

    yield _compose
    GlobalHydra.instance().clear()


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
