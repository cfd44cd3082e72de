"""A competition's own fold column (`data.fold_column`) and group K-fold (`data.group_column`) on generated
CSVs: fold k validates exactly its rows, and no group is ever in both train and val."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from effnetv2.data.datamodule import ImageDataModule
from effnetv2.data.splits import stratified_group_kfold
from effnetv2.errors import ConfigError, DataError
from fixtures_data import write_png

PATIENTS = 16


def write_csv(root: Path, rows: list[dict[str, str]]) -> Path:
    with (root / "train.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture
def competition(tmp_path: Path) -> tuple[Path, list[dict[str, str]]]:
    """48 rows (36 cat, 12 dog) of 16 patients, 3 images each; fold = patient % 4, so folds keep
    patients together and each fold has one dog patient."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        patient = i % PATIENTS
        write_png(tmp_path / "train" / f"img{i}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        label = "dog" if patient < 4 else "cat"
        rows.append({"id": f"img{i}", "label": label, "fold": str(patient % 4), "patient": f"p{patient}"})
    return write_csv(tmp_path, rows), rows


def csv_module(root: Path, **overrides) -> ImageDataModule:
    options = dict(
        source="csv", root=str(root), extension=".png", in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3,
        batch_size=8, num_workers=0, image_size=8, eval_size=8, crop_pct=1.0,
    )  # fmt: skip
    return ImageDataModule(**{**options, **overrides})


def role_ids(datamodule: ImageDataModule, role: str) -> set[str]:
    return {path.stem for path in datamodule.samples(role).paths}


def patients_of(rows: list[dict[str, str]], ids: set[str]) -> set[str]:
    return {row["patient"] for row in rows if row["id"] in ids}


# The data's own folds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fold", [0, 3])
def test_fold_k_of_the_column_validates_exactly_its_rows(competition, fold: int) -> None:
    root, rows = competition
    datamodule = csv_module(root, fold_column="fold", fold=fold)
    datamodule.setup("fit")
    assert role_ids(datamodule, "val") == {row["id"] for row in rows if row["fold"] == str(fold)}
    assert role_ids(datamodule, "train") == {row["id"] for row in rows if row["fold"] != str(fold)}
    assert datamodule.num_folds == 4  # from the column (val_predictions.csv records it for src/oof.py)


def test_fold_column_checks_num_folds_and_fold(competition) -> None:
    root, _ = competition
    csv_module(root, fold_column="fold", num_folds=4, fold=1).setup("fit")  # agrees with the column
    with pytest.raises(ConfigError, match="data.num_folds=5 but data.fold_column has 4 folds"):
        csv_module(root, fold_column="fold", num_folds=5, fold=1).setup("fit")
    with pytest.raises(ConfigError, match="data.fold=4 is out of range for the 4 folds"):
        csv_module(root, fold_column="fold", fold=4).setup("fit")


def test_bad_fold_columns_are_data_errors(competition) -> None:
    root, rows = competition
    with pytest.raises(DataError, match="no column.*'kfold'"):
        csv_module(root, fold_column="kfold").setup("fit")
    write_csv(root, [{**row, "fold": "A" if row["fold"] == "0" else row["fold"]} for row in rows])
    with pytest.raises(DataError, match="'fold' \\(data.fold_column\\).*line 2: 'A'"):
        csv_module(root, fold_column="fold").setup("fit")
    write_csv(root, [{**row, "fold": "2" if row["fold"] == "1" else row["fold"]} for row in rows])
    with pytest.raises(DataError, match=r"folds \[0, 2, 3\].*0..K-1"):
        csv_module(root, fold_column="fold").setup("fit")


def test_a_fold_column_that_splits_a_group_is_refused(competition) -> None:
    root, rows = competition
    csv_module(root, fold_column="fold", group_column="patient").setup("fit")  # folds keep patients together
    write_csv(root, [{**rows[0], "fold": "1"}, *rows[1:]])  # one image of patient p0 moves to fold 1
    with pytest.raises(DataError, match="groups of data.group_column have samples in both train and val"):
        csv_module(root, fold_column="fold", group_column="patient").setup("fit")


def test_fold_and_group_columns_need_a_csv(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="need data=csv"):
        ImageDataModule(source="image_folder", root=str(tmp_path), fold_column="fold")


# Group K-fold --------------------------------------------------------------------------------------------


def test_group_kfold_datamodule_never_shares_a_patient(competition) -> None:
    root, rows = competition
    validated: list[str] = []
    for fold in range(3):
        datamodule = csv_module(root, group_column="patient", num_folds=3, fold=fold)
        datamodule.setup("fit")
        train, val = role_ids(datamodule, "train"), role_ids(datamodule, "val")
        assert not patients_of(rows, train) & patients_of(rows, val)
        assert len(train) + len(val) == 48
        validated += val
    assert sorted(validated) == sorted(row["id"] for row in rows)  # every row validated exactly once


def test_group_val_fraction_keeps_patients_apart(competition) -> None:
    root, rows = competition
    datamodule = csv_module(root, group_column="patient", val_fraction=0.25)
    datamodule.setup("fit")
    train, val = role_ids(datamodule, "train"), role_ids(datamodule, "val")
    assert not patients_of(rows, train) & patients_of(rows, val)
    assert len(val) == 12  # 4 of 16 patients
    assert sorted(row["label"] for row in rows if row["id"] in val).count("dog") == 3  # stratified: 1 of 4


@pytest.fixture
def grouped() -> tuple[np.ndarray, np.ndarray]:
    """300 samples in 100 groups of 1-5 samples; each group has one class; classes 60% / 30% / 10%."""
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 6, size=100)
    group_class = rng.choice(3, size=100, p=[0.6, 0.3, 0.1])
    groups = np.repeat(np.arange(100), sizes)
    return group_class[groups], rng.permutation(100)[groups]  # group names unrelated to their order


@pytest.mark.parametrize("num_folds", [3, 5])
def test_group_kfold_is_a_group_partition_stratified_and_even(grouped, num_folds: int) -> None:
    labels, groups = grouped
    seen = np.zeros(len(labels), dtype=int)
    sizes = []
    for fold in range(num_folds):
        train, val = stratified_group_kfold(labels, groups, num_folds, fold, seed=0)
        assert not np.intersect1d(groups[train], groups[val]).size
        assert len(train) + len(val) == len(labels)
        seen[val] += 1
        sizes.append(len(val))
        for value, count in zip(*np.unique(labels, return_counts=True)):
            assert abs((labels[val] == value).sum() - count / num_folds) <= 3  # random group folds: ~28
    assert (seen == 1).all()
    assert max(sizes) - min(sizes) <= 5


def test_group_kfold_is_deterministic_per_seed(grouped) -> None:
    labels, groups = grouped
    first = stratified_group_kfold(labels, groups, 4, 1, seed=7)[1]
    assert np.array_equal(first, stratified_group_kfold(labels, groups, 4, 1, seed=7)[1])
    assert not np.array_equal(first, stratified_group_kfold(labels, groups, 4, 1, seed=8)[1])


def test_group_kfold_needs_a_group_per_fold() -> None:
    with pytest.raises(ConfigError, match="only 2 groups"):
        stratified_group_kfold(np.zeros(10), np.repeat(["a", "b"], 5), 3, 0, seed=0)
