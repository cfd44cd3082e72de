"""Per-image train and eval transforms on uint8 H x W x C arrays, built strictly from albumentations.

albumentations 2.x only *warns* about unknown or renamed arguments, so a misspelled argument
silently falls back to a default. `strict()` constructs every transform in strict mode and turns
albumentations' warnings into errors. Image size and RandAugment magnitude are attributes the
loaders set between epochs; nothing is rebuilt.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, TypeVar

import albumentations as A
import cv2
import numpy as np

from effnetv2.data.randaugment import RandAugment
from effnetv2.errors import ConfigError

T = TypeVar("T")


def strict(transform_class: type[T], **kwargs: Any) -> T:
    """Build an albumentations transform; unknown or invalid arguments raise ConfigError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return transform_class(**kwargs, strict=True)
    except (ValueError, TypeError, UserWarning, DeprecationWarning) as error:
        raise ConfigError(
            f"invalid arguments for albumentations.{transform_class.__name__}{kwargs}: {error}"
        ) from error


class TrainTransform:
    """Random-resized-crop to the current size, optional horizontal flip, RandAugment.

    `set_size` and `randaugment.magnitude` change what the next call does.
    """

    def __init__(
        self,
        size: int,
        crop_scale: Sequence[float] = (0.08, 1.0),
        crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
        hflip: bool = True,
        randaug_num_ops: int = 2,
        randaug_magnitude: float = 10.0,
        randaug_ops: Sequence[str] | None = None,
        randaug_policy: str = "increasing",
        seed: int | None = None,
    ) -> None:
        self.crop = strict(
            A.RandomResizedCrop,
            size=(size, size),
            scale=tuple(crop_scale),
            ratio=tuple(crop_ratio),
            interpolation=cv2.INTER_LINEAR,
            p=1.0,
        )
        self.randaugment = RandAugment(randaug_num_ops, randaug_magnitude, randaug_ops, policy=randaug_policy)
        steps = [self.crop]
        if hflip:
            steps.append(strict(A.HorizontalFlip, p=0.5))
        if randaug_num_ops > 0:
            steps.append(self.randaugment)
        self.pipeline = strict(A.Compose, transforms=steps, seed=seed)

    @property
    def size(self) -> int:
        return self.crop.size[0]

    def set_size(self, size: int) -> None:
        self.crop.size = (size, size)

    def reseed(self, seed: int) -> None:
        """Give this copy its own random stream (each DataLoader worker calls it)."""
        self.pipeline.set_random_seed(seed)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return _with_channel_axis(self.pipeline(image=image)["image"], image)


class EvalTransform:
    """Resize the shorter side to size / crop_pct, then centre-crop size x size.

    crop_pct = 1 is a plain resize for square images (used for 28 px Fashion-MNIST).
    """

    def __init__(self, size: int, crop_pct: float = 0.875) -> None:
        if not 0.0 < crop_pct <= 1.0:
            raise ConfigError(f"data.crop_pct={crop_pct} must be in (0, 1]")
        self.crop_pct = crop_pct
        self.resize = strict(
            A.SmallestMaxSize, max_size=self._resize_to(size), interpolation=cv2.INTER_LINEAR, p=1.0
        )
        self.crop = strict(A.CenterCrop, height=size, width=size, p=1.0)
        self.pipeline = strict(A.Compose, transforms=[self.resize, self.crop])

    def _resize_to(self, size: int) -> int:
        return int(round(size / self.crop_pct))

    @property
    def size(self) -> int:
        return self.crop.height

    def set_size(self, size: int) -> None:
        self.resize.max_size = self._resize_to(size)
        self.crop.height = self.crop.width = size

    def reseed(self, seed: int) -> None:
        """Deterministic: nothing to reseed (kept so loaders treat both transforms alike)."""

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return _with_channel_axis(self.pipeline(image=image)["image"], image)


def _with_channel_axis(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    return result[:, :, None] if result.ndim == 2 and like.ndim == 3 else result
