"""Sweeps judge progressive runs fairly: before its last stage a progressive run's val/acc at the eval size
is low by design (smaller images, weaker regularization), so no sweep may stop or prune a run on the
validations before that stage, and the score a search optimises is the val/acc after the last epoch."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import fields

import pytest
import yaml
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from omegaconf import DictConfig

from effnetv2.training.pipeline import train
from helpers.paths import ROOT
from helpers.tiny import TINY

SWEEP_FILE = ROOT / "sweeps" / "wandb_sweep.yaml"
OPTUNA_FILE = ROOT / "conf" / "hparams_search" / "optuna.yaml"


def fair_min_iter(compose: Callable[[list[str]], DictConfig], overrides: list[str]) -> int:
    """The first Hyperband band that judges only validations from the last stage on: the epochs before the
    last stage, plus one. W&B's engine judges band `b` on a run's logged value at 0-based index b
    (github.com/wandb/sweeps hyperband_stopping.py; wandb/client#1237): with one validation per epoch, the
    last stage's second epoch; read 1-based, its first. Both lie in the last stage."""
    cfg = compose(overrides)
    schedule = instantiate(cfg.schedule)
    return schedule.stage_epochs(schedule.num_stages - 1, cfg.trainer.max_epochs).start + 1


def sweep_overrides(sweep: dict) -> list[list[str]]:
    """The overrides of every schedule a W&B sweep can run: its fixed `command` overrides plus each
    `schedule` option (and each `schedule.num_stages` value when that is swept)."""
    fixed = [part for part in sweep["command"] if "=" in part and not part.startswith("${")]
    params = sweep["parameters"]
    stage_counts = params.get("schedule.num_stages", {}).get("values", [None])
    return [
        [*fixed, f"schedule={schedule}", *([f"schedule.num_stages={n}"] if n else [])]
        for schedule in params["schedule"]["values"]
        for n in stage_counts
    ]


def test_wandb_sweep_never_stops_a_run_before_its_last_stage(compose_train) -> None:
    """The sweep has no early termination, or a Hyperband whose first band comes after the last stage of
    every schedule it runs began (at the trainer.max_epochs its command fixes, else the config's)."""
    sweep = yaml.safe_load(SWEEP_FILE.read_text())
    assert "progressive" in sweep["parameters"]["schedule"]["values"]
    fair = max(fair_min_iter(compose_train, overrides) for overrides in sweep_overrides(sweep))
    early_terminate = sweep.get("early_terminate")
    if early_terminate is not None:
        assert early_terminate["type"] == "hyperband"
        assert early_terminate["min_iter"] >= fair, (
            f"hyperband would judge progressive runs before their last stage: min_iter must be >= {fair}"
        )


@pytest.mark.parametrize(
    ("max_epochs", "num_stages", "expected"), [(5, 4, 5), (20, 4, 16), (20, 2, 11), (10, 1, 1)]
)
def test_fair_min_iter_is_the_documented_formula(compose_train, max_epochs, num_stages, expected) -> None:
    """sweeps/wandb_sweep.yaml and docs/training.md give min_iter = ceil((S - 1) * E / S) + 1 and examples
    (5 at the default 5 epochs of 4 stages, 16 at 20 epochs): the schedule's own epoch split agrees."""
    overrides = [f"trainer.max_epochs={max_epochs}", f"schedule.num_stages={num_stages}"]
    assert fair_min_iter(compose_train, overrides) == expected
    assert math.ceil((num_stages - 1) * max_epochs / num_stages) + 1 == expected


def test_optuna_search_does_not_prune() -> None:
    """The Optuna sweeper runs every trial to its end and reads one value, the one src/train.py returns.
    Neither the config nor the sweeper plugin (hydra-optuna-sweeper) has a pruner; a plugin version that
    adds one must not prune before the last stage."""
    sweeper = yaml.safe_load(OPTUNA_FILE.read_text())["hydra"]["sweeper"]
    assert "pruner" not in sweeper
    assert "pruner" not in {field.name for field in fields(OptunaSweeperConf)}


@pytest.mark.timeout(300)
def test_the_search_score_is_the_last_epochs_val_acc_in_the_last_stage(compose_train, tmp_path) -> None:
    """What src/train.py returns to Optuna for a progressive run (W&B's sweep reads the same `val/acc`):
    the val/acc of its last epoch, which the last stage trained."""
    out = tmp_path / "run"
    cfg = compose_train([*TINY, "trainer.max_epochs=2", "schedule.num_stages=2"], output_dir=out)
    metrics = train(cfg)
    with open(out / "csv" / "metrics.csv") as file:
        validations = [row for row in csv.DictReader(file) if row.get("val/acc")]
    assert [int(row["epoch"]) for row in validations] == [0, 1]
    assert instantiate(cfg.schedule).stage_of_epoch(1, 2) == 1  # the last of 2 stages
    assert metrics["val/acc"] == pytest.approx(float(validations[-1]["val/acc"]))
