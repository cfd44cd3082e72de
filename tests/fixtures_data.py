"""Shared data fixtures (loaded with `pytest_plugins = ["fixtures_data"]`).

A generated colour image set, made once per session in a temp folder, so no test depends on data
outside the repository: 10 classes told apart by their dominant colour (plus noise, a brightness jitter
and a distractor patch, so a model has something to learn), 32 train and 8 test images per class,
alternately JPEG and PNG. Train images are 32-48 px on each side; test images are 32 x 32, the tests'
eval size, so evaluation batches can be compared with the decoded files without resampling. Two
layouts: image_folder (root/{train,test}/<class>/NNNN.{jpg,png}) and a Kaggle-style CSV (root/train.csv
and root/test.csv with id and label columns, ids with their extension, flat root/train/ and root/test/
image folders).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

COLOUR_CLASSES = ("black", "blue", "cyan", "green", "grey", "magenta", "orange", "red", "white", "yellow")
CLASS_COLOURS = {
    "black": (20, 20, 20),
    "blue": (30, 40, 220),
    "cyan": (40, 210, 210),
    "green": (30, 180, 40),
    "grey": (128, 128, 128),
    "magenta": (210, 40, 200),
    "orange": (240, 140, 20),
    "red": (220, 30, 30),
    "white": (235, 235, 235),
    "yellow": (230, 220, 30),
}
TRAIN_PER_CLASS = 32
TEST_PER_CLASS = 8


def colour_image(colour: tuple[int, int, int], rng: np.random.Generator, mixed_sizes: bool) -> np.ndarray:
    """H x W x 3 uint8 (H, W in 32..48, or 32 x 32): the class colour, jittered, noisy, with a
    random-colour patch."""
    height, width = rng.integers(32, 49, size=2) if mixed_sizes else (32, 32)
    base = np.asarray(colour, np.float32) * rng.uniform(0.8, 1.1)
    image = base + rng.normal(0, 18, size=(height, width, 3))
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    image[top : top + height // 3, left : left + width // 3] = rng.integers(0, 256, size=3)
    return np.clip(image, 0, 255).astype(np.uint8)


def save_image(path: Path, image: np.ndarray) -> Path:
    """Write RGB uint8 as JPEG or PNG, by the path's extension."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, **({"quality": 92} if path.suffix == ".jpg" else {}))
    return path


def image_files(folder: Path) -> list[Path]:
    """The generated images below a folder (JPEG and PNG), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix in (".jpg", ".png"))


@pytest.fixture(scope="session")
def colour_classes() -> tuple[str, ...]:
    return COLOUR_CLASSES


@pytest.fixture(scope="session")
def colour_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/{train,test}/<class>/NNNN.{jpg,png}: 32 train and 8 test generated images per class."""
    root = tmp_path_factory.mktemp("colour_folder")
    rng = np.random.default_rng(17)
    for split, count in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for name in COLOUR_CLASSES:
            for i in range(count):
                suffix = ".jpg" if i % 2 == 0 else ".png"
                save_image(
                    root / split / name / f"{i:04d}{suffix}",
                    colour_image(CLASS_COLOURS[name], rng, split == "train"),
                )
    return root


@pytest.fixture(scope="session")
def colour_csv(colour_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Kaggle layout of the same images: train.csv / test.csv (id,label; ids are file names) + flat
    train/ and test/ folders."""
    root = tmp_path_factory.mktemp("colour_csv")
    for split in ("train", "test"):
        (root / split).mkdir()
        rows = []
        for class_folder in sorted((colour_folder / split).iterdir()):
            for image in image_files(class_folder):
                image_id = f"{class_folder.name}_{image.name}"
                shutil.copy(image, root / split / image_id)
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
