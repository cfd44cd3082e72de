"""RandAugment against the official code's formulas (google/automl efficientnetv2 autoaugment.py), and
the caps that keep every image in the frame at any magnitude up to 30 and any size from 32 to 600 px."""

from __future__ import annotations

import numpy as np
import pytest

from effnetv2.data.randaugment import (
    MAX_CUTOUT_FRACTION,
    MAX_TRANSLATE_FRACTION,
    OFFICIAL_OPERATIONS,
    OPERATIONS,
    RandAugment,
)
from effnetv2.errors import ConfigError

OFFICIAL_OPS = [
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout", "SolarizeAdd",
]  # fmt: skip


def photo_like(size: int, seed: int) -> np.ndarray:
    """A smooth colour image with random phases and texture, different per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    phases = rng.uniform(0, 6, size=6)
    planes = [0.5 + 0.4 * np.sin(5 * x + phases[c]) * np.cos(4 * y + phases[c + 3]) for c in range(3)]
    noise = rng.normal(0, 0.03, (size, size, 3))
    return (np.clip(np.stack(planes, axis=2) + noise, 0, 1) * 255).astype(np.uint8)


def dot(size: int) -> np.ndarray:
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[size // 2, size // 2] = 255
    return image


def column_of_dot(image: np.ndarray) -> int:
    return int(np.argmax(image[..., 0].max(axis=0)))


def test_official_policy_has_the_official_op_list() -> None:
    assert list(OFFICIAL_OPERATIONS) == OFFICIAL_OPS
    assert RandAugment(policy="official").ops == tuple(OFFICIAL_OPS)
    assert "Identity" in RandAugment(ops=["Identity", "Invert"], policy="official").ops
    with pytest.raises(ConfigError, match="policy"):
        RandAugment(policy="timm")
    with pytest.raises(ConfigError, match="Invert"):
        RandAugment(ops=["Invert"], policy="increasing")  # not in the increasing set


@pytest.mark.parametrize(("size", "magnitude"), [(224, 5), (300, 8), (384, 10)])
def test_official_translate_is_100_px_per_m_over_10(size: int, magnitude: int) -> None:
    shifted = OFFICIAL_OPERATIONS["TranslateX"](dot(size), magnitude / 10, 1.0, 0)
    assert abs(column_of_dot(shifted) - size // 2) == pytest.approx(10 * magnitude, abs=1)


def test_increasing_translate_is_relative_to_the_side() -> None:
    shifted = OPERATIONS["TranslateX"](dot(224), 0.5, 1.0, 0)
    assert abs(column_of_dot(shifted) - 112) == pytest.approx(50, abs=1)  # 100/224 x 224 px x M/10


@pytest.mark.parametrize("table", [OPERATIONS, OFFICIAL_OPERATIONS], ids=["increasing", "official"])
@pytest.mark.parametrize("size", [32, 64, 128, 224, 384, 600])
def test_translation_is_capped_so_the_image_stays_in_the_frame(table, size: int) -> None:
    cap = MAX_TRANSLATE_FRACTION * size
    for magnitude in (10, 22.5, 25, 30):
        shifted = table["TranslateX"](dot(size), magnitude / 10, 1.0, 0)
        assert abs(column_of_dot(shifted) - size // 2) <= cap + 1
        image = photo_like(size, 0)
        for name in ("TranslateX", "TranslateY"):
            assert table[name](image, magnitude / 10, -1.0, 128).std() > 10, (name, magnitude, size)


def test_official_colour_formulas() -> None:
    image = photo_like(64, 1)
    for name in ("Color", "Contrast", "Brightness", "Sharpness"):  # factor 1.8 * M/10 + 0.1: 1.0 at M = 5
        assert np.abs(OFFICIAL_OPERATIONS[name](image, 0.5, -1.0, 128).astype(int) - image).max() <= 1, name
    brighter = OFFICIAL_OPERATIONS["Brightness"](image, 1.0, -1.0, 128)  # factor 1.9 whatever the sign
    assert np.array_equal(brighter, np.clip(np.round(image * 1.9), 0, 255).astype(np.uint8)) or (
        np.abs(brighter.astype(int) - np.clip(image * 1.9, 0, 255)).max() <= 1
    )


def test_official_posterize_solarize_solarize_add_invert() -> None:
    image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    for magnitude in (2.5, 5, 7.5, 10):
        bits = int(4 * magnitude / 10)
        shift = 8 - bits
        assert np.array_equal(
            OFFICIAL_OPERATIONS["Posterize"](image, magnitude / 10, 1.0, 128), (image >> shift) << shift
        )
        threshold = int(256 * magnitude / 10)
        assert np.array_equal(
            OFFICIAL_OPERATIONS["Solarize"](image, magnitude / 10, 1.0, 128),
            np.where(image < threshold, image, 255 - image),
        )
        added = np.clip(image.astype(int) + int(110 * magnitude / 10), 0, 255)
        assert np.array_equal(
            OFFICIAL_OPERATIONS["SolarizeAdd"](image, magnitude / 10, 1.0, 128),
            np.where(image < 128, added, image),
        )
    assert np.array_equal(
        OFFICIAL_OPERATIONS["Posterize"](image, 3.0, 1.0, 128), image
    )  # > 8 bits: unchanged
    capped = OFFICIAL_OPERATIONS["SolarizeAdd"](image, 2.5, 1.0, 128)  # M = 25 adds what M = 10 adds
    assert np.array_equal(capped, OFFICIAL_OPERATIONS["SolarizeAdd"](image, 1.0, 1.0, 128))
    assert np.array_equal(OFFICIAL_OPERATIONS["Invert"](image, 0.0, 1.0, 128), 255 - image)


def test_official_cutout_is_a_grey_square_of_40_px_per_m_over_10_capped() -> None:
    image = photo_like(384, 2)
    cut = OFFICIAL_OPERATIONS["Cutout"](image, 1.0, 1.0, 128, (0.5, 0.5))
    changed = np.argwhere((cut != image).any(axis=2))
    assert changed.min(axis=0).tolist() == [192 - 40, 192 - 40] and changed.max(axis=0).tolist() == [231, 231]
    assert (cut[152:232, 152:232] == 128).all()
    small = OFFICIAL_OPERATIONS["Cutout"](photo_like(32, 2), 3.0, 1.0, 128, (0.5, 0.5))
    pad = int(MAX_CUTOUT_FRACTION * 32)
    assert (small == 128).all(axis=2).sum() <= (2 * pad) ** 2


def is_blank(image: np.ndarray) -> bool:
    return bool(image.std() < 1.0)


@pytest.mark.parametrize("policy", ["increasing", "official"])
@pytest.mark.parametrize("size", [128, 384])
def test_magnitude_25_blanks_no_image(policy: str, size: int) -> None:
    """Uncapped, 2 random ops at M = 25 blanked 106 of 400 images, and TranslateX alone 200 of 200."""
    augment = RandAugment(num_ops=2, magnitude=25, policy=policy)
    augment.set_random_seed(0)
    blanks = sum(is_blank(augment(image=photo_like(size, seed))["image"]) for seed in range(200))
    assert blanks == 0
    translate = RandAugment(num_ops=1, magnitude=25, ops=["TranslateX"], policy=policy)
    translate.set_random_seed(0)
    assert not any(is_blank(translate(image=photo_like(size, seed))["image"]) for seed in range(200))
