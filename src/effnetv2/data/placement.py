"""Where the trainer runs: how many processes share the train data, this one's rank, the device the
batches are used on (FFCV copies them there itself) and whether the model takes channels_last input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Placement:
    world_size: int = 1
    rank: int = 0
    distributed: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    channels_last: bool = False


def placement(trainer: Any) -> Placement:
    """The trainer's placement; without one, torch.distributed's when it is initialised."""
    if trainer is not None:
        strategy = getattr(trainer, "strategy", None)
        module = getattr(trainer, "lightning_module", None)
        return Placement(
            world_size=trainer.world_size,
            rank=getattr(trainer, "global_rank", 0),
            distributed=trainer.world_size > 1,
            device=strategy.root_device if strategy is not None else torch.device("cpu"),
            channels_last=bool(getattr(module, "hparams", {}).get("channels_last", False)),
        )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return Placement(torch.distributed.get_world_size(), torch.distributed.get_rank(), distributed=True)
    return Placement()
