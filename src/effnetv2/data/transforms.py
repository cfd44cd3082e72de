"""Per-image train and eval transforms on uint8 H x W x C arrays, built strictly from albumentations.

albumentations 2.x only *warns* about unknown or renamed arguments, so a misspelled argument
silently falls back to a default. `strict()` constructs every transform in strict mode and turns
albumentations' warnings into errors. Image size and RandAugment magnitude are attributes the
loaders set between epochs; nothing is rebuilt.

`data.extra_transforms` adds albumentations transforms from the config ({_target_: albumentations.<Name>,
<arguments>}) at the end of the train pipeline: after the crop, the flip and RandAugment, so they see
the image at its final size and RandAugment's colour operations do not rework them (noise, dropout).
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import albumentations as A
import cv2
import numpy as np
from omegaconf import DictConfig, OmegaConf

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
            f"invalid arguments for albumentations.{transform_class.__name__}{kwargs}: {_one_line(error)}"
        ) from error


def _one_line(error: Exception) -> str:
    """albumentations passes on pydantic's validation message: several lines and a link."""
    return " ".join(str(error).split(" For further information")[0].split())


def build_extra_transform(entry: Mapping[str, Any], **override: Any) -> A.BasicTransform:
    """One `data.extra_transforms` entry as a strictly built albumentations transform (`override`
    replaces arguments); a misspelled class or argument raises ConfigError."""
    if not isinstance(entry, Mapping) or "_target_" not in entry:
        raise ConfigError(
            "data.extra_transforms entries are {_target_: albumentations.<Name>, ...} mappings, got "
            f"{entry!r} (a data config of your own needs `_recursive_: false` so Hydra passes them unbuilt)"
        )
    target = str(entry["_target_"])
    package, _, name = target.partition(".")
    name = name.rpartition(".")[2]
    transform_class = getattr(A, name, None) if package == "albumentations" else None
    if not (isinstance(transform_class, type) and issubclass(transform_class, A.BasicTransform)):
        matches = difflib.get_close_matches(name, [n for n in dir(A) if not n.startswith("_")], n=3)
        hint = f" (did you mean {' or '.join('albumentations.' + m for m in matches)}?)" if matches else ""
        raise ConfigError(
            f"data.extra_transforms: {target!r} is not an albumentations transform{hint}; "
            "write e.g. {_target_: albumentations.GaussNoise, p: 0.2}"
        )
    arguments = {key: value for key, value in entry.items() if key != "_target_"}
    try:
        return strict(transform_class, **{**arguments, **override})
    except ConfigError as error:
        raise ConfigError(f"data.extra_transforms: {error}") from error


def check_extra_transforms(entries: Sequence[Mapping[str, Any]], channels: int) -> None:
    """Build every entry and run it once (p=1) on a random image with `channels` channels: arguments
    albumentations accepts but cannot use, and transforms that change the image size (they would undo
    the crop to the current size), fail at start instead of in a loader worker."""
    image = np.random.default_rng(0).integers(0, 256, size=(32, 32, channels), dtype=np.uint8)
    for entry in entries:
        build_extra_transform(entry)  # the arguments as written (errors then quote them)
        transform = build_extra_transform(entry, p=1.0)
        name = type(transform).__name__
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # e.g. "not applicable to grayscale image"
                result = _with_channel_axis(transform(image=image)["image"], image)
        except Exception as error:
            raise ConfigError(
                f"data.extra_transforms: albumentations.{name} fails on a {channels}-channel image: "
                f"{_one_line(error)}"
            ) from error
        if result.shape != image.shape:
            raise ConfigError(
                f"data.extra_transforms: albumentations.{name} turns a {image.shape} image into "
                f"{result.shape}; use transforms that keep the size (the crop sets it)"
            )


@dataclass(frozen=True)
class Augmentation:
    """How train images are cropped, flipped and augmented and eval images cropped: one object that
    both loaders (torch and FFCV) read. The train size and the RandAugment magnitude change during
    training (progressive learning), so they travel separately."""

    crop_scale: tuple[float, ...] = (0.08, 1.0)
    crop_ratio: tuple[float, ...] = (3 / 4, 4 / 3)
    hflip: bool = True
    randaug_num_ops: int = 2
    randaug_ops: tuple[str, ...] | None = None
    randaug_policy: str = "increasing"
    crop_pct: float = 0.875
    extra_transforms: tuple[Mapping[str, Any], ...] = ()  # data.extra_transforms, unbuilt

    def __post_init__(self) -> None:
        """Config lists (OmegaConf containers from Hydra) become plain tuples and dicts."""
        set_field = partial(object.__setattr__, self)
        set_field("crop_scale", tuple(float(value) for value in self.crop_scale))
        set_field("crop_ratio", tuple(float(value) for value in self.crop_ratio))
        set_field("randaug_ops", tuple(self.randaug_ops) if self.randaug_ops is not None else None)
        set_field(
            "extra_transforms",
            tuple(
                OmegaConf.to_container(entry, resolve=True) if isinstance(entry, DictConfig) else entry
                for entry in self.extra_transforms
            ),
        )

    def check(self, channels: int, randaug_magnitude: float) -> None:
        """Fail at start, not in a loader worker: RandAugment's settings, crop_pct, extra transforms."""
        self.randaugment(randaug_magnitude)
        EvalTransform(32, self.crop_pct)
        check_extra_transforms(self.extra_transforms, channels)

    def randaugment(self, magnitude: float) -> RandAugment:
        return RandAugment(self.randaug_num_ops, magnitude, self.randaug_ops, policy=self.randaug_policy)

    def extra(self) -> list[A.BasicTransform]:
        """The extra transforms, built (strictly)."""
        return [build_extra_transform(entry) for entry in self.extra_transforms]


class TrainTransform:
    """Random-resized-crop to the current size, optional horizontal flip, RandAugment, then the extra
    transforms, as `augmentation` says.

    `set_size` and `randaugment.magnitude` change what the next call does.
    """

    def __init__(
        self,
        size: int,
        augmentation: Augmentation | None = None,
        randaug_magnitude: float = 10.0,
        seed: int | None = None,
    ) -> None:
        augmentation = augmentation or Augmentation()
        self.crop = strict(
            A.RandomResizedCrop,
            size=(size, size),
            scale=augmentation.crop_scale,
            ratio=augmentation.crop_ratio,
            interpolation=cv2.INTER_LINEAR,
            p=1.0,
        )
        self.randaugment = augmentation.randaugment(randaug_magnitude)
        steps = [self.crop]
        if augmentation.hflip:
            steps.append(strict(A.HorizontalFlip, p=0.5))
        if augmentation.randaug_num_ops > 0:
            steps.append(self.randaugment)
        steps.extend(augmentation.extra())
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
