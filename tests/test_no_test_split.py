"""Kaggle-style data has no labelled test split: training ends normally (exit 0, metrics.json, one log
line saying why the final test was skipped), and a K-fold multirun trains every fold."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fixtures_data import write_png
from helpers.runs import run_train
from helpers.tiny import TINY

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
    """train.csv with string labels, images in train/, unlabelled test/ images listed (shuffled) in
    sample_submission.csv: a competition's layout, with no labelled test split."""
    root = tmp_path / "competition"
    rows = make_images(root, nested=False)
    with (root / "train.csv").open("w", newline="") as file:
        csv.writer(file).writerows([("id", "label"), *rows])
    rng = np.random.default_rng(1)
    test_ids = [f"t{i}" for i in rng.permutation(6)]
    for i, image_id in enumerate(test_ids):
        write_png(root / "test" / f"{image_id}.png", np.full((30, 26, 3), 40 * i, dtype=np.uint8))
    (root / "sample_submission.csv").write_text("id,label\n" + "".join(f"{i},cat\n" for i in test_ids))
    return root


@pytest.fixture
def train_only_folder(tmp_path: Path) -> Path:
    """root/train/<class>/*.png and nothing else."""
    make_images(tmp_path / "images", nested=True)
    return tmp_path / "images"


SMALL = [*TINY, "data.subset=null", "data.image_size=32", "data.eval_size=32", "trainer.max_epochs=4"]


@pytest.mark.subprocess
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


@pytest.mark.subprocess
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


@pytest.mark.subprocess
def test_kaggle_loop_as_documented_without_test_split(kaggle_csv: Path, tmp_path: Path) -> None:
    """docs/finetune.md's K-fold -> OOF -> fold-ensemble TTA submission, tiny sizes added."""
    sweep = tmp_path / "sweep"
    result = run_train(
        "-m", "experiment=finetune", "data=csv", f"data.root={kaggle_csv}", "data.extension=.png",
        "data.num_folds=3", "data.fold=0,1,2", *SMALL, f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for fold in range(3):
        assert (sweep / str(fold) / "metrics.json").is_file(), f"fold {fold} did not finish"

    oof = run_train(f"run_dir={sweep}", f"hydra.run.dir={tmp_path / 'oof'}", script="src/oof.py")
    assert oof.returncode == 0, oof.stderr[-3000:]
    assert (sweep / "oof_predictions.csv").read_text().count("\n") == 1 + 24  # every training image once
    assert json.loads((sweep / "cv_score.json").read_text())["samples"] == 24

    submission = tmp_path / "submission.csv"
    predict = run_train(
        f"checkpoints=[{sweep}/*/checkpoints/epoch*.ckpt]",
        f"input.csv={kaggle_csv / 'sample_submission.csv'}", f"input.image_dir={kaggle_csv / 'test'}",
        "input.extension=.png", "tta.hflip=true",
        f"output.path={submission}", f"hydra.run.dir={tmp_path / 'predict'}", "num_workers=0",
        script="src/predict.py",
    )  # fmt: skip
    assert predict.returncode == 0, predict.stderr[-3000:]
    expected_ids = [
        line.split(",")[0] for line in (kaggle_csv / "sample_submission.csv").read_text().split()[1:]
    ]
    lines = submission.read_text().split()
    assert lines[0] == "id,label"
    assert [line.split(",")[0] for line in lines[1:]] == expected_ids
    assert {line.split(",")[1] for line in lines[1:]} <= {"cat", "dog", "fox"}


def test_a_test_beton_left_from_other_data_does_not_make_a_test_split(
    train_only_folder: Path, tmp_path: Path
) -> None:
    """A test .beton written for an earlier data.root stays in beton_dir; the train-only folder still
    has no test split (it used to fail at the end of training: 'image_folder_test.beton is missing or
    was written from other data')."""
    from effnetv2.data.datamodule import ImageDataModule

    beton_dir = tmp_path / "betons"
    beton_dir.mkdir()
    (beton_dir / "image_folder_test.beton").write_bytes(b"left from other data")
    datamodule = ImageDataModule(
        source="image_folder",
        root=str(train_only_folder),
        in_chans=3,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        loader="ffcv",
        beton_dir=str(beton_dir),
    )
    assert not datamodule.has_labeled_test_split()
