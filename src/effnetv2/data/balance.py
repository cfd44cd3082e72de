"""Imbalanced data: inverse-frequency class weights (`module.class_weights: balanced`) and a sampler that
draws every class equally often (`data.sampler: balanced`), both from the train split's labels."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from effnetv2.errors import ConfigError

log = logging.getLogger(__name__)

SAMPLERS = ("random", "balanced")


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Weight n / (k * n_c) per class c: n samples, k classes present, n_c samples of class c.

    The formula of scikit-learn's `class_weight="balanced"`: every class then weighs as much as the
    others in total and the mean weight per sample is 1. A class without training samples (e.g. a
    rare one that fell wholly into the validation fold) gets weight 0: there is nothing to weigh.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    if not present.all():
        log.warning("classes %s have no training samples: their class weight is 0", np.flatnonzero(~present))
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def check_sampler(sampler: str, loader: str) -> str:
    if sampler not in SAMPLERS:
        raise ConfigError(f"data.sampler={sampler!r} is not one of {SAMPLERS}")
    if sampler == "balanced" and loader != "torch":
        raise ConfigError(
            "data.sampler=balanced needs data.loader=torch (FFCV draws its own order); "
            "with FFCV use module.class_weights=balanced instead"
        )
    return sampler


class BalancedSampler(DistributedSampler):
    """Weighted random sampling with replacement, each sample weighted 1 / (its class's count), so
    every class is drawn about equally often; an epoch has as many draws as the train split.

    It is a DistributedSampler so that Lightning leaves it in place under DDP (it wraps any other
    sampler): every rank draws the same sequence, seeded by `seed` and the epoch (Lightning calls
    `set_epoch`), and keeps every `num_replicas`-th draw from its rank on, so the ranks share one draw
    the way DistributedSampler's shards share one permutation. The same epoch draws the same samples
    after a resume.
    """

    def __init__(self, labels: np.ndarray, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        super().__init__(labels, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        counts = np.bincount(labels)
        self.weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.float64)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draws = torch.multinomial(self.weights, self.total_size, replacement=True, generator=generator)
        return iter(draws[self.rank : self.total_size : self.num_replicas].tolist())
