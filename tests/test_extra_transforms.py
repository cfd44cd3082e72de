"""`data.extra_transforms`: albumentations transforms from the config, validated when the data module is
built and applied after crop, flip and RandAugment by the torch loader and the FFCV loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import albumentations as A
import pytest
import torch
from hydra.utils import instantiate

from effnetv2.data.datamodule import ImageDataModule
from effnetv2.data.randaugment import RandAugment
from effnetv2.errors import ConfigError
from helpers.configs import compose_config
from helpers.environment import require_module
from helpers.runs import run_train
from helpers.tiny import TINY

pytest_plugins = ["fixtures_data"]

INVERT = {"_target_": "albumentations.InvertImg", "p": 1.0}


def folder_module(root: Path, **overrides: Any) -> ImageDataModule:
    """Deterministic train images apart from the extras: full-image crop, no flip, no RandAugment."""
    options = dict(
        source="image_folder", root=str(root), in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3, batch_size=12,
        num_workers=0, image_size=16, eval_size=16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=False,
        randaug_num_ops=0, val_fraction=0.0,
    )  # fmt: skip
    return ImageDataModule(**{**options, **overrides})


def first_train_batch(datamodule: ImageDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)  # the torch loader's shuffle
    images, labels = next(iter(datamodule.train_dataloader()))
    return datamodule.normalize(images), labels


def test_config_entries_reach_the_train_pipeline_after_randaugment(tmp_path: Path) -> None:
    overrides = ["data.extra_transforms=[{_target_: albumentations.GaussNoise, p: 0.2}]", "data.subset=20"]
    cfg = compose_config("train", overrides, tmp_path)
    datamodule = instantiate(cfg.data)
    assert list(datamodule.augmentation.extra_transforms) == [
        {"_target_": "albumentations.GaussNoise", "p": 0.2}
    ]
    steps = datamodule._train_transform().pipeline.transforms
    expected = [A.RandomResizedCrop, A.HorizontalFlip, RandAugment, A.GaussNoise]
    assert [type(step) for step in steps] == expected
    assert steps[-1].p == 0.2


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"_target_": "albumentations.GaussNoise", "std_rnge": [0.1, 0.2]}, "'std_rnge' are not valid"),
        ({"_target_": "albumentations.GausNoise"}, "did you mean albumentations.GaussNoise"),
        ({"_target_": "torch.nn.Identity"}, "not an albumentations transform"),
        ({"_target_": "albumentations.Resize", "height": 8, "width": 8}, "keep the size"),
        ({"_target_": "albumentations.ToGray", "p": 0.1}, "fails on a 1-channel image"),
        ("albumentations.GaussNoise", "mappings"),
    ],
)
def test_bad_entries_are_one_line_config_errors(tmp_path: Path, entry: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        ImageDataModule(root=str(tmp_path), extra_transforms=[entry])  # Fashion-MNIST defaults: 1 channel
    assert str(error.value).startswith("data.extra_transforms") and "\n" not in str(error.value)


@pytest.mark.subprocess
@pytest.mark.timeout(300)
def test_a_misspelled_argument_stops_train_py_with_one_line(tmp_path: Path) -> None:
    entry = "data.extra_transforms=[{_target_: albumentations.GaussNoise, std_rnge: [0.1, 0.2]}]"
    result = run_train(entry, *TINY, f"hydra.run.dir={tmp_path}", timeout=240)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "std_rnge" in lines[0] and "data.extra_transforms" in lines[0]


def test_the_torch_loader_applies_them(tiny_folder: Path) -> None:
    plain, plain_labels = first_train_batch(folder_module(tiny_folder))
    inverted, labels = first_train_batch(folder_module(tiny_folder, extra_transforms=[INVERT]))
    assert torch.equal(labels, plain_labels)
    assert torch.equal(inverted, -plain)  # 255 - x normalised by mean 127.5: the negated image


@pytest.mark.ffcv
@pytest.mark.timeout(300)
def test_the_ffcv_loader_applies_them(tiny_folder: Path, tmp_path: Path) -> None:
    require_module("ffcv", "the ffcv extra")
    options = dict(loader="ffcv", beton_dir=str(tmp_path), beton_write_mode="raw", num_workers=2)

    def batch(**overrides: Any) -> tuple[torch.Tensor, torch.Tensor]:
        datamodule = folder_module(tiny_folder, **options, **overrides)
        datamodule.prepare_data()
        datamodule.setup("fit")
        images, labels = next(iter(datamodule.train_dataloader()))
        return datamodule.normalize(images), labels

    plain, plain_labels = batch()
    inverted, labels = batch(extra_transforms=[INVERT])
    assert torch.equal(labels, plain_labels)
    assert torch.equal(inverted, -plain)
    with_randaugment, _ = batch(extra_transforms=[INVERT], randaug_num_ops=2)  # two Python stages in a row
    assert with_randaugment.shape == plain.shape
