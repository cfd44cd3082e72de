"""RandAugment (Cubuk et al. 2020) built from albumentations' image operations.

N operations drawn uniformly per image, each at magnitude M on the TF/paper scale: M = 10 is the
standard strength, EfficientNetV2 goes up to 25 and nothing stops at 30. Two policies:

- `increasing` (default): the official set minus Invert/SolarizeAdd/Cutout, plus Identity, with
  colour operations that grow with M (the official ones are not monotone: its enhance factor
  1.8 * M/10 + 0.1 is the identity at M = 5): enhance factor 1 +- 0.9 * M/10 (at least 0.1),
  posterize to 8 - 4 * M/10 bits (at least 2), solarize above 256 - 128 * M/10; translate 100/224 of the side
  per M/10. Progressive learning on small data relies on "larger M = stronger" for every operation.
- `official` (google/automl efficientnetv2 `autoaugment.py`): its 16 operations and formulas:
  enhance 1.8 * M/10 + 0.1 without sign, posterize to int(4 * M/10) bits, solarize at int(256 * M/10),
  SolarizeAdd int(110 * M/10), Cutout half side int(40 * M/10) px, translate 100 px per M/10.

Both: rotate 30 degrees and shear 0.3 per M/10 with a random sign; grey fill 128. Caps, so that no
magnitude up to 30 blanks an image at any size: translation stops at MAX_TRANSLATE_FRACTION of the
side and Cutout at MAX_CUTOUT_FRACTION (the official pixel constants were made for 224 px); the
official enhance factor and SolarizeAdd stop at their M = 10 values (beyond, SolarizeAdd followed by
Brightness turned images plain white).

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

Position = tuple[float, float]  # where an operation with a location (Cutout) acts, as fractions of H, W
Operation = Callable[..., np.ndarray]  # (image, level, sign, fill, position) -> image, level = M / 10
CENTRE: Position = (0.5, 0.5)
POLICIES = ("increasing", "official")

_TRANSLATE_FRACTION = 100 / 224  # increasing policy: the official 100 px at 224 px, relative to the side
_TRANSLATE_PIXELS = 100  # official policy: absolute pixels per M / 10 (official translate_const)
MAX_TRANSLATE_FRACTION = 0.45  # of the side: 2 translations still keep 10% of the image in the frame
_CUTOUT_PIXELS = 40  # official cutout_const: half side of the grey square per M / 10
MAX_CUTOUT_FRACTION = 0.2  # half side of the square, of the image's shorter side
MAX_OFFICIAL_COLOUR_LEVEL = (
    1.0  # official enhance / SolarizeAdd stop at M = 10 (factor 4.6 at M = 25 whitens)
)
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


def _identity(
    image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
) -> np.ndarray:
    return image


def _auto_contrast(
    image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
) -> np.ndarray:
    return _keep_channels(fpixel.auto_contrast(image, cutoff=0, ignore=None, method="pil"), image)


def _equalize(
    image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
) -> np.ndarray:
    return _keep_channels(fpixel.equalize(image, mode="pil", by_channels=True), image)


def _rotate(
    image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2 - 0.5, height / 2 - 0.5), sign * 30.0 * level, 1.0)
    return _warp(image, matrix, fill)


def _shear(axis: int) -> Operation:
    def shear(
        image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
    ) -> np.ndarray:
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


def _translate(axis: int, absolute: bool) -> Operation:
    """Shift by a fraction of the side (increasing policy) or by absolute pixels (official), at most
    MAX_TRANSLATE_FRACTION of the side: uncapped, the official 100 px x M/10 shifts a 224 px image out
    of the frame from M = 22.4 on, and a 32 px image from M = 3.2."""

    def translate(
        image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
    ) -> np.ndarray:
        side = image.shape[1 - axis]
        wanted = _TRANSLATE_PIXELS * level if absolute else _TRANSLATE_FRACTION * level * side
        matrix = np.eye(3)[:2].copy()
        matrix[axis, 2] = sign * min(wanted, MAX_TRANSLATE_FRACTION * side)
        return _warp(image, matrix, fill)

    return translate


def _solarize(
    image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
) -> np.ndarray:
    threshold = min(max(256.0 - 128.0 * level, 0.0), 256.0)
    return _keep_channels(fpixel.solarize(image, threshold / 255.0), image)


def _posterize(
    image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
) -> np.ndarray:
    bits = int(min(max(8 - round(4 * level), 2), 8))  # 1 bit turns a light or dark image into one grey
    return image if bits == 8 else _keep_channels(fpixel.posterize(image, bits), image)


def _color(factor: float, image: np.ndarray) -> np.ndarray:
    if image.shape[2] != 3:
        return image  # saturation is undefined for grayscale
    return fpixel.adjust_saturation_torchvision(image, factor)


def _contrast(factor: float, image: np.ndarray) -> np.ndarray:
    return _keep_channels(fpixel.adjust_contrast_torchvision(image, factor), image)


def _brightness(factor: float, image: np.ndarray) -> np.ndarray:
    return _keep_channels(fpixel.adjust_brightness_torchvision(image, factor), image)


def _sharpness(factor: float, image: np.ndarray) -> np.ndarray:
    """PIL's ImageEnhance.Sharpness: blend of the image and its smoothed version."""
    kernel = (1.0 - factor) * _SMOOTH_KERNEL
    kernel[1, 1] += factor
    return _keep_channels(fpixel.convolve(image, kernel), image)


