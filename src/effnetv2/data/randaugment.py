"""RandAugment (Cubuk et al. 2020) built from albumentations' image operations.

N operations drawn uniformly per image, each at magnitude M on the TF/paper scale: M = 10 is the
standard strength, EfficientNetV2 goes up to 25 and nothing stops at 30. The operation set is the
official `autoaugment.py` RandAugment set minus the Invert/SolarizeAdd/Cutout extras.

Geometric operations use the official ranges per M/10: rotate 30 degrees, shear 0.3, translate
100/224 of the image side (the official 100 px at 224 px), each with a random sign. Colour
operations use the "increasing" forms (as timm does) because the official ones are not monotone
(e.g. its enhance factor 1.8 * M/10 + 0.1 is the identity at M = 5): enhance factor
1 +- 0.9 * M/10 (at least 0.1), posterize to 8 - 4 * M/10 bits, solarize above 256 - 128 * M/10.
Progressive learning relies on "larger M = stronger augmentation" for every operation.

`magnitude` is a plain attribute read on every call, so it can change between epochs without
rebuilding anything; the magnitude used by a call is in the params passed to `apply`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.geometric import functional as fgeometric
from albumentations.augmentations.pixel import functional as fpixel

from effnetv2.errors import ConfigError

_TRANSLATE_FRACTION = 100 / 224
_SMOOTH_KERNEL = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13  # PIL's SMOOTH


def _enhance_factor(level: float, sign: float) -> float:
    return max(0.1, 1.0 + sign * 0.9 * level)


def _keep_channels(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    """cv2 drops a trailing channel axis of size 1; put it back."""
    return result.reshape(like.shape) if result.ndim != like.ndim else result


def _warp(image: np.ndarray, matrix: np.ndarray, fill: int) -> np.ndarray:
    """Apply a 2 x 3 affine matrix (output -> input convention of cv2.warpAffine's forward map)."""
    height, width = image.shape[:2]
    result = fgeometric.warp_affine(
        image,
        np.vstack([matrix, [0.0, 0.0, 1.0]]),
        interpolation=cv2.INTER_LINEAR,
        fill=float(
            fill
        ),  # albumentations extends only a float fill to every channel (an int fills channel 0)
        border_mode=cv2.BORDER_CONSTANT,
        output_shape=(height, width),
    )
    return _keep_channels(result, image)


def _identity(image: np.ndarray, level: float, sign: float, fill: int) -> np.ndarray:
    return image


def _auto_contrast(image: np.ndarray, level: float, sign: float, fill: int) -> np.ndarray:
    return _keep_channels(fpixel.auto_contrast(image, cutoff=0, ignore=None, method="pil"), image)


def _equalize(image: np.ndarray, level: float, sign: float, fill: int) -> np.ndarray:
    return _keep_channels(fpixel.equalize(image, mode="pil", by_channels=True), image)


def _rotate(image: np.ndarray, level: float, sign: float, fill: int) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2 - 0.5, height / 2 - 0.5), sign * 30.0 * level, 1.0)
    return _warp(image, matrix, fill)


def _shear(axis: int) -> Callable[[np.ndarray, float, float, int], np.ndarray]:
    def shear(image: np.ndarray, level: float, sign: float, fill: int) -> np.ndarray:
        height, width = image.shape[:2]
        factor = sign * 0.3 * level
        centre = (width / 2 - 0.5, height / 2 - 0.5)
        matrix = np.eye(3)[:2].copy()
        if axis == 0:  # x' = x + factor * (y - cy)
            matrix[0, 1], matrix[0, 2] = factor, -factor * centre[1]
        else:  # y' = y + factor * (x - cx)
            matrix[1, 0], matrix[1, 2] = factor, -factor * centre[0]
        return _warp(image, matrix, fill)

    return shear


def _translate(axis: int) -> Callable[[np.ndarray, float, float, int], np.ndarray]:
    def translate(image: np.ndarray, level: float, sign: float, fill: int) -> np.ndarray:
        side = image.shape[1 - axis]
        matrix = np.eye(3)[:2].copy()
        matrix[axis, 2] = sign * _TRANSLATE_FRACTION * level * side
        return _warp(image, matrix, fill)

    return translate


