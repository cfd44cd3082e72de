"""Stratified, seeded index splits over a label array: train/val, K-fold (also by groups) and subsets,
and the data module's plan of which samples train and which validate.

Pure functions of (labels, seed): the same seed always gives the same split, so a run can be
repeated and K folds of a cross-validation never overlap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from effnetv2.data.settings import Splits
from effnetv2.errors import ConfigError, DataError

log = logging.getLogger(__name__)


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


def _check_fold(num_folds: int, fold: int) -> None:
    if num_folds < 2:
        raise ConfigError(f"data.num_folds={num_folds}: K-fold needs at least 2 folds")
    if not 0 <= fold < num_folds:
        raise ConfigError(
            f"data.fold={fold} is out of range for data.num_folds={num_folds} (0..{num_folds - 1})"
        )


def stratified_kfold(
    labels: np.ndarray, num_folds: int, fold: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) sorted indices where fold `fold` of `num_folds` is val; folds partition the data.

    Each class is shuffled and dealt round-robin over the folds (continuing across classes), so
    fold sizes differ by at most one and every class is spread evenly.
    """
    labels = np.asarray(labels)
    _check_fold(num_folds, fold)
    order = np.concatenate(_class_members(labels, np.random.default_rng(seed)))
    fold_of = np.empty(len(labels), dtype=np.int64)
    fold_of[order] = np.arange(len(order)) % num_folds
    return np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)


