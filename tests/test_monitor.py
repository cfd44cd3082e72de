"""`module.monitor` picks the best checkpoint (ModelCheckpoint's monitor and mode), which the final test
and the out-of-fold predictions use; macro-F1 is always logged, macro AUROC only when monitored."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from effnetv2.config import MONITOR_MODES
from effnetv2.errors import ConfigError
from effnetv2.training.module import ClassificationModule
from effnetv2.training.pipeline import train
from helpers.configs import compose_config
from helpers.runs import run_train
from helpers.tiny import TINY

MODEL = {"_target_": "effnetv2.models.create_model", "name": "v2_b0"}


@pytest.mark.parametrize(("monitor", "mode"), [("val/acc", "max"), ("val/loss", "min"), ("val/auroc", "max")])
def test_checkpoint_callback_follows_the_monitor(compose_train, monitor: str, mode: str) -> None:
    cfg = compose_train([f"module.monitor={monitor}"])
    assert cfg.callbacks.model_checkpoint.monitor == monitor
    assert cfg.callbacks.model_checkpoint.mode == mode


def test_an_unknown_monitor_is_refused_listing_the_choices() -> None:
    with pytest.raises(ConfigError, match="module.monitor='val/accuracy'") as error:
        ClassificationModule(
            model=MODEL, optimizer={}, lr_scheduler={}, num_classes=3, monitor="val/accuracy"
        )
    assert all(metric in str(error.value) for metric in MONITOR_MODES)


@pytest.mark.subprocess
@pytest.mark.timeout(900)
def test_an_unknown_monitor_stops_train_py_with_one_line(tmp_path: Path) -> None:
    result = run_train("module.monitor=val/f1", *TINY, f"hydra.run.dir={tmp_path}", timeout=840)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "module.monitor='val/f1'" in lines[0] and "val/f1_macro" in lines[0]


def fit(tmp_path: Path, monitor: str) -> tuple[dict[str, float], Path]:
    """Three one-step epochs of v2_b0 and the final test."""
    overrides = [
        *TINY, "schedule=fixed", "trainer.max_epochs=3", "trainer.limit_train_batches=1",
        f"module.monitor={monitor}",
    ]  # fmt: skip
    metrics = train(compose_config("train", overrides, tmp_path))
    return metrics, tmp_path


def epoch_metrics(run_dir: Path, name: str) -> dict[int, float]:
    with (run_dir / "csv" / "metrics.csv").open() as file:
        return {int(row["epoch"]): float(row[name]) for row in csv.DictReader(file) if row.get(name)}


@pytest.mark.timeout(900)
def test_val_loss_picks_the_lowest_loss_checkpoint_and_logs_f1(tmp_path: Path) -> None:
    metrics, run_dir = fit(tmp_path, "val/loss")
    losses = epoch_metrics(run_dir, "val/loss")
    assert len(losses) == 3
    (best,) = run_dir.glob("checkpoints/epoch*.ckpt")  # save_top_k=1
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert state["monitor"] == "val/loss"
    assert float(state["best_model_score"]) == pytest.approx(min(losses.values()), rel=1e-5)
    assert checkpoint["epoch"] == min(losses, key=losses.get)
    assert 0.0 <= metrics["val/f1_macro"] <= 1.0 and 0.0 <= metrics["test/f1_macro"] <= 1.0
    assert "val/auroc" not in metrics  # not monitored: not computed


@pytest.mark.timeout(900)
def test_val_auroc_is_computed_when_monitored(tmp_path: Path) -> None:
    metrics, run_dir = fit(tmp_path, "val/auroc")
    aurocs = epoch_metrics(run_dir, "val/auroc")
    (best,) = run_dir.glob("checkpoints/epoch*.ckpt")
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert state["monitor"] == "val/auroc"
    assert checkpoint["epoch"] == max(aurocs, key=aurocs.get)
    assert 0.0 <= metrics["test/auroc"] <= 1.0
