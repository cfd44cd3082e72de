"""Out-of-fold (OOF) predictions of a K-fold cross-validation and the CV score computed from them.

Every fold's run writes `val_predictions.csv` (`effnetv2.training.callbacks.val_predictions`): one row per
validation sample with its id, fold, the number of folds, the true class and one probability column
per class. Over K folds every sample is validated exactly once, so the rows of all folds together
are a prediction for every training sample by a model that never saw it.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from effnetv2.errors import DataError

log = logging.getLogger(__name__)

VAL_PREDICTIONS = "val_predictions.csv"
FIXED_COLUMNS = ("id", "fold", "num_folds", "target")
_LISTED = 5


@dataclass(frozen=True)
class Predictions:
    """Validation predictions of one or more folds; `targets` are class indices."""

    ids: list[str]
    folds: np.ndarray
    num_folds: np.ndarray
    targets: np.ndarray
    probabilities: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.ids)


def write_predictions(path: str | Path, predictions: Predictions) -> Path:
    """The CSV layout read by `read_predictions`: id, fold, num_folds, target (class name), probabilities."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = predictions.class_names
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*FIXED_COLUMNS, *names])
        for i, sample_id in enumerate(predictions.ids):
            writer.writerow(
                [
                    sample_id,
                    int(predictions.folds[i]),
                    int(predictions.num_folds[i]),
                    names[predictions.targets[i]],
                    *(f"{p:.6g}" for p in predictions.probabilities[i]),
                ]
            )
    return path


def read_predictions(path: str | Path) -> Predictions:
    path = Path(path)
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    if not rows or tuple(rows[0][: len(FIXED_COLUMNS)]) != FIXED_COLUMNS:
        raise DataError(
            f"{path} is not a predictions file: its header must start with {','.join(FIXED_COLUMNS)}"
        )
    class_names = rows[0][len(FIXED_COLUMNS) :]
    index = {name: i for i, name in enumerate(class_names)}
    body = rows[1:]
    unknown = sorted({row[3] for row in body} - set(index))
    if unknown:
        raise DataError(f"{path}: targets {unknown[:_LISTED]} are not among its class columns {class_names}")
    return Predictions(
        ids=[row[0] for row in body],
        folds=np.array([int(row[1]) for row in body], dtype=np.int64),
        num_folds=np.array([int(row[2]) for row in body], dtype=np.int64),
        targets=np.array([index[row[3]] for row in body], dtype=np.int64),
        probabilities=np.array(
            [[float(p) for p in row[len(FIXED_COLUMNS) :]] for row in body], dtype=np.float64
        ).reshape(len(body), len(class_names)),
        class_names=class_names,
    )


def _concatenate(parts: Sequence[Predictions]) -> Predictions:
    return Predictions(
        ids=[sample_id for part in parts for sample_id in part.ids],
        folds=np.concatenate([part.folds for part in parts]),
        num_folds=np.concatenate([part.num_folds for part in parts]),
        targets=np.concatenate([part.targets for part in parts]),
        probabilities=np.concatenate([part.probabilities for part in parts]),
        class_names=parts[0].class_names,
    )


def collect_out_of_fold(run_dir: str | Path) -> tuple[Predictions, list[Path]]:
    """All `val_predictions.csv` under `run_dir` (a K-fold multirun folder), checked and concatenated.

    Raises DataError when there are none, when folds disagree on the classes, or when a sample is
    validated twice (run_dir mixes runs: point it at one K-fold multirun).
    """
    run_dir = Path(run_dir)
    files = sorted(run_dir.rglob(VAL_PREDICTIONS))
    if not files:
        raise DataError(
            f"no {VAL_PREDICTIONS} under {run_dir}. Train the folds with the callback that writes them, e.g. "
            "python src/train.py -m experiment=finetune data.num_folds=5 data.fold=0,1,2,3,4, "
            "and pass that multirun folder as run_dir"
        )
    parts = [read_predictions(path) for path in files]
    for path, part in zip(files[1:], parts[1:]):
        if part.class_names != parts[0].class_names:
            raise DataError(f"{path} has classes {part.class_names}, {files[0]} has {parts[0].class_names}")
    seen: dict[str, Path] = {}
    duplicates = []
    for path, part in zip(files, parts):
        for sample_id in part.ids:
            if sample_id in seen:
                duplicates.append(f"{sample_id} in {seen[sample_id]} and {path}")
            seen[sample_id] = path
    if duplicates:
        raise DataError(
            f"{len(duplicates)} samples are validated more than once, e.g.\n  "
            + "\n  ".join(duplicates[:_LISTED])
            + f"\n{run_dir} mixes several runs or sweeps: point run_dir at the folder of one K-fold multirun"
        )
    return _concatenate(parts), files


def cv_scores(oof: Predictions) -> dict[str, float | int | list]:
    """Accuracy and log loss over all OOF rows, accuracy per fold, and whether every fold is present."""
    predicted = oof.probabilities.argmax(axis=1)
    correct = predicted == oof.targets
    target_probability = oof.probabilities[np.arange(len(oof)), oof.targets]
    folds = sorted(int(fold) for fold in np.unique(oof.folds))
    num_folds = int(oof.num_folds.max(initial=1))
    missing = sorted(set(range(num_folds)) - set(folds)) if num_folds > 1 else []
    if missing:
        log.warning(
            "folds %s of %d are missing: the CV score covers only part of the data", missing, num_folds
        )
    return {
        "accuracy": float(correct.mean()),
        "log_loss": float(-np.log(np.clip(target_probability, 1e-15, 1.0)).mean()),
        "samples": len(oof),
        "num_folds": num_folds,
        "folds": folds,
        "missing_folds": missing,
        "fold_accuracy": {str(fold): float(correct[oof.folds == fold].mean()) for fold in folds},
    }
