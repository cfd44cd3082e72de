"""The torch loader path end to end: Fashion-MNIST by default, generated JPEG and PNG images through
image_folder and csv, splits, and the progressive-learning setters reaching the next epoch's batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch

from effnetv2.data.datamodule import ImageDataModule
from effnetv2.data.randaugment import RandAugment
from effnetv2.data.sources import FASHION_MNIST_ROOT
from fixtures_data import image_files
from helpers.environment import require

pytest_plugins = ["fixtures_data"]


@pytest.fixture
def needs_fashion_mnist() -> None:
    require(
        Path(FASHION_MNIST_ROOT, "train-images-idx3-ubyte.gz").is_file(),
        f"Fashion-MNIST is not installed in {FASHION_MNIST_ROOT} (apt-get install dataset-fashion-mnist)",
    )


COLOUR = {"in_chans": 3, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


def colour_module(root: Path, source: str = "image_folder", **overrides: Any) -> ImageDataModule:
    options: dict[str, Any] = {
        "source": source,
        "root": str(root),
        "image_size": 32,
        "eval_size": 32,
        "crop_pct": 1.0,
        "batch_size": 16,
        "num_workers": 0,
        **COLOUR,
    }
    if source == "csv":
        options.update(test_csv="test.csv")
    return ImageDataModule(**{**options, **overrides})


@pytest.fixture
def magnitude_spy(monkeypatch: pytest.MonkeyPatch) -> None:
    """RandAugment returns an image filled with 10 x the magnitude it was called with.

    Patched on the class, so forked DataLoader workers and FFCV's loader thread use it too.
    """

    def apply(self: RandAugment, img: np.ndarray, magnitude: float, **params: Any) -> np.ndarray:
        return np.full_like(img, int(round(magnitude * 10)))

    monkeypatch.setattr(RandAugment, "apply", apply)


def applied_magnitudes(images: torch.Tensor, mean: float = 0.5, std: float = 0.25) -> set[float]:
    """Undo normalisation (of a batch that reached the model) and the spy's x10: the magnitudes that
    produced a batch."""
    pixels = images.float() if images.dtype == torch.uint8 else (images * std * 255 + mean * 255).round()
    return set((pixels / 10).unique().tolist())


@pytest.mark.usefixtures("needs_fashion_mnist")
def test_fashion_mnist_default_batches() -> None:
    datamodule = ImageDataModule(subset=2000, batch_size=64, num_workers=0, mean=(0.286,), std=(0.353,))
    assert (datamodule.num_classes, datamodule.in_chans) == (10, 1)
    datamodule.setup("fit")
    train, val = datamodule.train_dataloader(), datamodule.val_dataloader()
    assert len(train.dataset) == 1800 and len(val.dataset) == 200
    images, labels = next(iter(train))
    assert images.shape == (64, 1, 32, 32) and images.dtype == torch.uint8  # normalised on the device
    assert labels.dtype == torch.int64 and labels.min() >= 0 and labels.max() < 10
    images, _ = next(iter(val))
    images = datamodule.normalize(images)
    assert (
        images.dtype == torch.float32 and abs(images.mean().item()) < 0.3 and 0.7 < images.std().item() < 1.3
    )  # normalised
    datamodule.setup("test")
    assert len(datamodule.test_dataloader().dataset) == 10000


@pytest.mark.usefixtures("needs_fashion_mnist")
def test_fashion_mnist_for_a_three_channel_model() -> None:
    datamodule = ImageDataModule(subset=200, batch_size=8, num_workers=0, **COLOUR)
    images, _ = next(iter(datamodule.train_dataloader()))
    assert images.shape == (8, 3, 32, 32)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])


@pytest.mark.parametrize("source", ["image_folder", "csv"])
def test_generated_images_through_the_torch_loader(
    colour_folder: Path, colour_csv: Path, source: str, colour_classes: tuple[str, ...]
) -> None:
    datamodule = colour_module(
        colour_folder if source == "image_folder" else colour_csv, source, val_fraction=0.2
    )
    assert datamodule.class_names == list(colour_classes)
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (16, 3, 32, 32) and labels.dtype == torch.int64
    val_labels = torch.cat([labels for _, labels in datamodule.val_dataloader()])
    per_class = torch.bincount(val_labels, minlength=10)  # stratified 20% of 32 per class
    assert len(val_labels) == 64 and set(per_class.tolist()) == {6, 7}
    datamodule.setup("test")
    test_labels = torch.cat([labels for _, labels in datamodule.test_dataloader()])
    assert torch.equal(
        torch.bincount(test_labels), torch.bincount(torch.arange(10).repeat(len(test_labels) // 10))
    )


def test_eval_loader_matches_the_files_in_order(colour_folder: Path) -> None:
    datamodule = colour_module(colour_folder, crop_pct=1.0)
    datamodule.setup("test")
    images, labels = next(iter(datamodule.test_dataloader()))
    images = datamodule.normalize(images)
    first = datamodule.roles.scanned("test").paths[0]
    from effnetv2.data.decode import read_image

    expected = (torch.from_numpy(read_image(first, 3)).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert torch.allclose(images[0], expected, atol=1e-5) and labels[0] == 0


def test_kfold_validation_sets_partition_the_training_data(colour_folder: Path) -> None:
    seen: list[str] = []
    for fold in range(4):
        datamodule = colour_module(colour_folder, num_folds=4, fold=fold)
        datamodule.setup("fit")
        val = datamodule.val_dataloader().dataset.samples
        train = datamodule.train_dataloader().dataset.samples
        assert not set(val.paths) & set(train.paths)
        assert len(val) + len(train) == len(image_files(colour_folder / "train"))
        seen.extend(map(str, val.paths))
    assert len(seen) == len(set(seen)) == len(image_files(colour_folder / "train"))


def test_samples_are_what_the_loaders_read(colour_folder: Path) -> None:
    datamodule = colour_module(colour_folder, val_fraction=0.2)
    val = datamodule.samples("val")
    assert val.paths == datamodule.val_dataloader().dataset.samples.paths and len(val) == 64
    assert len(datamodule.samples("train")) == 256 and len(datamodule.samples("test")) > 0
    assert (
        colour_module(colour_folder, val_fraction=0.0, subset=10).samples("val") is not None
    )  # the test split


def test_subset_and_zero_val_fraction_validate_on_test(colour_folder: Path) -> None:
    datamodule = colour_module(colour_folder, subset=50, val_fraction=0.0)
    datamodule.setup("fit")
    assert len(datamodule.train_dataloader().dataset) == 50
    assert len(datamodule.val_dataloader().dataset) == len(image_files(colour_folder / "test"))


@pytest.mark.parametrize(("num_workers", "persistent"), [(0, False), (2, True), (2, False)])
def test_setters_reach_the_next_epoch(
    colour_folder: Path, magnitude_spy: None, num_workers: int, persistent: bool
) -> None:
    datamodule = colour_module(
        colour_folder,
        num_workers=num_workers,
        persistent_workers=persistent,
        randaug_magnitude=5,
        val_fraction=0.2,
    )
    datamodule.setup("fit")
    train, val = datamodule.train_dataloader(), datamodule.val_dataloader()
    for images, _ in train:
        assert images.shape[-2:] == (32, 32) and applied_magnitudes(images) == {5.0}
    assert next(iter(val))[0].shape[-2:] == (32, 32)
    datamodule.set_image_size(40)
    datamodule.set_randaug_magnitude(15)
    datamodule.set_eval_size(24)
    batches = list(train)
    assert len(batches) == len(train) > 1
    for images, _ in batches:
        assert images.shape[-2:] == (40, 40) and applied_magnitudes(images) == {15.0}
    assert next(iter(val))[0].shape[-2:] == (24, 24)
    assert (datamodule.image_size, datamodule.eval_size, datamodule.randaug_magnitude) == (40, 24, 15.0)


class RecordingModule(L.LightningModule):
    """Records the size and RandAugment magnitude of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, int, frozenset[float]]] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, _ = batch
        self.seen.append((self.current_epoch, images.shape[-1], frozenset(applied_magnitudes(images))))
        return (self.weight * images.mean()).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class StageCallback(L.Callback):
    """Sets size and magnitude per epoch the way ProgressiveLearning does."""

    def __init__(self, stages: dict[int, tuple[int, float]]) -> None:
        self.stages = stages

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        size, magnitude = self.stages[trainer.current_epoch]
        trainer.datamodule.set_image_size(size)
        trainer.datamodule.set_randaug_magnitude(magnitude)


def test_setters_inside_a_lightning_fit_with_persistent_workers(
    colour_folder: Path, magnitude_spy: None
) -> None:
    datamodule = colour_module(
        colour_folder, num_workers=2, persistent_workers=True, subset=40, val_fraction=0.0
    )
    module = RecordingModule()
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[StageCallback({0: (24, 3.0), 1: (32, 6.0), 2: (40, 9.0)})],
    )
    trainer.fit(module, datamodule=datamodule)
    expected = {0: (24, 3.0), 1: (32, 6.0), 2: (40, 9.0)}
    assert {epoch for epoch, _, _ in module.seen} == {0, 1, 2}
    for epoch, size, magnitudes in module.seen:
        assert (size, magnitudes) == (expected[epoch][0], frozenset({expected[epoch][1]}))
