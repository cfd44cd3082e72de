"""RandAugment in worker processes (the FFCV path's augmentation stage): same images as in the calling
thread, magnitude changes reach the workers, failures become DataError, nothing is left behind."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pytest

from effnetv2.data.augment_pool import AugmentPool
from effnetv2.data.randaugment import RandAugment
from effnetv2.errors import DataError


class Failing(A.ImageOnlyTransform):
    """Raises on every image, as a buggy custom augmentation would."""

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        raise ValueError("augmentation bug")


def batch(count: int = 12, size: int = 24) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def augmented(pool: AugmentPool, images: np.ndarray) -> np.ndarray:
    destination = np.zeros((len(images) + 3, *images.shape[1:]), np.uint8)  # FFCV's buffers can be larger
    return pool(images, destination).copy()


def test_randaugment_pickles_with_its_arguments() -> None:
    original = RandAugment(3, 7.5, ops=["Rotate", "Cutout"], fill=100, policy="official", p=0.5)
    copy = pickle.loads(pickle.dumps(original))
    assert (copy.num_ops, copy.magnitude, copy.ops, copy.fill, copy.policy, copy.p) == (
        3, 7.5, ("Rotate", "Cutout"), 100, "official", 0.5,
    )  # fmt: skip


def test_processes_give_the_images_the_calling_thread_gives() -> None:
    images = batch()
    results = {}
    for processes in (1, 2, 3):
        pool = AugmentPool(RandAugment(2, 10.0), processes, seed=(7, 0))
        try:
            results[processes] = [augmented(pool, images), augmented(pool, images)]
        finally:
            pool.close()
    assert results[1][0].shape == images.shape
    assert (results[1][0] != images).mean() > 0.5  # augmented
    assert (results[1][0] != results[1][1]).mean() > 0.5  # new draws for the next batch
    for processes in (2, 3):
        for ours, reference in zip(results[processes], results[1]):
            np.testing.assert_array_equal(ours, reference)


def test_a_magnitude_change_reaches_the_workers() -> None:
    randaugment = RandAugment(1, 10.0, ops=["Rotate"])
    pool = AugmentPool(randaugment, 2, seed=0)
    images = batch()
    try:
        assert (augmented(pool, images) != images).mean() > 0.5
        randaugment.magnitude = 0.0  # as progressive learning sets it between stages
        np.testing.assert_array_equal(augmented(pool, images), images)
    finally:
        pool.close()


def test_an_error_in_a_worker_raises_data_error_with_its_traceback() -> None:
    pool = AugmentPool(Failing(p=1.0), 2)
    try:
        with pytest.raises(DataError, match=r"(?s)augmentation failed in worker process.*augmentation bug"):
            augmented(pool, batch())
    finally:
        pool.close()


def test_a_killed_worker_raises_data_error_and_the_next_batch_starts_afresh() -> None:
    pool = AugmentPool(RandAugment(2, 10.0), 2)
    images = batch()
    try:
        augmented(pool, images)
        pool._workers[1].process.kill()
        with pytest.raises(DataError, match="exited with code -9"):
            augmented(pool, images)
        assert augmented(pool, images).shape == images.shape
    finally:
        pool.close()


def test_close_stops_the_workers_and_frees_the_shared_buffer() -> None:
    pool = AugmentPool(RandAugment(2, 10.0), 2)
    augmented(pool, batch(size=16))
    augmented(pool, batch(size=32))  # a larger image size: a new, larger buffer
    workers = [worker.process for worker in pool._workers]
    name = pool._buffers[0].name
    pool.close()
    assert [process.returncode for process in workers] == [0, 0]
    assert not (Path("/dev/shm") / name.lstrip("/")).exists()


def test_a_transform_that_cannot_be_pickled_is_named() -> None:
    pool = AugmentPool(A.Lambda(image=lambda image, **params: image), 2)
    with pytest.raises(DataError, match=r"cannot be pickled.*data.num_workers=1"):
        augmented(pool, batch())
    pool.close()
