"""Fixtures for inference tests (loaded with `pytest_plugins = ["fixtures_inference"]`): checkpoints in
the format src/train.py writes, built without training, and small image sets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from effnetv2.training.module import ClassificationModule
from fixtures_data import write_png

MODEL_CONFIG = {"_target_": "effnetv2.models.create_model", "name": "v2_b0"}
DATA_CONFIG = {
    "_target_": "effnetv2.data.datamodule.ImageDataModule",
    "source": "image_folder",
    "root": "unused",
    "in_chans": 3,
    "eval_size": 32,
    "crop_pct": 1.0,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
}


def calibrate(model: torch.nn.Module, in_chans: int = 3) -> None:
    """Give an untrained model image-dependent, well-conditioned outputs: convolutions re-initialised to
    keep the signal's variance (fan-in; the official fan-out init shrinks it until every image gives
    the same output while BatchNorm is still the identity), then a classifier with logits of unit spread."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, mode="fan_in")
    images = torch.randn(16, in_chans, 32, 32)
    with torch.no_grad():
        torch.nn.init.normal_(model.classifier.weight)
        torch.nn.init.zeros_(model.classifier.bias)
        model.classifier.weight /= model.eval()(images).std()


def write_checkpoint(
    path: Path, class_names: Sequence[str], seed: int = 0, eval_size: int = 32, data: dict | None = None
) -> Path:
    """A checkpoint as train.py saves it (state_dict, hyper_parameters, eval_size) of an untrained,
    calibrated v2_b0 (see `calibrate`)."""
    torch.manual_seed(seed)
    module = ClassificationModule(
        model=MODEL_CONFIG,
        optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-3},
        lr_scheduler={"name": "constant"},
        num_classes=len(class_names),
        class_names=list(class_names),
        data={**DATA_CONFIG, **(data or {})},
    )
    calibrate(module.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "eval_size": eval_size,
    }
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`make_checkpoint(name, class_names, seed=0, eval_size=32)` -> a checkpoint path, written once
    per session for each set of arguments (building one takes seconds on a loaded CPU)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    written: dict[tuple, Path] = {}

    def _make(
        name: str, class_names: Sequence[str] = ("cat", "dog", "frog"), seed: int = 0, eval_size: int = 32
    ) -> Path:
        key = (name, tuple(class_names), seed, eval_size)
        if key not in written:
            if (folder / f"{name}.ckpt").exists():
                raise ValueError(f"checkpoint name {name!r} reused with other arguments")
            written[key] = write_checkpoint(
                folder / f"{name}.ckpt", class_names, seed=seed, eval_size=eval_size
            )
        return written[key]

    return _make


@pytest.fixture
def square_images(tmp_path: Path) -> Path:
    """folder/ with 5 random 36x36 PNGs (square: with crop_pct=1 evaluation is a plain resize, so a
    flipped file gives exactly the flipped view) and their mirror images in flipped/."""
    rng = np.random.default_rng(0)
    for i in range(5):
        image = rng.integers(0, 256, size=(36, 36, 3), dtype=np.uint8)
        write_png(tmp_path / "images" / f"img{i}.png", image)
        write_png(tmp_path / "flipped" / f"img{i}.png", np.ascontiguousarray(image[:, ::-1]))
    return tmp_path
