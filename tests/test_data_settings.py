"""The data keys users type (conf/data, the command line, checkpoints written before the settings
were grouped) reach the grouped settings and the source the data module is built from."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from effnetv2.data.csv_source import CsvSource
from effnetv2.data.datamodule import ImageDataModule
from effnetv2.data.sources import ImageFolder
from effnetv2.errors import ConfigError
from helpers.configs import compose_config

pytest_plugins = ["fixtures_data"]

CSV_KEYS = [
    "data.train_csv=labels.csv",
    "data.image_dir=images",
    "data.id_column=image",
    "data.label_column=class",
    "data.extension=.png",
    "data.test_csv=unlabeled.csv",
]
GROUP_KEYS = [
    "data.batch_size=8",
    "data.num_workers=0",
    "data.val_fraction=0.2",
    "data.crop_scale=[0.5,1.0]",
    "data.randaug_num_ops=1",
    "data.beton_jpeg_quality=80",
]


def test_command_line_keys_reach_the_source_and_the_groups(tmp_path: Path) -> None:
    overrides = ["data=csv", f"data.root={tmp_path}", "data.loader=torch", *CSV_KEYS, *GROUP_KEYS]
    datamodule = instantiate(compose_config("prepare_data", overrides, tmp_path).data)
    source = datamodule.source
    assert isinstance(source, CsvSource) and source.root == tmp_path
    assert (source.train_csv, source.image_dir, source.id_column, source.label_column) == (
        "labels.csv",
        "images",
        "image",
        "class",
    )
    assert (source.extension, source.test_csv) == (".png", "unlabeled.csv")
    assert (datamodule.batch_size, datamodule.loading.num_workers, datamodule.splits.val_fraction) == (
        8,
        0,
        0.2,
    )
    assert datamodule.augmentation.crop_scale == (0.5, 1.0) and datamodule.augmentation.randaug_num_ops == 1
    assert datamodule.betons.settings.beton_jpeg_quality == 80


def test_a_data_config_stored_before_the_source_node_still_builds(tmp_path: Path) -> None:
    """Checkpoints store the data config; older ones name the source by kind (`source: csv`). Eval
    and predict rebuild the data from it, overriding batch size and workers."""
    overrides = ["data=csv", f"data.root={tmp_path}", "data.loader=torch", *CSV_KEYS, *GROUP_KEYS]
    stored = OmegaConf.to_container(compose_config("prepare_data", overrides, tmp_path).data, resolve=True)
    stored["source"] = "csv"
    datamodule = instantiate(OmegaConf.create(stored), batch_size=4, num_workers=0)
    assert isinstance(datamodule.source, CsvSource) and datamodule.source.id_column == "image"
    assert datamodule.batch_size == 4 and datamodule.augmentation.crop_scale == (0.5, 1.0)


def test_the_source_kind_can_be_chosen_on_the_command_line(colour_folder: Path, tmp_path: Path) -> None:
    colour = ["data.in_chans=3", "data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]"]
    overrides = ["data=fashion_mnist", "data.source=image_folder", f"data.root={colour_folder}", *colour]
    datamodule = instantiate(compose_config("prepare_data", overrides, tmp_path).data)
    assert isinstance(datamodule.source, ImageFolder) and datamodule.num_classes == 10


def test_a_key_nothing_takes_is_named() -> None:
    with pytest.raises(ConfigError, match="data.batch_szie is not a setting"):
        ImageDataModule(batch_szie=8)


def test_the_constructor_takes_groups_not_every_setting() -> None:
    parameters = inspect.signature(ImageDataModule.__init__).parameters
    assert len(parameters) - 1 <= 15  # self; the flat keys arrive as **settings and are sorted
