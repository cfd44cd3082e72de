"""Data sources: list a data set's samples per split and know its class names.

A source reads as little as it can: Fashion-MNIST loads its IDX files into memory (55 MB), the
folder and CSV sources list files and check each file's header. Problems with the input (empty
class folders, missing labels or files, unreadable images, test labels unseen in training) raise
DataError naming them, or with on_bad_image="skip" are dropped and counted in the log.
"""

from __future__ import annotations

import gzip
import inspect
import logging
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import get_class, instantiate

from effnetv2.data.csv_source import CsvSource
from effnetv2.data.decode import IMAGE_EXTENSIONS
from effnetv2.data.samples import (
    UNLABELED,
    DataSource,
    SampleSet,
    check_policy,
    checked_files,
    labeled_paths,
    settle_bad_inputs,
)
from effnetv2.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


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

    def __init__(self, root: str | Path = FASHION_MNIST_ROOT, on_bad_image: str = "error") -> None:
        self.root = Path(root)
        self.on_bad_image = check_policy(on_bad_image)  # in-memory images decode: for the loaders

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
        kept = checked_files(files, self.on_bad_image, f"image files in {folder}")
        if not len(kept):
            raise DataError(f"no readable images in {folder}")
        return labeled_paths(files, kept)


def list_images(folder: str | Path) -> SampleSet:
    """Every image file under `folder` as an unlabeled sample set (e.g. for prediction)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    images, _ = _image_files(folder)
    files = [(path, UNLABELED) for path in images]
    kept = checked_files(files, "skip", f"image files in {folder}")
    if not len(kept):
        raise DataError(f"no readable images in {folder}")
    return labeled_paths(files, kept)


SOURCES: dict[str, type[DataSource]] = {
    "fashion_mnist": FashionMNIST,
    "image_folder": ImageFolder,
    "csv": CsvSource,
}
_CSV_COLUMNS = ("fold_column", "group_column")


def build_source(source: DataSource | Mapping[str, Any] | str, **arguments: Any) -> DataSource:
    """The source `data.source` names, given `arguments` (data.root, data.on_bad_image, the CSV keys).

    `source` is a config node with `_target_` (built by Hydra, e.g. {_target_: effnetv2.data.sources.
    ImageFolder}), a kind name (fashion_mnist | image_folder | csv, as configs and checkpoints written
    before the node have it) or a source built already (then `arguments` must be empty).
    """
    if isinstance(source, DataSource):
        if arguments:
            raise ConfigError(f"data.{next(iter(arguments))} is given, but data.source is built already")
        return source
    if isinstance(source, str):
        if source not in SOURCES:
            raise ConfigError(f"data.source={source!r} is not one of fashion_mnist, image_folder, csv")
        source_class: Any = SOURCES[source]
    elif isinstance(source, Mapping) and "_target_" in source:
        source_class = get_class(str(source["_target_"]))
    else:
        raise ConfigError(
            f"data.source needs a _target_ (e.g. effnetv2.data.sources.ImageFolder), got {source!r}"
        )
    _check_arguments(source_class, arguments)
    return source_class(**arguments) if isinstance(source, str) else instantiate(source, **arguments)


def _check_arguments(source_class: type, arguments: Mapping[str, Any]) -> None:
    """A data key that neither a setting group nor the source takes: a typo, or another source's key."""
    parameters = inspect.signature(source_class).parameters
    unknown = [key for key in arguments if key not in parameters]
    if any(key in _CSV_COLUMNS for key in unknown):
        raise ConfigError("data.fold_column and data.group_column name CSV columns: they need data=csv")
    if unknown:
        raise ConfigError(
            f"data.{unknown[0]} is not a setting of the data module nor of its source {source_class.__name__}"
        )