def _enhance(adjust: Callable[[float, np.ndarray], np.ndarray], official: bool) -> Operation:
    """PIL-style enhancement; official factor 1.8 * M/10 + 0.1 (no sign), increasing 1 +- 0.9 * M/10."""

    def enhance(
        image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
    ) -> np.ndarray:
        factor = (
            1.8 * min(level, MAX_OFFICIAL_COLOUR_LEVEL) + 0.1 if official else _enhance_factor(level, sign)
        )
        return adjust(factor, image)

    return enhance


def _official_posterize(
    image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
) -> np.ndarray:
    """Keep int(4 * M/10) bits (0 bits: black, as the official code; more than 8: unchanged)."""
    bits = min(int(4 * level), 8)
    if bits >= 8:
        return image
    shift = 8 - bits
    return (image >> shift) << shift if bits > 0 else np.zeros_like(image)


def _official_solarize(
    image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
) -> np.ndarray:
    """Invert the pixels at or above int(256 * M/10)."""
    threshold = int(256 * level)
    return np.where(image < threshold, image, 255 - image).astype(np.uint8)


def _official_solarize_add(
    image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
) -> np.ndarray:
    """Add int(110 * M/10) to the pixels below 128 (clipped), M capped at 10 as the colour operations."""
    addition = int(110 * min(level, MAX_OFFICIAL_COLOUR_LEVEL))
    added = np.clip(image.astype(np.int32) + addition, 0, 255).astype(np.uint8)
    return np.where(image < 128, added, image)


def _official_invert(
    image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
) -> np.ndarray:
    return 255 - image


def _official_cutout(
    image: np.ndarray, level: float, sign: float, fill: int, position: Position = CENTRE
) -> np.ndarray:
    """A grey square of half side int(40 * M/10) px at a random centre, at most MAX_CUTOUT_FRACTION of
    the shorter side (uncapped, the official 40 px x M/10 covers a whole 32 px image from M = 4)."""
    height, width = image.shape[:2]
    pad = min(int(_CUTOUT_PIXELS * level), int(MAX_CUTOUT_FRACTION * min(height, width)))
    if pad <= 0:
        return image
    cy, cx = int(position[0] * height), int(position[1] * width)
    result = image.copy()
    result[max(0, cy - pad) : cy + pad, max(0, cx - pad) : cx + pad] = fill
    return result


OPERATIONS: dict[str, Operation] = {
    "Identity": _identity,
    "AutoContrast": _auto_contrast,
    "Equalize": _equalize,
    "Rotate": _rotate,
    "Solarize": _solarize,
    "Color": _enhance(_color, official=False),
    "Posterize": _posterize,
    "Contrast": _enhance(_contrast, official=False),
    "Brightness": _enhance(_brightness, official=False),
    "Sharpness": _enhance(_sharpness, official=False),
    "ShearX": _shear(0),
    "ShearY": _shear(1),
    "TranslateX": _translate(0, absolute=False),
    "TranslateY": _translate(1, absolute=False),
}

