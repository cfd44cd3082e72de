"""Data sources: list a data set's samples per split and know its class names.

A source reads as little as it can: Fashion-MNIST loads its IDX files into memory (55 MB), the
folder and CSV sources list files and check each file's header. Problems with the input (empty
class folders, missing labels or files, unreadable images, test labels unseen in training) raise
DataError naming them, or with on_bad_image="skip" are dropped and counted in the log.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from effnetv2.data.decode import IMAGE_EXTENSIONS, check_image_file
from effnetv2.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
BAD_IMAGE_POLICIES = ("error", "skip")
UNLABELED = -1
_LISTED_PROBLEMS = 10


@dataclass(frozen=True)
class SampleSet:
    """The samples of one split: in-memory uint8 images (N x H x W x C) or file paths, and labels.

    Labels are class indices, or UNLABELED (-1) for an unlabeled test set. A CSV source may add each
    sample's fold (data.fold_column) and group (data.group_column), which the split plan honours.
    """

    labels: np.ndarray
    images: np.ndarray | None = None
    paths: tuple[Path, ...] | None = None
    folds: np.ndarray | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.images is None) == (self.paths is None):
            raise ValueError("a SampleSet holds either images or paths")
        if len(self.labels) != len(self.images if self.images is not None else self.paths):
            raise ValueError("a SampleSet needs one label per sample")
        columns = [column for column in (self.folds, self.groups) if column is not None]
        if any(len(column) != len(self.labels) for column in columns):
            raise ValueError("a SampleSet needs one fold and group per sample")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def is_labeled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())

    def subset(self, indices: np.ndarray) -> SampleSet:
        indices = np.asarray(indices, dtype=np.int64)
        return SampleSet(
            labels=self.labels[indices],
            images=self.images[indices] if self.images is not None else None,
            paths=tuple(self.paths[i] for i in indices) if self.paths is not None else None,
            folds=self.folds[indices] if self.folds is not None else None,
            groups=self.groups[indices] if self.groups is not None else None,
        )

    def name(self, index: int) -> str:
        """What to call sample `index` in messages and prediction files: its path or its position."""
        return str(self.paths[index]) if self.paths is not None else f"#{index}"


def settle_bad_inputs(problems: list[tuple[str, str]], on_bad_image: str, what: str) -> None:
    """Raise DataError listing `problems` ((item, reason) pairs), or log them when skipping."""
    if not problems:
        return
    listing = "\n".join(f"  {item}: {reason}" for item, reason in problems[:_LISTED_PROBLEMS])
    if len(problems) > _LISTED_PROBLEMS:
        listing += f"\n  ... and {len(problems) - _LISTED_PROBLEMS} more"
    if on_bad_image == "error":
        raise DataError(
            f"{len(problems)} bad {what}:\n{listing}\n"
            "Fix or remove them, or set data.on_bad_image=skip to skip them (they are counted in the log)."
        )
    log.warning("skipped %d bad %s:\n%s", len(problems), what, listing)


def check_policy(on_bad_image: str) -> str:
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ConfigError(f"data.on_bad_image={on_bad_image!r} is not one of {BAD_IMAGE_POLICIES}")
    return on_bad_image


class DataSource(ABC):
    """Lists samples per split ("train", "val", "test") and names the classes."""

    kind: str
    root: Path

    @property
    @abstractmethod
    def class_names(self) -> list[str]:
        """Class names; index i is label i. Cheap: no image files are opened."""

    @abstractmethod
    def load(self, split: str) -> SampleSet | None:
        """The samples of `split`, or None when the source has no such split."""

    def describe(self) -> dict[str, str]:
        """What identifies this data set (stored beside derived files such as .beton)."""
        return {"source": self.kind, "root": str(self.root.resolve())}


# Fashion-MNIST ---------------------------------------------------------------------------------

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format, optionally gzipped) of unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read IDX file {path}: {error}") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, file holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


class FashionMNIST(DataSource):
    """Fashion-MNIST (Xiao et al. 2017): 60,000 train / 10,000 test 28x28 grayscale images in memory."""

    kind = "fashion_mnist"

    def __init__(self, root: str | Path = FASHION_MNIST_ROOT) -> None:
        self.root = Path(root)

    @property
    def class_names(self) -> list[str]:
        return list(FASHION_MNIST_CLASSES)

    def _file(self, stem: str) -> Path:
        for name in (f"{stem}.gz", stem):
            if (self.root / name).is_file():
                return self.root / name
        raise DataError(
            f"Fashion-MNIST file {self.root / stem}.gz is missing. Install the data set with "
            "`sudo apt-get install dataset-fashion-mnist` (Debian package dataset-fashion-mnist), "
            "or point data.root=... at a folder holding the four IDX files."
        )

    def load(self, split: str) -> SampleSet | None:
        if split not in _FASHION_MNIST_FILES:
            return None
        image_stem, label_stem = _FASHION_MNIST_FILES[split]
        images = read_idx(self._file(image_stem))
        labels = read_idx(self._file(label_stem)).astype(np.int64)
        if images.ndim != 3 or len(images) != len(labels):
            raise DataError(
                f"Fashion-MNIST {split} files in {self.root} disagree: {images.shape} vs {labels.shape}"
            )
        if labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"Fashion-MNIST {split} labels in {self.root} go beyond the 10 classes")
        return SampleSet(labels=labels, images=images[:, :, :, None])


# Image folders ---------------------------------------------------------------------------------


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _image_files(folder: Path) -> tuple[list[Path], int]:
    """Image files under `folder` (recursive, sorted) and the count of other files ignored."""
    images, ignored = [], 0
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        subdirectories.sort()
        for name in sorted(files):
            if name.startswith("."):
                continue
            if _is_image_name(Path(name)):
                images.append(Path(directory) / name)
            else:
                ignored += 1
    return images, ignored


def _has_image(folder: Path) -> bool:
    return any(
        _is_image_name(Path(name)) for _, _, files in os.walk(folder, followlinks=True) for name in files
    )


def _checked_files(files: list[tuple[Path, int]], on_bad_image: str, what: str) -> np.ndarray:
    """Positions in `files` of the (path, label) pairs whose header check passes; report the others."""
    kept, problems = [], []
    for position, (path, _) in enumerate(files):
        reason = check_image_file(path)
        if reason is None:
            kept.append(position)
        else:
            problems.append((str(path), reason))
    settle_bad_inputs(problems, on_bad_image, what)
    return np.asarray(kept, dtype=np.int64)


def _labeled_paths(files: list[tuple[Path, int]], kept: np.ndarray, **columns: np.ndarray) -> SampleSet:
    """The kept files as a SampleSet; `columns` (folds, groups) hold one value per file."""
    return SampleSet(
        labels=np.asarray([files[i][1] for i in kept], dtype=np.int64),
        paths=tuple(files[i][0] for i in kept),
        **{name: values[kept] for name, values in columns.items()},
    )


class ImageFolder(DataSource):
    """`root/train/<class>/*` (required), `root/val/<class>/*` and `root/test/<class>/*` (optional)."""

    kind = "image_folder"

    def __init__(self, root: str | Path, on_bad_image: str = "error") -> None:
        self.root = Path(root)
        self.on_bad_image = check_policy(on_bad_image)

    def _class_folders(self, split: str) -> list[Path]:
        folder = self.root / split
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    @cached_property
    def _class_names(self) -> list[str]:
        train = self.root / "train"
        if not train.is_dir():
            raise DataError(
                f"image folder {train} does not exist: expected root/train/<class>/<image> "
                f"(optional root/val, root/test); set data.root=... to the folder holding train/"
            )
        folders = self._class_folders("train")
        empty = [folder for folder in folders if not _has_image(folder)]
        settle_bad_inputs(
            [(str(f), "class folder without images") for f in empty], self.on_bad_image, "class folders"
        )
        names = [folder.name for folder in folders if folder not in empty]
        if not names:
            raise DataError(f"no class folders with images in {train}: expected train/<class>/<image>")
        return names

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def load(self, split: str) -> SampleSet | None:
        if split not in SPLITS:
            return None
        index = {name: i for i, name in enumerate(self._class_names)}  # raises without root/train
        folder = self.root / split
        if not folder.is_dir():
            return None
        files, unseen, ignored = [], [], 0
        for class_folder in self._class_folders(split):
            images, skipped_names = _image_files(class_folder)
            ignored += skipped_names
            if class_folder.name not in index:
                unseen.extend(
                    (str(path), f"class {class_folder.name!r} is not a training class") for path in images
                )
                continue
            files.extend((path, index[class_folder.name]) for path in images)
        if ignored:
            log.info("%s: ignored %d files without an image extension", folder, ignored)
        settle_bad_inputs(unseen, self.on_bad_image, f"{split} images of classes unseen in training")
        kept = _checked_files(files, self.on_bad_image, f"image files in {folder}")
        if not len(kept):
            raise DataError(f"no readable images in {folder}")
        return _labeled_paths(files, kept)


def list_images(folder: str | Path) -> SampleSet:
    """Every image file under `folder` as an unlabeled sample set (e.g. for prediction)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    images, _ = _image_files(folder)
    files = [(path, UNLABELED) for path in images]
    kept = _checked_files(files, "skip", f"image files in {folder}")
    if not len(kept):
        raise DataError(f"no readable images in {folder}")
    return _labeled_paths(files, kept)


