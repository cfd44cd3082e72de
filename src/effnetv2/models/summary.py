"""Parameter and FLOP counts for the training log (FLOPs change with the progressive image size)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def model_summary(model: nn.Module, image_size: int) -> dict[str, int]:
    """{"params", "trainable_params", "flops", "image_size"} of `model` at `image_size` px.

    flops: torch.utils.flop_counter's count for one forward pass of one image (2 per multiply-add,
    convolutions and matmuls only). The paper's "FLOPs" count multiply-adds, i.e. half this number.
    The model runs in eval mode under no_grad, so BatchNorm statistics are left untouched.
    """
    parameter = next(model.parameters())
    in_chans = getattr(model, "in_chans", 3)
    image = torch.zeros(1, in_chans, image_size, image_size, device=parameter.device, dtype=parameter.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(image)
    finally:
        model.train(was_training)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "flops": int(counter.get_total_flops()),
        "image_size": image_size,
    }


def format_summary(summary: dict[str, Any], name: str = "model") -> str:
    """One log line, e.g. `v2_s: 21.46M params (21.46M trainable), 5.75 GFLOPs at 224 px`."""
    params, trainable = summary["params"] / 1e6, summary["trainable_params"] / 1e6
    return (
        f"{name}: {params:.2f}M params ({trainable:.2f}M trainable), "
        f"{summary['flops'] / 1e9:.2f} GFLOPs (2 per multiply-add) at {summary['image_size']} px"
    )