# google/automl efficientnetv2 autoaugment.py `distort_image_with_randaugment`: its op list and
# level-to-argument rules, with the translate and cutout caps above.
OFFICIAL_OPERATIONS: dict[str, Operation] = {
    "AutoContrast": _auto_contrast,
    "Equalize": _equalize,
    "Invert": _official_invert,
    "Rotate": _rotate,
    "Posterize": _official_posterize,
    "Solarize": _official_solarize,
    "Color": _enhance(_color, official=True),
    "Contrast": _enhance(_contrast, official=True),
    "Brightness": _enhance(_brightness, official=True),
    "Sharpness": _enhance(_sharpness, official=True),
    "ShearX": _shear(0),
    "ShearY": _shear(1),
    "TranslateX": _translate(0, absolute=True),
    "TranslateY": _translate(1, absolute=True),
    "Cutout": _official_cutout,
    "SolarizeAdd": _official_solarize_add,
}

POLICY_OPERATIONS = {"increasing": OPERATIONS, "official": OFFICIAL_OPERATIONS}


class RandAugment(A.ImageOnlyTransform):
    """Apply `num_ops` operations drawn from `ops` (default: all of `policy`'s), each at `magnitude`
    (TF scale, 10 = standard). `policy`: "increasing" (every operation grows with M; the default for
    small data) or "official" (the official op list and formulas).

    An albumentations transform, so it composes with the others and is reseeded with them
    (`set_random_seed`), which DataLoader workers need.
    """

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: float = 10.0,
        ops: Sequence[str] | None = None,
        fill: int = 128,
        policy: str = "increasing",
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if policy not in POLICY_OPERATIONS:
            raise ConfigError(f"unknown RandAugment policy {policy!r}; known: {list(POLICY_OPERATIONS)}")
        table = {"Identity": _identity, **POLICY_OPERATIONS[policy]}  # Identity: accepted in both
        ops = tuple(POLICY_OPERATIONS[policy]) if ops is None else tuple(ops)
        unknown = [name for name in ops if name not in table]
        if unknown:
            raise ConfigError(
                f"unknown RandAugment operation(s) {unknown} for policy {policy!r}; known: {list(table)}"
            )
        if num_ops < 0 or not math.isfinite(magnitude) or magnitude < 0:
            raise ConfigError(
                f"RandAugment needs num_ops >= 0 and magnitude >= 0, got {num_ops}, {magnitude}"
            )
        self.num_ops = num_ops
        self.magnitude = float(magnitude)
        self.ops = ops
        self.fill = fill
        self.policy = policy
        self._table = table

    def get_params(self) -> dict[str, Any]:
        names = [self.py_random.choice(self.ops) for _ in range(self.num_ops)]
        signs = [self.py_random.choice((-1.0, 1.0)) for _ in range(self.num_ops)]
        positions = [(self.py_random.random(), self.py_random.random()) for _ in range(self.num_ops)]
        return {"op_names": names, "signs": signs, "positions": positions, "magnitude": self.magnitude}

    def apply(
        self,
        img: np.ndarray,
        op_names: list[str],
        signs: list[float],
        positions: list[Position],
        magnitude: float,
        **params: Any,
    ) -> np.ndarray:
        level = magnitude / 10.0
        for name, sign, position in zip(op_names, signs, positions):
            img = self._table[name](img, level, sign, self.fill, position)
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("num_ops", "magnitude", "ops", "fill", "policy")

    def __reduce__(self) -> tuple[type[RandAugment], tuple[Any, ...]]:
        """Pickled by its arguments (its operation table holds closures): augmentation worker
        processes (`augment_pool`) and spawned DataLoader workers get a copy this way."""
        return type(self), (self.num_ops, self.magnitude, self.ops, self.fill, self.policy, self.p)