# CSV (Kaggle layout) ---------------------------------------------------------------------------


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
        kept = _checked_files(files, self.on_bad_image, f"image files listed in {csv_name}")
        if not len(kept):
            raise DataError(f"no readable images listed in {self.root / csv_name}")
        return _labeled_paths(files, kept, **(self._split_columns(listed) if split == "train" else {}))

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
                    f"{len(bad)} rows have none, e.g. {', '.join(bad[:_LISTED_PROBLEMS])}"
                )
            columns["folds"] = np.array([int(value) for _, value in values], dtype=np.int64)
        if self.group_column:
            values = [(line, (row[self.group_column] or "").strip()) for line, row in listed]
            empty = [line for line, value in values if not value]
            if empty:
                raise DataError(
                    f"column {self.group_column!r} (data.group_column) {where} is empty on {len(empty)} "
                    f"rows, e.g. lines {empty[:_LISTED_PROBLEMS]}; give every row a group"
                )
            columns["groups"] = np.array([value for _, value in values])
        return columns


def build_source(
    source: str,
    root: str | Path,
    on_bad_image: str = "error",
    **csv_options: str | None,
) -> DataSource:
    """The source named by `data.source` (fashion_mnist | image_folder | csv)."""
    if source == "fashion_mnist":
        return FashionMNIST(root)
    if source == "image_folder":
        return ImageFolder(root, on_bad_image=on_bad_image)
    if source == "csv":
        return CsvSource(root, on_bad_image=on_bad_image, **csv_options)
    raise ConfigError(f"data.source={source!r} is not one of fashion_mnist, image_folder, csv")
