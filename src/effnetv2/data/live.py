"""The values progressive learning changes between epochs (train size, eval size, RandAugment
magnitude) and every reader that must see a change: the shared-memory settings torch workers read,
the RandAugment object FFCV's loader thread calls, and the FFCV loaders' decoders."""

from __future__ import annotations

from typing import Any

from effnetv2.data.randaugment import RandAugment
from effnetv2.data.torch_loader import LiveSettings
from effnetv2.data.transforms import Augmentation
from effnetv2.errors import ConfigError

EVAL_ROLES = ("val", "test", "predict")


class LiveValues:
    """Train size, eval size and magnitude; a change reaches the next epoch of either loader."""

    def __init__(self, image_size: int, eval_size: int, magnitude: float, augmentation: Augmentation) -> None:
        self.image_size, self.eval_size, self.magnitude = image_size, eval_size, float(magnitude)
        self.augmentation = augmentation
        self.shared: LiveSettings | None = None  # created per process (they do not pickle)
        self.randaugment: RandAugment | None = None
        self.ffcv_loaders: dict[str, Any] = {}  # role -> FFCVLoader

    def ensure(self) -> None:
        """The shared settings and the FFCV RandAugment, created in this process."""
        if self.shared is None:
            self.shared = LiveSettings(self.image_size, self.eval_size, self.magnitude)
        if self.randaugment is None:
            self.randaugment = self.augmentation.randaugment(self.magnitude)

    def set_image_size(self, size: int) -> None:
        if int(size) < 1:
            raise ConfigError(f"image size must be positive, got {size}")
        self.image_size = int(size)
        if self.shared is not None:
            self.shared.image_size = self.image_size
        if "train" in self.ffcv_loaders:
            self.ffcv_loaders["train"].set_image_size(self.image_size)

    def set_eval_size(self, size: int) -> None:
        if int(size) < 1:
            raise ConfigError(f"eval size must be positive, got {size}")
        self.eval_size = int(size)
        if self.shared is not None:
            self.shared.eval_size = self.eval_size
        for role in EVAL_ROLES:
            if role in self.ffcv_loaders:
                self.ffcv_loaders[role].set_image_size(self.eval_size)

    def set_magnitude(self, magnitude: float) -> None:
        if not magnitude >= 0:
            raise ConfigError(f"RandAugment magnitude must be >= 0, got {magnitude}")
        self.magnitude = float(magnitude)
        if self.shared is not None:
            self.shared.magnitude = self.magnitude
        if self.randaugment is not None:
            self.randaugment.magnitude = self.magnitude
