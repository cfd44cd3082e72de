"""Kaggle-style data has no labelled test split: training ends normally (exit 0, metrics.json, one log
line saying why the final test was skipped), and a K-fold multirun trains every fold."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fixtures_data import write_png
from train_runs import TINY, run_train

pytestmark = pytest.mark.timeout(600)

SKIPPED = "Final test skipped"


def make_images(root: Path, nested: bool, per_class: int = 8) -> list[tuple[str, str]]:
    """Colour PNGs of mixed sizes under root/train/ (in class folders if `nested`), one bright channel
    per class; returns the (id, label) rows."""
    rng = np.random.default_rng(0)
    rows = []
    for label, channel in (("cat", 0), ("dog", 1), ("fox", 2)):
        for i in range(per_class):
            height, width = rng.integers(20, 40, size=2)
            image = rng.integers(0, 80, size=(height, width, 3)).astype(np.uint8)
            image[..., channel] += 150
            folder = root / "train" / label if nested else root / "train"
            write_png(folder / f"{label}_{i}.png", image)
            rows.append((f"{label}_{i}", label))
    return rows


@pytest.fixture
def kaggle_csv(tmp_path: Path) -> Path:
    """train.csv with string labels, images in train/, a sample_submission.csv and no test labels."""
    root = tmp_path / "competition"
    rows = make_images(root, nested=False)
    with (root / "train.csv").open("w", newline="") as file:
        csv.writer(file).writerows([("id", "label"), *rows])
    (root / "sample_submission.csv").write_text("id,label\nx,cat\n")
    return root


@pytest.fixture
def train_only_folder(tmp_path: Path) -> Path:
    """root/train/<class>/*.png and nothing else."""
    make_images(tmp_path / "images", nested=True)
    return tmp_path / "images"


SMALL = [*TINY, "data.subset=null", "data.image_size=32", "data.eval_size=32", "trainer.max_epochs=4"]


def test_csv_without_test_split_trains_and_writes_metrics(kaggle_csv: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_train(
        "data=csv", f"data.root={kaggle_csv}", "data.extension=.png", *SMALL, f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert SKIPPED in log and "no labelled test split" in log
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "val/acc" in metrics and "test/acc" not in metrics


def test_image_folder_with_train_only_trains_and_writes_metrics(
    train_only_folder: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    result = run_train(
        "data=image_folder", f"data.root={train_only_folder}", *SMALL, f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert SKIPPED in (run_dir / "train.log").read_text()
    assert "val/acc" in json.loads((run_dir / "metrics.json").read_text())


def test_kfold_multirun_without_test_split_trains_every_fold(kaggle_csv: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_train(
        "-m", "data=csv", f"data.root={kaggle_csv}", "data.extension=.png",
        "data.num_folds=3", "data.fold=0,1,2", *SMALL, f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for fold in range(3):
        assert (sweep / str(fold) / "metrics.json").is_file(), f"fold {fold} did not finish"
