"""Every conf/data config composes (through conf/prepare_data.yaml) and instantiates a working DataModule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from effnetv2.data.betons import choose_loader
from effnetv2.data.datamodule import ImageDataModule
from effnetv2.data.sources import FASHION_MNIST_ROOT
from fixtures_data import image_files
from helpers.configs import compose_config
from helpers.environment import require, train_env
from helpers.paths import CONF_DIR, ROOT

pytest_plugins = ["fixtures_data"]

SMALL = ["data.num_workers=0", "data.batch_size=8", "data.image_size=32", "data.eval_size=32"]


def test_every_data_config_is_tested() -> None:
    assert {path.stem for path in (CONF_DIR / "data").glob("*.yaml")} == {
        "fashion_mnist",
        "image_folder",
        "csv",
        "cifar10",
    }


def test_fashion_mnist_config(tmp_path: Path) -> None:
    require(Path(FASHION_MNIST_ROOT).is_dir(), "Fashion-MNIST is not installed")
    cfg = compose_config("prepare_data", ["data=fashion_mnist", "data.subset=100", *SMALL], tmp_path)
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, ImageDataModule) and (datamodule.in_chans, datamodule.num_classes) == (
        1,
        10,
    )
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (8, 1, 32, 32) and labels.dtype == torch.int64
    assert Path(cfg.data.beton_dir) == Path(cfg.paths.data_dir) / "betons"


def test_test_runs_keep_betons_and_outputs_outside_the_checkout(tmp_path: Path) -> None:
    """Betons written by tests went to the checkout's data/betons, where a later test on other data
    found them (and a user found test images); now each test session has its own project root."""
    cfg = compose_config("prepare_data", ["data=image_folder", f"data.root={tmp_path}"], tmp_path / "run")
    assert not Path(cfg.data.beton_dir).resolve().is_relative_to(ROOT)
    assert not Path(train_env()["PROJECT_ROOT"]).resolve().is_relative_to(ROOT)


@pytest.mark.parametrize("name", ["image_folder", "cifar10", "csv"])
def test_colour_data_configs(name: str, colour_folder: Path, colour_csv: Path, tmp_path: Path) -> None:
    root = colour_csv if name == "csv" else colour_folder
    extra = ["data.test_csv=test.csv"] if name == "csv" else []
    betons = f"data.beton_dir={tmp_path / 'betons'}"
    cfg = compose_config(
        "prepare_data", [f"data={name}", f"data.root={root}", *SMALL, *extra, betons], tmp_path
    )
    datamodule = instantiate(cfg.data)
    assert (datamodule.in_chans, datamodule.num_classes) == (3, 10)
    assert datamodule.loader == choose_loader("auto")[0]  # loader: auto, FFCV where installed
    datamodule.prepare_data()  # FFCV: writes the betons on first use
    images, _ = next(iter(datamodule.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.uint8
    datamodule.setup("test")
    test_images = sum(len(labels) for _, labels in datamodule.test_dataloader())
    assert test_images == len(image_files(colour_folder / "test"))


def test_image_folder_needs_a_root(tmp_path: Path) -> None:
    cfg = compose_config("prepare_data", ["data=image_folder"], tmp_path)
    with pytest.raises(Exception, match="data.root"):
        instantiate(cfg.data)
