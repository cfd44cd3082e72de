"""Stratified, seeded splits: train/val, K-fold, subsets."""

from __future__ import annotations

import numpy as np
import pytest

from effnetv2.data.splits import stratified_kfold, stratified_split, stratified_subset
from effnetv2.errors import ConfigError


@pytest.fixture
def labels() -> np.ndarray:
    """Imbalanced labels: 3 classes with 50, 30 and 17 samples, shuffled."""
    values = np.repeat([0, 1, 2], [50, 30, 17])
    return np.random.default_rng(1).permutation(values)


def test_split_is_a_stratified_partition(labels: np.ndarray) -> None:
    train, val = stratified_split(labels, 0.2, seed=0)
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    assert len(val) == round(0.2 * len(labels))
    for value, count in zip(*np.unique(labels, return_counts=True)):
        assert abs((labels[val] == value).sum() - 0.2 * count) <= 1


def test_split_same_seed_same_split_other_seed_other_split(labels: np.ndarray) -> None:
    first = stratified_split(labels, 0.2, seed=3)
    again = stratified_split(labels, 0.2, seed=3)
    other = stratified_split(labels, 0.2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize("num_folds", [2, 5])
def test_kfold_every_sample_is_validation_exactly_once(labels: np.ndarray, num_folds: int) -> None:
    seen = np.zeros(len(labels), dtype=int)
    for fold in range(num_folds):
        train, val = stratified_kfold(labels, num_folds, fold, seed=0)
        assert np.intersect1d(train, val).size == 0
        assert len(train) + len(val) == len(labels)
        seen[val] += 1
        for value, count in zip(*np.unique(labels, return_counts=True)):
            assert abs((labels[val] == value).sum() - count / num_folds) <= 1
    assert (seen == 1).all()


def test_kfold_is_deterministic_per_seed(labels: np.ndarray) -> None:
    assert np.array_equal(
        stratified_kfold(labels, 5, 2, seed=7)[1], stratified_kfold(labels, 5, 2, seed=7)[1]
    )
    assert not np.array_equal(
        stratified_kfold(labels, 5, 2, seed=7)[1], stratified_kfold(labels, 5, 2, seed=8)[1]
    )


def test_kfold_rejects_a_fold_out_of_range(labels: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="data.fold=5"):
        stratified_kfold(labels, 5, 5, seed=0)
    with pytest.raises(ConfigError, match="at least 2"):
        stratified_kfold(labels, 1, 0, seed=0)


@pytest.mark.parametrize(("size", "expected"), [(20, 20), (0.5, 48)])
def test_subset_has_the_requested_size_and_class_balance(
    labels: np.ndarray, size: int | float, expected: int
) -> None:
    chosen = stratified_subset(labels, size, seed=0)
    assert len(chosen) == expected == len(np.unique(chosen))
    for value, count in zip(*np.unique(labels, return_counts=True)):
        assert abs((labels[chosen] == value).sum() - expected * count / len(labels)) <= 1
    assert np.array_equal(chosen, stratified_subset(labels, size, seed=0))


def test_subset_rejects_impossible_sizes(labels: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="data.subset"):
        stratified_subset(labels, 1000, seed=0)
    with pytest.raises(ConfigError, match="data.subset"):
        stratified_subset(labels, 1.5, seed=0)
