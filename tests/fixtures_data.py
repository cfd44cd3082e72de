"""Shared data fixtures (loaded with `pytest_plugins = ["fixtures_data"]`).

A small real CIFAR-10 subset, extracted once per session from ../shared/data, in two layouts:
image_folder (root/{train,test}/<class>/NNNN.jpg) and a Kaggle-style CSV (root/train.csv with id
and label columns, ids without extension, flat root/train/ and root/test/ image folders).
"""

from __future__ import annotations

import csv
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR_TAR = SHARED_DATA / "cifar10-jpeg.tar.gz"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_PER_CLASS = 20
TEST_PER_CLASS = 5


def _wanted(name: str) -> bool:
    parts = name.split("/")  # cifar10/<split>/<class>/NNNN.jpg
    if len(parts) != 4 or not parts[3].endswith(".jpg"):
        return False
    limit = TRAIN_PER_CLASS if parts[1] == "train" else TEST_PER_CLASS
    return int(parts[3][:-4]) < limit


@pytest.fixture(scope="session")
def cifar_classes() -> tuple[str, ...]:
    return CIFAR_CLASSES


@pytest.fixture(scope="session")
def cifar_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/{train,test}/<class>/*.jpg: 20 train and 5 test real CIFAR-10 JPEGs per class."""
    if not CIFAR_TAR.is_file():
        pytest.skip(f"CIFAR-10 JPEGs not found at {CIFAR_TAR} (../shared/data is absent)")
    destination = tmp_path_factory.mktemp("cifar_extract")
    with tarfile.open(CIFAR_TAR) as archive:
        archive.extractall(
            destination, members=(m for m in archive if m.isfile() and _wanted(m.name)), filter="data"
        )
    return destination / "cifar10"


@pytest.fixture(scope="session")
def cifar_csv(cifar_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Kaggle layout of the same images: train.csv / test.csv (id,label) + flat train/ and test/ folders."""
    root = tmp_path_factory.mktemp("cifar_csv")
    for split in ("train", "test"):
        (root / split).mkdir()
        rows = []
        for class_folder in sorted((cifar_folder / split).iterdir()):
            for image in sorted(class_folder.glob("*.jpg")):
                image_id = f"{class_folder.name}_{image.stem}"
                shutil.copy(image, root / split / f"{image_id}.jpg")
                rows.append({"id": image_id, "label": class_folder.name})
        with (root / f"{split}.csv").open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=["id", "label"])
            writer.writeheader()
            writer.writerows(rows)
    return root


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write an image losslessly (RGB order in, any channel count)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")
    return path


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """root/train/<a|b>/ with 6 synthetic 24x20 PNG images each (fast, always available)."""
    rng = np.random.default_rng(0)
    for name, value in (("a", 40), ("b", 200)):
        for i in range(6):
            image = np.clip(rng.normal(value, 10, size=(24, 20, 3)), 0, 255).astype(np.uint8)
            write_png(tmp_path / "train" / name / f"{i}.png", image)
    return tmp_path
