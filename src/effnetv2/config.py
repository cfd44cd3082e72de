"""OmegaConf resolvers the configs in conf/ use. Entry points call `register_resolvers()` before
Hydra composes a config; registering twice is harmless."""

from __future__ import annotations

from omegaconf import OmegaConf

from effnetv2.training.module import monitor_mode
from effnetv2.training.progressive import scaled_size


def register_resolvers() -> None:
    """`${scaled_size:SIZE,FACTOR[,MULTIPLE[,MINIMUM]]}`: SIZE * FACTOR rounded to a multiple of
    MULTIPLE (default 8), at least MINIMUM, at most SIZE, e.g. the first stage of
    conf/schedule/progressive.yaml from the data's native size."""
    if not OmegaConf.has_resolver("scaled_size"):
        OmegaConf.register_new_resolver("scaled_size", scaled_size)
    # `${monitor_mode:METRIC}`: max or min, ModelCheckpoint's mode for module.monitor
    if not OmegaConf.has_resolver("monitor_mode"):
        OmegaConf.register_new_resolver("monitor_mode", monitor_mode)
