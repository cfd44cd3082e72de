"""OmegaConf resolvers the configs in conf/ use, and the plain functions behind them. Entry points call
`register_resolvers()` before Hydra composes a config; registering twice is harmless."""

from __future__ import annotations

import math

from omegaconf import OmegaConf

from effnetv2.errors import ConfigError

# module.monitor -> ModelCheckpoint's mode for it
MONITOR_MODES = {"val/acc": "max", "val/loss": "min", "val/f1_macro": "max", "val/auroc": "max"}


def monitor_mode(monitor: str) -> str:
    """ModelCheckpoint's mode for `module.monitor` (the `${monitor_mode:...}` resolver of the configs)."""
    if monitor not in MONITOR_MODES:
        raise ConfigError(f"module.monitor={monitor!r} is not one of {list(MONITOR_MODES)}")
    return MONITOR_MODES[monitor]


def round_to_multiple(value: float, multiple: int) -> int:
    """Nearest multiple of `multiple` (halves round up), never below `multiple`."""
    return max(multiple, int(math.floor(value / multiple + 0.5)) * multiple)


def scaled_size(size: int, factor: float, multiple: int = 8, minimum: int = 0) -> int:
    """`size * factor` rounded to a multiple, at least `minimum` (but never above `size`): the
    OmegaConf resolver `${scaled_size:...}` behind `conf/schedule/progressive.yaml`, which derives the
    first stage's size from the data's native size."""
    scaled = max(round_to_multiple(float(size) * float(factor), int(multiple)), int(minimum))
    return min(scaled, int(size))


def register_resolvers() -> None:
    """`${scaled_size:SIZE,FACTOR[,MULTIPLE[,MINIMUM]]}`: SIZE * FACTOR rounded to a multiple of
    MULTIPLE (default 8), at least MINIMUM, at most SIZE, e.g. the first stage of
    conf/schedule/progressive.yaml from the data's native size."""
    if not OmegaConf.has_resolver("scaled_size"):
        OmegaConf.register_new_resolver("scaled_size", scaled_size)
    # `${monitor_mode:METRIC}`: max or min, ModelCheckpoint's mode for module.monitor
    if not OmegaConf.has_resolver("monitor_mode"):
        OmegaConf.register_new_resolver("monitor_mode", monitor_mode)
