"""The CSV source (Kaggle layout): a CSV of (image id or path, label) rows plus an image folder."""

from __future__ import annotations

import csv
from functools import cached_property
from pathlib import Path

import numpy as np

from effnetv2.data.samples import (
    LISTED_PROBLEMS,
    UNLABELED,
    DataSource,
    SampleSet,
    check_policy,
    checked_files,
    labeled_paths,
    settle_bad_inputs,
)
from effnetv2.errors import DataError


def _sorted_labels(values: set[str]) -> list[str]:
    """Class order: numeric when every label is an integer, else alphabetical."""
    if all(value.lstrip("-").isdigit() for value in values):
        return sorted(values, key=int)
    return sorted(values)


class CsvSource(DataSource):
    """A CSV of (image id or path, label) rows plus an image folder, as Kaggle ships them.

    The image of a row is `root/image_dir/<id><extension>` (the extension is added only when the
    id lacks it). An optional test CSV may carry labels (evaluation) or not (prediction only).
    The train CSV may also give each row a fold (`fold_column`, integers 0..K-1) and a group
    (`group_column`, e.g. a patient id: samples of a group must not be split between train and val).
    """

    kind = "csv"

    def __init__(
        self,
        root: str | Path,
        train_csv: str = "train.csv",
        image_dir: str = "train",
        id_column: str = "id",
        label_column: str = "label",
        extension: str = "",
        test_csv: str | None = None,
        test_image_dir: str = "test",
        fold_column: str | None = None,
        group_column: str | None = None,
        on_bad_image: str = "error",
    ) -> None:
        self.root = Path(root)
        self.train_csv = train_csv
        self.image_dir = image_dir
        self.id_column = id_column
        self.label_column = label_column
        self.extension = extension
        self.test_csv = test_csv
        self.test_image_dir = test_image_dir
        self.fold_column = fold_column
        self.group_column = group_column
        self.on_bad_image = check_policy(on_bad_image)

    def _read(self, name: str, train: bool) -> tuple[list[dict[str, str]], bool]:
        """Rows of a CSV under root and whether it has the label column (required in the train CSV,
        with the fold and group columns when set)."""
        path = self.root / name
        if not path.is_file():
            raise DataError(
                f"CSV file {path} does not exist; set data.root=... or the CSV name (data.train_csv)"
            )
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            columns = reader.fieldnames or []
            rows = list(reader)
        required = [self.id_column]
        if train:
            required += [c for c in (self.label_column, self.fold_column, self.group_column) if c]
        missing = [c for c in required if c not in columns]
        if missing:
            raise DataError(
                f"CSV file {path} has no column(s) {missing}; its columns are {columns}. Set data.id_column "
                "/ data.label_column (data.fold_column / data.group_column) to the right names."
            )
        return rows, self.label_column in columns

    def _image_path(self, image_dir: str, image_id: str) -> Path:
        name = image_id
        if self.extension and not image_id.lower().endswith(self.extension.lower()):
            name = image_id + self.extension
        return self.root / image_dir / name

    @cached_property
    def _class_names(self) -> list[str]:
        rows, _ = self._read(self.train_csv, train=True)
        values = {(row[self.label_column] or "").strip() for row in rows} - {""}
        if not values:
            raise DataError(
                f"CSV file {self.root / self.train_csv} has no labels in column {self.label_column!r}"
            )
        return _sorted_labels(values)

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def load(self, split: str) -> SampleSet | None:
        if split == "train":
            csv_name, image_dir = self.train_csv, self.image_dir
        elif split == "test" and self.test_csv:
            csv_name, image_dir = self.test_csv, self.test_image_dir
        else:
            return None
        rows, labeled = self._read(csv_name, train=split == "train")
        index = {name: i for i, name in enumerate(self._class_names)}
        files, listed, problems = [], [], []
        for line, row in enumerate(rows, start=2):  # line 1 is the header
            image_id = (row[self.id_column] or "").strip()
            label = (row[self.label_column] or "").strip() if labeled else None
            where = f"{csv_name} line {line}"
            if not image_id:
                problems.append((where, f"empty {self.id_column!r}"))
            elif labeled and not label:
                problems.append((where, f"label missing for {image_id!r}"))
            elif labeled and label not in index:
                problems.append((where, f"label {label!r} of {image_id!r} is not a training class"))
            elif not (path := self._image_path(image_dir, image_id)).is_file():
                problems.append((where, f"image {path} does not exist"))
            else:
                files.append((path, index[label] if labeled else UNLABELED))
                listed.append((line, row))
        settle_bad_inputs(problems, self.on_bad_image, f"rows in {self.root / csv_name}")
        kept = checked_files(files, self.on_bad_image, f"image files listed in {csv_name}")
        if not len(kept):
            raise DataError(f"no readable images listed in {self.root / csv_name}")
        return labeled_paths(files, kept, **(self._split_columns(listed) if split == "train" else {}))

    def _split_columns(self, listed: list[tuple[int, dict[str, str]]]) -> dict[str, np.ndarray]:
        """Folds and groups of the listed (line, row) pairs of the train CSV, when their columns are set."""
        columns = {}
        where = f"of {self.root / self.train_csv}"
        if self.fold_column:
            values = [(line, (row[self.fold_column] or "").strip()) for line, row in listed]
            bad = [f"line {line}: {value!r}" for line, value in values if not value.isdigit()]
            if bad:
                raise DataError(
                    f"column {self.fold_column!r} (data.fold_column) {where} needs fold numbers 0, 1, ...; "
                    f"{len(bad)} rows have none, e.g. {', '.join(bad[:LISTED_PROBLEMS])}"
                )
            columns["folds"] = np.array([int(value) for _, value in values], dtype=np.int64)
        if self.group_column:
            values = [(line, (row[self.group_column] or "").strip()) for line, row in listed]
            empty = [line for line, value in values if not value]
            if empty:
                raise DataError(
                    f"column {self.group_column!r} (data.group_column) {where} is empty on {len(empty)} "
                    f"rows, e.g. lines {empty[:LISTED_PROBLEMS]}; give every row a group"
                )
            columns["groups"] = np.array([value for _, value in values])
        return columns
