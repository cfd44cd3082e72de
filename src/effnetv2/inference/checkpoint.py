"""A trained classifier from a Lightning checkpoint of `src/train.py`, ready for inference.

The checkpoint holds everything needed: the model config and class names (module hyper-parameters),
the data config (normalisation, crop, channels) and the evaluation size in force when it was saved.
The checkpoint is read safely (weights_only, `effnetv2.checkpoint`) and the network rebuilt from its
model config without the `pretrained` weights file, which inference neither needs nor may have.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from effnetv2.checkpoint import load_model_weights, read_training_checkpoint
from effnetv2.errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class Preprocessing:
    """How images must be prepared for a model: the data config it was trained with."""

    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eval_size: int
    crop_pct: float

    def same_input_as(self, other: Preprocessing) -> bool:
        """Whether both take the same input pixels at a given size (the eval size may differ)."""
        return (self.in_chans, self.mean, self.std, self.crop_pct) == (
            other.in_chans,
            other.mean,
            other.std,
            other.crop_pct,
        )


@dataclass
class TrainedClassifier:
    """A model in eval mode with its class names and preprocessing."""

    model: nn.Module
    class_names: list[str]
    preprocessing: Preprocessing
    name: str


def preprocessing_of(checkpoint: dict[str, Any], path: Path) -> Preprocessing:
    hparams = checkpoint["hyper_parameters"]
    data = hparams.get("data")
    if not data:
        raise CheckpointError(
            f"{path} does not record its data settings (hyper_parameters.data), so its preprocessing "
            "is unknown; it was written by an older version of src/train.py: retrain or re-save it"
        )
    return Preprocessing(
        in_chans=int(hparams["in_chans"]),
        mean=tuple(float(m) for m in data["mean"]),
        std=tuple(float(s) for s in data["std"]),
        eval_size=int(checkpoint.get("eval_size", data["eval_size"])),
        crop_pct=float(data["crop_pct"]),
    )


def model_from_checkpoint(checkpoint: dict[str, Any]) -> nn.Module:
    """The network of a train.py checkpoint: built from its model config, with its weights (with EMA
    these are the averaged ones), strictly: every key must fit."""
    hparams = checkpoint["hyper_parameters"]
    config = {**hparams["model"], "pretrained": None}
    model = instantiate(config, num_classes=hparams["num_classes"], in_chans=hparams["in_chans"])
    return load_model_weights(model, checkpoint).eval()


def load_classifier(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> TrainedClassifier:
    """Rebuild the model of a train.py checkpoint and load its weights, with its classes and preprocessing."""
    path = Path(path)
    checkpoint = read_training_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    class_names = hparams.get("class_names") or [str(i) for i in range(hparams["num_classes"])]
    return TrainedClassifier(
        model=model_from_checkpoint(checkpoint).to(device),
        class_names=list(class_names),
        preprocessing=preprocessing_of(checkpoint, path),
        name=str(path),
    )


def expand_checkpoint_paths(patterns: Sequence[str]) -> list[Path]:
    """Each entry as a file or a glob pattern (e.g. one checkpoint per fold of a multirun), in order."""
    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise ConfigError(f"checkpoints: {pattern!r} matches no file")
        paths += [Path(match) for match in matches]
    return paths
