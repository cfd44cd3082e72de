"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on a batch, with soft, smoothed targets.

The alphas are attributes so progressive learning can change them between epochs; alpha 0 turns a
method off.
"""

from __future__ import annotations

import numpy as np
import torch


def smooth_one_hot(targets: torch.Tensor, num_classes: int, label_smoothing: float) -> torch.Tensor:
    """One-hot targets with `label_smoothing` spread uniformly over all classes (rows sum to 1)."""
    off_value = label_smoothing / num_classes
    on_value = 1.0 - label_smoothing + off_value
    soft = torch.full((targets.shape[0], num_classes), off_value, device=targets.device, dtype=torch.float32)
    return soft.scatter_(1, targets.long().view(-1, 1), on_value)


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box (top, bottom, left, right) covering about 1 - lam of the image, centred at random."""
    cut_ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut_ratio), int(width * cut_ratio)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    left, right = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)


class MixupCutmix:
    """`__call__(x, y) -> (mixed x, soft targets N x num_classes)`, as the official EfficientNetV2 code:

    - Mixup draws one lambda per sample from Beta(alpha, alpha), folded to max(lambda, 1 - lambda) so
      each sample keeps its own image dominant, and mixes it with the batch reversed;
    - CutMix pastes one box of the reversed batch, its lambda corrected to the box's actual area so
      the targets match the pixels;
    - with both alphas > 0, the first half of the batch gets Mixup and the second half CutMix (each
      half mixed within itself).
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        label_smoothing: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.label_smoothing = label_smoothing
        # Without a seed, draw one from torch's global state so Lightning's seed_everything applies.
        self.rng = np.random.default_rng(seed if seed is not None else int(torch.randint(2**31, ())))

    @property
    def active(self) -> bool:
        return self.mixup_alpha > 0.0 or self.cutmix_alpha > 0.0

    def mixup(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam = self.rng.beta(self.mixup_alpha, self.mixup_alpha, size=x.shape[0])
        lam = torch.as_tensor(np.maximum(lam, 1.0 - lam), dtype=torch.float32, device=x.device)
        image_lam = lam.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        mixed = x * image_lam + x.flip(0) * (1.0 - image_lam)
        return mixed, targets * lam[:, None] + targets.flip(0) * (1.0 - lam[:, None])

    def cutmix(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam = float(self.rng.beta(self.cutmix_alpha, self.cutmix_alpha))
        top, bottom, left, right = cutmix_box(x.shape[-2], x.shape[-1], lam, self.rng)
        x = x.clone()
        x[..., top:bottom, left:right] = x.flip(0)[..., top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (x.shape[-2] * x.shape[-1])
        return x, targets * lam + targets.flip(0) * (1.0 - lam)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        targets = smooth_one_hot(y, self.num_classes, self.label_smoothing)
        if self.mixup_alpha > 0.0 and self.cutmix_alpha > 0.0 and x.shape[0] > 1:
            half = x.shape[0] // 2
            first, first_targets = self.mixup(x[:half], targets[:half])
            second, second_targets = self.cutmix(x[half:], targets[half:])
            return torch.cat([first, second]), torch.cat([first_targets, second_targets])
        if self.mixup_alpha > 0.0:
            return self.mixup(x, targets)
        if self.cutmix_alpha > 0.0:
            return self.cutmix(x, targets)
        return x, targets
