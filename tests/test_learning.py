"""Training learns: a tiny run of src/train.py on the generated colour images (10 classes, told apart by
colour) reaches at least 3x chance validation accuracy; with a learning rate of 0 it stays at chance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.environment import train_env
from helpers.runs import run_train

pytest_plugins = ["fixtures_data"]

CHANCE = 1 / 10


def tiny_default_run(root: Path, run_dir: Path, *extra: str):
    """The default config (model, schedule, optimizer, callbacks, logger) shrunk in size only."""
    overrides = [
        "data=image_folder",
        f"data.root={root}",
        "data.image_size=16",
        "data.eval_size=16",
        "data.batch_size=8",
        "module.lr_batch_base=8",  # the default run's per-step learning rate, not 1/32 of it at batch 8
        "data.num_workers=0",
        "data.val_fraction=0.2",
        "trainer.max_epochs=5",
        "torch_threads=2",
        "seed=0",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    return run_train(*overrides, timeout=500, env=train_env())


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_a_tiny_run_learns_the_colour_classes(colour_folder: Path, tmp_path: Path) -> None:
    result = tiny_default_run(colour_folder, tmp_path / "run")
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val/acc"] >= 3 * CHANCE, metrics
