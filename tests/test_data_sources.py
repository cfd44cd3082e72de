"""Sources: Fashion-MNIST (IDX), image folders and Kaggle-style CSVs; the class map saved with a run."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from effnetv2.data.datamodule import ImageDataModule
from effnetv2.data.sources import (
    FASHION_MNIST_ROOT,
    UNLABELED,
    CsvSource,
    FashionMNIST,
    ImageFolder,
    list_images,
    read_idx,
)
from effnetv2.errors import DataError
from fixtures_data import image_files
from helpers.environment import require

pytest_plugins = ["fixtures_data"]


@pytest.fixture
def needs_fashion_mnist() -> None:
    require(
        Path(FASHION_MNIST_ROOT, "train-images-idx3-ubyte.gz").is_file(),
        f"Fashion-MNIST is not installed in {FASHION_MNIST_ROOT} (apt-get install dataset-fashion-mnist)",
    )


def write_idx(path: Path, array: np.ndarray) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())
    return path


@pytest.mark.usefixtures("needs_fashion_mnist")
def test_fashion_mnist_loads_the_installed_files() -> None:
    source = FashionMNIST()
    train, test = source.load("train"), source.load("test")
    assert train.images.shape == (60000, 28, 28, 1) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 28, 28, 1)
    assert np.array_equal(np.bincount(train.labels), np.full(10, 6000))
    assert source.load("val") is None
    assert source.class_names[0] == "T-shirt/top" and len(source.class_names) == 10


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_fashion_mnist_reads_plain_and_gzipped_idx(tmp_path: Path, suffix: str) -> None:
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28))
    labels = np.arange(7) % 10
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels)
    test = FashionMNIST(tmp_path).load("test")
    assert np.array_equal(test.images[:, :, :, 0], images) and np.array_equal(test.labels, labels)


def test_fashion_mnist_missing_files_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        FashionMNIST(tmp_path / "nowhere").load("train")
    message = str(error.value)
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "data.root=" in message and "train-images-idx3-ubyte" in message


def test_idx_reader_rejects_bad_and_truncated_files(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04 not idx")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(tmp_path / "bad")
    path = write_idx(tmp_path / "short", np.zeros((4, 3, 3)))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def count_images(folder: Path) -> int:
    return len(image_files(folder))


def test_image_folder_lists_classes_and_splits(colour_folder: Path, colour_classes: tuple[str, ...]) -> None:
    source = ImageFolder(colour_folder)
    assert source.class_names == list(colour_classes)
    train, test = source.load("train"), source.load("test")
    assert len(train) == count_images(colour_folder / "train") > 0
    assert len(test) == count_images(colour_folder / "test") > 0
    assert source.load("val") is None
    for path, label in zip(train.paths, train.labels):
        assert path.parent.name == colour_classes[label]


def test_image_folder_without_train_folder_names_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="root/train/<class>"):
        ImageFolder(tmp_path).load("train")


def test_csv_source_matches_the_image_folder(
    colour_folder: Path, colour_csv: Path, colour_classes: tuple[str, ...]
) -> None:
    source = CsvSource(colour_csv, test_csv="test.csv")
    assert source.class_names == list(colour_classes)
    train, test = source.load("train"), source.load("test")
    assert len(train) == count_images(colour_folder / "train")
    assert len(test) == count_images(colour_folder / "test")
    for path, label in zip(train.paths, train.labels):
        assert path.name.startswith(colour_classes[label] + "_") and path.suffix in (".jpg", ".png")
    assert CsvSource(colour_csv).load("test") is None


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_unlabeled_test_set_and_configurable_columns(tiny_folder: Path) -> None:
    images = sorted((tiny_folder / "train").rglob("*.png"))
    rows = [{"file": f"{p.parent.name}/{p.stem}", "kind": p.parent.name} for p in images]
    write_csv(tiny_folder / "labels.csv", rows)
    write_csv(tiny_folder / "test.csv", [{"file": row["file"]} for row in rows[:3]])
    source = CsvSource(
        tiny_folder,
        train_csv="labels.csv",
        id_column="file",
        label_column="kind",
        extension=".png",
        test_csv="test.csv",
        test_image_dir="train",
    )
    assert source.class_names == ["a", "b"] and len(source.load("train")) == len(images)
    test = source.load("test")
    assert len(test) == 3 and (test.labels == UNLABELED).all() and not test.is_labeled


def test_csv_missing_column_lists_the_columns(tiny_folder: Path) -> None:
    write_csv(tiny_folder / "train.csv", [{"image": "x", "label": "a"}])
    with pytest.raises(DataError, match=r"no column\(s\) \['id'\].*\['image', 'label'\]"):
        CsvSource(tiny_folder).load("train")


def test_csv_integer_labels_sort_numerically(tiny_folder: Path) -> None:
    write_csv(tiny_folder / "train.csv", [{"id": "a/0", "label": v} for v in ("10", "2", "1")])
    assert CsvSource(tiny_folder, extension=".png").class_names == ["1", "2", "10"]


def test_list_images_finds_every_image_unlabeled(tiny_folder: Path) -> None:
    samples = list_images(tiny_folder)
    assert len(samples) == 12 and (samples.labels == UNLABELED).all()


def test_save_class_map_round_trips(
    tmp_path: Path, colour_folder: Path, colour_classes: tuple[str, ...]
) -> None:
    datamodule = ImageDataModule(
        source="image_folder", root=str(colour_folder), in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3
    )
    path = datamodule.save_class_map(tmp_path / "run" / "class_map.json")
    content = json.loads(path.read_text())
    assert content["class_names"] == list(colour_classes)
    assert content["class_to_index"]["yellow"] == 9 and content["in_chans"] == 3
    assert datamodule.num_classes == 10
