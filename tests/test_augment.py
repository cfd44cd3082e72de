"""Strict albumentations, RandAugment's operations and magnitude, train and eval transforms."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from effnetv2.data.randaugment import OPERATIONS, RandAugment
from effnetv2.data.transforms import Augmentation, EvalTransform, TrainTransform, strict
from effnetv2.errors import ConfigError

GEOMETRIC_AND_COLOUR = [name for name in OPERATIONS if name not in ("Identity", "AutoContrast", "Equalize")]


def natural_like(channels: int, size: int = 32) -> np.ndarray:
    """A smooth colourful image with texture, so every operation visibly changes it."""
    y, x = np.mgrid[0:size, 0:size] / size
    planes = [0.5 + 0.4 * np.sin(6 * x + 2 * c) * np.cos(5 * y - c) for c in range(channels)]
    noise = np.random.default_rng(0).normal(0, 0.03, (size, size, channels))
    return (np.clip(np.stack(planes, axis=2) + noise, 0, 1) * 255).astype(np.uint8)


def test_strict_rejects_a_misspelled_argument() -> None:
    with pytest.raises(ConfigError, match="probability"):
        strict(A.HorizontalFlip, probability=0.5)
    with pytest.raises(ConfigError, match="scal"):
        strict(A.RandomResizedCrop, size=(8, 8), scal=(0.5, 1.0))
    assert strict(A.HorizontalFlip, p=0.25).p == 0.25


def test_strict_rejects_an_invalid_value() -> None:
    with pytest.raises(ConfigError, match="HorizontalFlip"):
        strict(A.HorizontalFlip, p=2.0)


def test_unknown_randaugment_operation_raises() -> None:
    with pytest.raises(ConfigError, match="Rotat"):
        RandAugment(ops=["Rotat"])


@pytest.mark.parametrize("name", list(OPERATIONS))
@pytest.mark.parametrize("channels", [1, 3])
def test_operations_keep_shape_and_dtype(name: str, channels: int) -> None:
    image = natural_like(channels)
    for magnitude in (0, 5, 10, 30):
        for sign in (-1.0, 1.0):
            result = OPERATIONS[name](image, magnitude / 10, sign, 128)
            assert result.shape == image.shape and result.dtype == np.uint8


@pytest.mark.parametrize("name", GEOMETRIC_AND_COLOUR)
def test_magnitude_zero_is_identity(name: str) -> None:
    image = natural_like(3)
    assert np.array_equal(OPERATIONS[name](image, 0.0, 1.0, 128), image)


@pytest.mark.parametrize("name", GEOMETRIC_AND_COLOUR)
@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_larger_magnitude_changes_the_image_more(name: str, sign: float) -> None:
    image = natural_like(3)
    changes = [
        np.abs(OPERATIONS[name](image, m / 10, sign, 128).astype(float) - image).mean() for m in (2, 5, 9)
    ]
    assert changes[0] < changes[1] < changes[2], changes


@pytest.mark.parametrize("name", ["Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"])
def test_geometric_fill_is_grey_in_every_channel(name: str) -> None:
    gray_as_rgb = np.repeat(natural_like(1), 3, axis=2)
    result = OPERATIONS[name](gray_as_rgb, 1.0, 1.0, 128)
    assert np.array_equal(result[:, :, 0], result[:, :, 1]) and np.array_equal(
        result[:, :, 1], result[:, :, 2]
    )
    assert (result == 128).any()


def test_randaugment_reads_its_magnitude_at_every_call() -> None:
    augment = RandAugment(num_ops=2, magnitude=3.0)
    image = natural_like(3)
    augment(image=image)
    assert augment.params["magnitude"] == 3.0
    augment.magnitude = 17.0
    augment(image=image)
    assert augment.params["magnitude"] == 17.0 and len(augment.params["op_names"]) == 2


def test_randaugment_without_operations_is_identity() -> None:
    image = natural_like(3)
    assert np.array_equal(RandAugment(num_ops=0, magnitude=30)(image=image)["image"], image)


def test_randaugment_at_high_magnitude_changes_images() -> None:
    augment = RandAugment(num_ops=2, magnitude=15, ops=["Rotate", "Contrast"])
    image = natural_like(3)
    assert not np.array_equal(augment(image=image)["image"], image)


@pytest.mark.parametrize("channels", [1, 3])
def test_train_transform_follows_set_size(channels: int) -> None:
    transform = TrainTransform(32, Augmentation(crop_scale=(0.5, 1.0)), randaug_magnitude=10, seed=0)
    image = natural_like(channels, size=28)
    assert transform(image).shape == (32, 32, channels)
    transform.set_size(48)
    assert transform(image).shape == (48, 48, channels) and transform.size == 48


def test_train_transform_seed_gives_repeatable_augmentation() -> None:
    image = natural_like(3)
    first, second = TrainTransform(32, seed=5), TrainTransform(32, seed=5)
    assert all(np.array_equal(first(image), second(image)) for _ in range(5))
    second.reseed(6)
    assert any(not np.array_equal(first(image), second(image)) for _ in range(5))


def test_eval_transform_resizes_shorter_side_then_centre_crops() -> None:
    image = natural_like(3, size=64)[:40, :]  # 40 x 64
    transform = EvalTransform(32, crop_pct=0.8)  # shorter side -> 40, then centre 32 x 32
    expected = cv2.resize(image, (64, 40), interpolation=cv2.INTER_LINEAR)[4:36, 16:48]
    assert np.array_equal(transform(image), expected)
    transform.set_size(20)  # shorter side -> 25, longer -> 40
    assert transform(image).shape == (20, 20, 3) and transform.size == 20


def test_eval_transform_crop_pct_one_is_a_plain_resize() -> None:
    image = natural_like(1, size=28)
    expected = cv2.resize(image, (32, 32), interpolation=cv2.INTER_LINEAR)[:, :, None]
    assert np.array_equal(EvalTransform(32, crop_pct=1.0)(image), expected)


def test_eval_transform_rejects_bad_crop_pct() -> None:
    with pytest.raises(ConfigError, match="crop_pct"):
        EvalTransform(32, crop_pct=1.5)
