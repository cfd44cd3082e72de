"""`trainer.precision: auto` (the default of trainer=gpu|ddp): the fastest safe precision of the GPU.

bf16 mixed precision where the GPU computes bf16 natively (compute capability 8.0 or newer: A100, H100,
RTX 30xx/40xx, L4), 16-bit mixed precision with loss scaling elsewhere (T4 7.5, V100 7.0, P100 6.0,
which emulate bf16 slowly), full precision without a GPU. An explicit value always wins. Resolved before
the Trainer is built, because Lightning does not know `auto`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger(__name__)

NATIVE_BF16_CAPABILITY = (8, 0)


def resolve_precision(precision: Any, capability: tuple[int, int] | None = None) -> Any:
    """`precision` unless it is "auto"; then the choice for `capability` (default: that of the current
    CUDA device, None without one)."""
    if str(precision) != "auto":
        return precision
    if capability is None and torch.cuda.is_available():
        capability = torch.cuda.get_device_capability()
    if capability is None:
        chosen, why = "32-true", "no CUDA GPU"
    elif tuple(capability) >= NATIVE_BF16_CAPABILITY:
        chosen, why = "bf16-mixed", f"compute capability {capability[0]}.{capability[1]} has native bf16"
    else:
        chosen, why = (
            "16-mixed",
            f"compute capability {capability[0]}.{capability[1]} emulates bf16 (loss scaling on)",
        )
    log.info("trainer.precision=auto: %s (%s)", chosen, why)
    return chosen