def _solarize(image: np.ndarray, level: float, sign: float, fill: int) -> np.ndarray:
    threshold = min(max(256.0 - 128.0 * level, 0.0), 256.0)
    return _keep_channels(fpixel.solarize(image, threshold / 255.0), image)


def _posterize(image: np.ndarray, level: float, sign: float, fill: int) -> np.ndarray:
    bits = int(min(max(8 - round(4 * level), 1), 8))
    return image if bits == 8 else _keep_channels(fpixel.posterize(image, bits), image)


def _color(image: np.ndarray, level: float, sign: float, fill: int) -> np.ndarray:
    if image.shape[2] != 3:
        return image  # saturation is undefined for grayscale
    return fpixel.adjust_saturation_torchvision(image, _enhance_factor(level, sign))


def _contrast(image: np.ndarray, level: float, sign: float, fill: int) -> np.ndarray:
    return _keep_channels(fpixel.adjust_contrast_torchvision(image, _enhance_factor(level, sign)), image)


def _brightness(image: np.ndarray, level: float, sign: float, fill: int) -> np.ndarray:
    return _keep_channels(fpixel.adjust_brightness_torchvision(image, _enhance_factor(level, sign)), image)


def _sharpness(image: np.ndarray, level: float, sign: float, fill: int) -> np.ndarray:
    """PIL's ImageEnhance.Sharpness: blend of the image and its smoothed version."""
    factor = _enhance_factor(level, sign)
    kernel = (1.0 - factor) * _SMOOTH_KERNEL
    kernel[1, 1] += factor
    return _keep_channels(fpixel.convolve(image, kernel), image)


OPERATIONS: dict[str, Callable[[np.ndarray, float, float, int], np.ndarray]] = {
    "Identity": _identity,
    "AutoContrast": _auto_contrast,
    "Equalize": _equalize,
    "Rotate": _rotate,
    "Solarize": _solarize,
    "Color": _color,
    "Posterize": _posterize,
    "Contrast": _contrast,
    "Brightness": _brightness,
    "Sharpness": _sharpness,
    "ShearX": _shear(0),
    "ShearY": _shear(1),
    "TranslateX": _translate(0),
    "TranslateY": _translate(1),
}


class RandAugment(A.ImageOnlyTransform):
    """Apply `num_ops` operations drawn from `ops`, each at `magnitude` (TF scale, 10 = standard).

    An albumentations transform, so it composes with the others and is reseeded with them
    (`set_random_seed`), which DataLoader workers need.
    """

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: float = 10.0,
        ops: Sequence[str] = tuple(OPERATIONS),
        fill: int = 128,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        unknown = [name for name in ops if name not in OPERATIONS]
        if unknown:
            raise ConfigError(f"unknown RandAugment operation(s) {unknown}; known: {list(OPERATIONS)}")
        if num_ops < 0 or not math.isfinite(magnitude) or magnitude < 0:
            raise ConfigError(
                f"RandAugment needs num_ops >= 0 and magnitude >= 0, got {num_ops}, {magnitude}"
            )
        self.num_ops = num_ops
        self.magnitude = float(magnitude)
        self.ops = tuple(ops)
        self.fill = fill

    def get_params(self) -> dict[str, Any]:
        names = [self.py_random.choice(self.ops) for _ in range(self.num_ops)]
        signs = [self.py_random.choice((-1.0, 1.0)) for _ in range(self.num_ops)]
        return {"op_names": names, "signs": signs, "magnitude": self.magnitude}

    def apply(
        self, img: np.ndarray, op_names: list[str], signs: list[float], magnitude: float, **params: Any
    ) -> np.ndarray:
        level = magnitude / 10.0
        for name, sign in zip(op_names, signs):
            img = OPERATIONS[name](img, level, sign, self.fill)
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("num_ops", "magnitude", "ops", "fill")
