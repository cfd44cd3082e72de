"""The images to predict and the id each gets in the submission: a folder, or a CSV listing ids
(Kaggle's sample_submission.csv or test.csv) plus the folder holding their images."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from effnetv2.data.sources import UNLABELED, SampleSet, list_images
from effnetv2.errors import ConfigError, DataError

_LISTED_PROBLEMS = 10


@dataclass(frozen=True)
class PredictionInputs:
    """Image files in submission order, with the id each row of the submission gets."""

    ids: list[str]
    samples: SampleSet


def folder_inputs(folder: str | Path, strip_extension: bool = False) -> PredictionInputs:
    """Every image under `folder` (recursive, sorted); ids are paths relative to it, e.g. `a/b.jpg`."""
    folder = Path(folder)
    samples = list_images(folder)
    relative = [path.relative_to(folder) for path in samples.paths]
    ids = [(path.with_suffix("") if strip_extension else path).as_posix() for path in relative]
    return PredictionInputs(ids=ids, samples=samples)


def csv_inputs(
    csv_path: str | Path, image_dir: str | Path | None = None, id_column: str = "id", extension: str = ""
) -> PredictionInputs:
    """The ids of a CSV in its row order; the image of id X is image_dir/X<extension> (the extension is
    added only when X lacks it). image_dir defaults to the CSV's folder. Every id must have an image:
    a submission with rows missing is invalid."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"CSV file {csv_path} does not exist (input.csv)")
    image_dir = Path(image_dir) if image_dir is not None else csv_path.parent
    with csv_path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        if id_column not in (reader.fieldnames or []):
            raise ConfigError(
                f"{csv_path} has no column {id_column!r} (its columns: {reader.fieldnames}); "
                "set input.id_column"
            )
        ids = [(row[id_column] or "").strip() for row in reader]
    paths, missing = [], []
    for image_id in ids:
        name = (
            image_id
            if not extension or image_id.lower().endswith(extension.lower())
            else image_id + extension
        )
        path = image_dir / name
        (paths if image_id and path.is_file() else missing).append(path)
    if missing:
        listed = "\n  ".join(str(path) for path in missing[:_LISTED_PROBLEMS])
        raise DataError(
            f"{len(missing)} of {len(ids)} ids in {csv_path} have no image file:\n  {listed}\n"
            "Set input.image_dir to the folder holding the images and input.extension (e.g. .jpg)"
        )
    labels = np.full(len(paths), UNLABELED, dtype=np.int64)
    return PredictionInputs(ids=ids, samples=SampleSet(labels=labels, paths=tuple(paths)))
