"""Stratified, seeded index splits over a label array: train/val, K-fold and subsets.

Pure functions of (labels, seed): the same seed always gives the same split, so a run can be
repeated and K folds of a cross-validation never overlap.
"""

from __future__ import annotations

import numpy as np

from effnetv2.errors import ConfigError


def _class_members(labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Indices of each class (sorted by class), each shuffled by `rng`."""
    labels = np.asarray(labels)
    return [rng.permutation(np.flatnonzero(labels == value)) for value in np.unique(labels)]


def _quotas(counts: np.ndarray, total: int) -> np.ndarray:
    """Split `total` over classes in proportion to `counts`, summing exactly (largest remainder)."""
    exact = counts * (total / counts.sum())
    quotas = np.floor(exact).astype(np.int64)
    remainder_order = np.argsort(-(exact - quotas), kind="stable")
    quotas[remainder_order[: total - quotas.sum()]] += 1
    return np.minimum(quotas, counts)


def stratified_subset(labels: np.ndarray, size: int | float, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced subset: `size` samples (int) or that fraction (float in (0, 1])."""
    labels = np.asarray(labels)
    total = round(len(labels) * size) if isinstance(size, float) else int(size)
    if isinstance(size, float) and not 0.0 < size <= 1.0:
        raise ConfigError(f"data.subset={size} is not a fraction in (0, 1]; use a fraction or a sample count")
    if not 0 < total <= len(labels):
        raise ConfigError(
            f"data.subset={size} selects {total} of {len(labels)} samples; choose 1..{len(labels)}"
        )
    members = _class_members(labels, np.random.default_rng(seed))
    quotas = _quotas(np.array([len(m) for m in members]), total)
    return np.sort(np.concatenate([m[:q] for m, q in zip(members, quotas)]))


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) sorted indices with about `val_fraction` of every class in val."""
    labels = np.asarray(labels)
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={val_fraction} must be in (0, 1) for a split")
    members = _class_members(labels, np.random.default_rng(seed))
    quotas = _quotas(np.array([len(m) for m in members]), round(len(labels) * val_fraction))
    val = np.concatenate([m[:q] for m, q in zip(members, quotas)])
    train = np.concatenate([m[q:] for m, q in zip(members, quotas)])
    return np.sort(train), np.sort(val)


def stratified_kfold(
    labels: np.ndarray, num_folds: int, fold: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) sorted indices where fold `fold` of `num_folds` is val; folds partition the data.

    Each class is shuffled and dealt round-robin over the folds (continuing across classes), so
    fold sizes differ by at most one and every class is spread evenly.
    """
    labels = np.asarray(labels)
    if num_folds < 2:
        raise ConfigError(f"data.num_folds={num_folds}: K-fold needs at least 2 folds")
    if not 0 <= fold < num_folds:
        raise ConfigError(
            f"data.fold={fold} is out of range for data.num_folds={num_folds} (0..{num_folds - 1})"
        )
    order = np.concatenate(_class_members(labels, np.random.default_rng(seed)))
    fold_of = np.empty(len(labels), dtype=np.int64)
    fold_of[order] = np.arange(len(order)) % num_folds
    return np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
