"""The default training pipeline end to end on tiny settings, and the CLI as Hydra users expect it."""

from __future__ import annotations

import json
import logging
import re
import subprocess

import pytest

from effnetv2.training.pipeline import train
from helpers.runs import run_train
from helpers.tiny import TINY


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return run_train(*args, timeout=timeout)


@pytest.mark.timeout(300)
def test_fast_dev_run_of_the_default_config(compose_train, tmp_path, capsys, caplog) -> None:
    cfg = compose_train(["debug=fast"])
    with caplog.at_level(logging.INFO):
        metrics = train(cfg)
    correct = metrics["test/acc"] * cfg.data.batch_size  # fast_dev_run tests one whole batch
    assert (
        correct == pytest.approx(round(correct), abs=1e-4) and metrics["test/acc"] <= metrics["test/acc_top5"]
    )
    assert "train/loss" in metrics
    printed = capsys.readouterr().out + caplog.text
    flops = re.search(r"Total FLOPs: (\S+)", printed)  # Lightning's summary; 0 without an example input
    assert flops is not None and flops.group(1) != "0", printed[-3000:]


@pytest.mark.timeout(300)
def test_tiny_training_writes_checkpoints_metrics_and_class_map(compose_train, tmp_path) -> None:
    out = tmp_path / "run"
    metrics = train(compose_train([*TINY, "trainer.max_epochs=2", "schedule.num_stages=2"], output_dir=out))
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((out / "metrics.json").read_text())["test/acc"] == pytest.approx(metrics["test/acc"])
    class_map = json.loads((out / "class_map.json").read_text())
    assert len(class_map["class_names"]) == 10
    rows = (out / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    for key in (
        "train/loss_epoch",
        "val/acc",
        "val/acc_top5",
        "test/acc",
        "train/image_size",
        "progressive/stage",
    ):
        assert key in header, f"{key} not logged"


@pytest.mark.subprocess
def test_cli_help_lists_groups() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for group in ("model:", "schedule:", "data:", "logger:"):
        assert group in result.stdout


@pytest.mark.subprocess
def test_cli_cfg_job_prints_config() -> None:
    result = run_cli("--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "name: v2_b0" in result.stdout


@pytest.mark.subprocess
def test_cli_wrong_model_lists_valid_choices() -> None:
    result = run_cli("model=nope")
    assert result.returncode != 0
    assert "v2_b0" in result.stderr and "v2_xl" in result.stderr
