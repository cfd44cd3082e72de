"""uint8 batches to the device: the loaders deliver uint8, normalisation happens after the transfer and
gives exactly what the old in-worker float path gave."""

from __future__ import annotations

from pathlib import Path

import torch

from effnetv2.data.datamodule import ImageDataModule
from effnetv2.data.device_batch import ImageNormalizer

pytest_plugins = ["fixtures_data"]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def old_float_path(images: torch.Tensor) -> torch.Tensor:
    """What the collate function computed in the workers before: float32, then (x - mean) / std."""
    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
    std = torch.tensor(STD, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
    return images.float().sub_(mean).div_(std)


def test_loader_yields_uint8_and_the_transferred_batch_equals_the_old_float_path(colour_folder: Path) -> None:
    datamodule = ImageDataModule(
        source="image_folder", root=str(colour_folder), in_chans=3, mean=MEAN, std=STD, batch_size=8,
        num_workers=0, image_size=32, eval_size=32, crop_pct=1.0,
    )  # fmt: skip
    datamodule.setup("test")
    images, labels = next(iter(datamodule.test_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 32, 32)
    normalised, same_labels = datamodule.on_after_batch_transfer((images, labels), 0)
    assert normalised.dtype == torch.float32 and same_labels is labels
    assert torch.equal(normalised, old_float_path(images))


def test_normaliser_keeps_channels_last_and_the_model_channels() -> None:
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8).contiguous(
        memory_format=torch.channels_last
    )
    normalised = ImageNormalizer(MEAN, STD)(images)
    assert normalised.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(normalised, old_float_path(images))
    grey = ImageNormalizer((0.5,), (0.25,))(images)  # a grey beton stores 3 equal channels
    assert grey.shape == (4, 1, 8, 8) and torch.equal(grey, (images[:, :1].float() - 127.5) / 63.75)
    assert ImageNormalizer(MEAN, STD)(normalised) is normalised  # float input is already model input
