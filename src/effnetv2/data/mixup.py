"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on a batch, with soft, smoothed targets.

One lambda per batch, mixing each sample with the batch reversed (as timm does). The alphas are
attributes so progressive learning can change them between epochs; alpha 0 turns a method off.
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
    """`__call__(x, y) -> (mixed x, soft targets N x num_classes)`.

    With both alphas > 0 a batch uses CutMix with probability `switch_prob`, else Mixup. CutMix's
    lambda is corrected to the pasted box's actual area so the targets match the pixels.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing
        # Without a seed, draw one from torch's global state so Lightning's seed_everything applies.
        self.rng = np.random.default_rng(seed if seed is not None else int(torch.randint(2**31, ())))

    @property
    def active(self) -> bool:
        return self.mixup_alpha > 0.0 or self.cutmix_alpha > 0.0

    def _use_cutmix(self) -> bool:
        if self.mixup_alpha > 0.0 and self.cutmix_alpha > 0.0:
            return bool(self.rng.random() < self.switch_prob)
        return self.cutmix_alpha > 0.0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        targets = smooth_one_hot(y, self.num_classes, self.label_smoothing)
        if not self.active:
            return x, targets
        if self._use_cutmix():
            lam = float(self.rng.beta(self.cutmix_alpha, self.cutmix_alpha))
            top, bottom, left, right = cutmix_box(x.shape[-2], x.shape[-1], lam, self.rng)
            x = x.clone()
            x[..., top:bottom, left:right] = x.flip(0)[..., top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (x.shape[-2] * x.shape[-1])
        else:
            lam = float(self.rng.beta(self.mixup_alpha, self.mixup_alpha))
            x = x * lam + x.flip(0) * (1.0 - lam)
        return x, targets * lam + targets.flip(0) * (1.0 - lam)