def stratified_group_kfold(
    labels: np.ndarray, groups: np.ndarray, num_folds: int, fold: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) sorted indices where fold `fold` of `num_folds` is val and no group is in both.

    Whole groups are dealt, largest first (equal sizes in seeded random order), each to the fold where
    the class shares (a fold's samples of a class / all samples of that class) then vary least over
    the folds, ties to the fold with fewest samples: folds as stratified and as even as the groups
    allow (scikit-learn's StratifiedGroupKFold criterion).
    """
    labels = np.asarray(labels)
    _check_fold(num_folds, fold)
    names, group_of = np.unique(np.asarray(groups), return_inverse=True)
    if len(names) < num_folds:
        raise ConfigError(
            f"data.num_folds={num_folds} but data.group_column has only {len(names)} groups: "
            f"use at most {len(names)} folds"
        )
    _, class_of = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(names), class_of.max(initial=0) + 1), dtype=np.int64)
    np.add.at(counts, (group_of, class_of), 1)
    shuffled = np.random.default_rng(seed).permutation(len(names))
    order = shuffled[np.argsort(-counts[shuffled].sum(axis=1), kind="stable")]
    totals = counts.sum(axis=0)
    fold_counts = np.zeros((num_folds, counts.shape[1]), dtype=np.int64)
    fold_of_group = np.empty(len(names), dtype=np.int64)
    each_fold = np.eye(num_folds, dtype=np.int64)[:, :, None]  # candidate f adds the group to fold f only
    for group in order:
        candidates = fold_counts[None] + each_fold * counts[group]
        spread = (candidates / totals).std(axis=1).mean(axis=1)
        best = np.flatnonzero(np.isclose(spread, spread.min()))
        chosen = best[np.argmin(fold_counts[best].sum(axis=1))]
        fold_counts[chosen] += counts[group]
        fold_of_group[group] = chosen
    fold_of = fold_of_group[group_of]
    return np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)


def column_fold_count(folds: np.ndarray, num_folds: int, fold: int) -> int:
    """The number of folds K in a data set's own fold column (data.fold_column), checked: the column
    numbers its folds 0..K-1, `num_folds` is 1 (take K from the column) or K, and `fold` is one of them."""
    present = np.unique(folds)
    count = len(present)
    if count < 2 or not np.array_equal(present, np.arange(count)):
        raise DataError(
            f"data.fold_column holds the folds {present.tolist()[:20]}: it needs at least 2 folds, "
            "numbered 0..K-1 without gaps"
        )
    if num_folds not in (1, count):
        raise ConfigError(
            f"data.num_folds={num_folds} but data.fold_column has {count} folds: "
            f"set data.num_folds={count} or leave it at 1"
        )
    if not 0 <= fold < count:
        raise ConfigError(
            f"data.fold={fold} is out of range for the {count} folds of data.fold_column (0..{count - 1})"
        )
    return count


def check_groups_apart(groups: np.ndarray, train: np.ndarray, val: np.ndarray) -> None:
    """Refuse train/val indices (e.g. a fold of data.fold_column) that put a group on both sides."""
    shared = np.intersect1d(groups[train], groups[val])
    if len(shared):
        raise DataError(
            f"{len(shared)} groups of data.group_column have samples in both train and val, e.g. "
            f"{shared[:5].tolist()}: fix data.fold_column, or drop it to make group folds"
        )


Plan = dict[str, tuple[str, np.ndarray]]  # role ("train", "val") -> (split, indices into it)


def plan_roles(
    settings: Splits,
    labels: Callable[[str], np.ndarray | None],
    folds: np.ndarray | None,
    groups: np.ndarray | None,
) -> tuple[Plan, int]:
    """Which split's samples, and which indices of it, train and validate; and the number of folds
    (data.fold_column's own when set). `labels(split)` is None for a split the data set lacks.

    Validation, in order of precedence: fold `fold` of the CSV's own folds (data.fold_column); fold
    `fold` of a stratified K-fold when num_folds > 1; an explicit val split (image_folder's root/val);
    a stratified `val_fraction` of train; otherwise the (labeled) test split. With a CSV group_column,
    K-fold and the val_fraction split keep every group on one side (the val_fraction split is fold 0
    of round(1 / val_fraction) group folds). `subset` first draws a stratified subset of train.
    """
    train_labels = labels("train")
    pool = np.arange(len(train_labels))
    if settings.subset is not None:
        pool = stratified_subset(train_labels, settings.subset, settings.seed)
    fold, seed = settings.fold, settings.seed
    if folds is not None:
        num_folds = column_fold_count(folds, settings.num_folds, fold)
        train, val = pool[folds[pool] != fold], pool[folds[pool] == fold]
        if groups is not None:
            check_groups_apart(groups, train, val)
        log.info("validation: fold %d of the %d in data.fold_column", fold, num_folds)
        return {"train": ("train", train), "val": ("train", val)}, num_folds
    pool_labels, pool_groups = train_labels[pool], groups[pool] if groups is not None else None
    if settings.num_folds > 1:
        if pool_groups is not None:
            train, val = stratified_group_kfold(pool_labels, pool_groups, settings.num_folds, fold, seed)
        else:
            train, val = stratified_kfold(pool_labels, settings.num_folds, fold, seed)
        log.info("validation: fold %d of %d", fold, settings.num_folds)
        return {"train": ("train", pool[train]), "val": ("train", pool[val])}, settings.num_folds
    if (val_labels := labels("val")) is not None:
        log.info("validation: the data set's val split")
        return {"train": ("train", pool), "val": ("val", np.arange(len(val_labels)))}, settings.num_folds
    if settings.val_fraction > 0:
        if pool_groups is not None:
            num_folds = max(2, round(1 / settings.val_fraction))
            train, val = stratified_group_kfold(pool_labels, pool_groups, num_folds, 0, seed)
        else:
            train, val = stratified_split(pool_labels, settings.val_fraction, seed)
        log.info("validation: a stratified %.0f%% of train", 100 * len(val) / len(pool))
        return {"train": ("train", pool[train]), "val": ("train", pool[val])}, settings.num_folds
    plan = {"train": ("train", pool)}
    if (test_labels := labels("test")) is not None and test_labels.min(initial=0) >= 0:
        log.info("validation: the test split (data.val_fraction=0)")
        plan["val"] = ("test", np.arange(len(test_labels)))
    else:
        log.info("validation: none (data.val_fraction=0 and no labeled test split)")
    return plan, settings.num_folds
