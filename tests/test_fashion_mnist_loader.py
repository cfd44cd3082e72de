"""benchmarks/fashion_mnist_loader.py: the per-epoch rates come from the run's CSV log and its table
shows every run; end to end (three runs) with --quick in the slow tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.environment import require, train_env
from helpers.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import fashion_mnist_loader  # noqa: E402

from effnetv2.data.sources import FASHION_MNIST_ROOT  # noqa: E402


def test_epoch_rates_are_read_from_the_csv_log(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text(
        "epoch,step,train/images_per_sec,val/acc\n0,10,,0.5\n0,10,512.5,\n1,20,,0.6\n1,20,600.0,\n"
    )
    assert fashion_mnist_loader.epoch_rates(tmp_path) == [512.5, 600.0]


def test_the_table_shows_every_run() -> None:
    run = {"test_acc": 0.9, "val_acc": 0.91, "wall_seconds": 601.4, "epoch_images_per_sec": [700.0, 710.4],
           "load_average_before": "0.1, 0.2, 0.3", "load_average_after": "2.0, 1.9, 1.5"}  # fmt: skip
    runs = [{"loader": "torch", **run}, {"loader": "ffcv", **run, "wall_seconds": 540.0}]
    result = {
        "machine": "2 CPU cores",
        "commit": "abc1234",
        "overrides": [],
        "beton_seconds": 12.0,
        "runs": runs,
    }
    table = fashion_mnist_loader.markdown(result)
    assert "| torch | 10:01 | 700, 710 | 90.00% | 91.00% |" in table
    assert "| ffcv | 9:00 |" in table and "12 s" in table


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.timeout(900)
def test_quick_mode_runs_both_loaders(tmp_path: Path) -> None:
    require(
        Path(FASHION_MNIST_ROOT, "train-images-idx3-ubyte.gz").is_file(), "Fashion-MNIST is not installed"
    )
    script = "benchmarks/fashion_mnist_loader.py"
    command = [sys.executable, script, "--quick", "--out", str(tmp_path / "runs"), "--results", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, env=train_env(), capture_output=True, text=True, timeout=880)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads((tmp_path / "fashion_mnist_loader.json").read_text())["runs"]
    assert [run["loader"] for run in runs] == ["torch", "ffcv"]
    assert all(len(run["epoch_images_per_sec"]) == 2 and 0 <= run["test_acc"] <= 1 for run in runs)
