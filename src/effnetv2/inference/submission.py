"""Kaggle submission files: `id,label` (the predicted class name) or `id,<class 1>,<class 2>,...`
(one probability column per class, in the model's class order)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from effnetv2.errors import ConfigError

FORMATS = ("label", "probabilities")


def write_submission(
    path: str | Path,
    ids: Sequence[str],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    format: str = "label",
    id_column: str = "id",
    label_column: str = "label",
) -> Path:
    """One row per id, in the order given."""
    if format not in FORMATS:
        raise ConfigError(f"output.format={format!r} is not one of {FORMATS}")
    if len(ids) != len(probabilities):
        raise ValueError(f"{len(ids)} ids but {len(probabilities)} rows of probabilities")
    if format == "probabilities" and id_column in class_names:
        raise ConfigError(
            f"output.id_column={id_column!r} is also a class name; choose another id column name"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        if format == "label":
            writer.writerow([id_column, label_column])
            predicted = probabilities.argmax(axis=1)
            writer.writerows((image_id, class_names[index]) for image_id, index in zip(ids, predicted))
        else:
            writer.writerow([id_column, *class_names])
            writer.writerows(
                [image_id, *(f"{p:.6g}" for p in row)] for image_id, row in zip(ids, probabilities)
            )
    return path
