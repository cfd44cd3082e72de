"""EfficientNetV2 variants as explicit stage tables (paper Table 4, official `effnetv2_configs.py`).

Each row is one stage: operator, kernel, stride of its first block, expansion ratio, output channels,
number of layers and squeeze-and-excitation ratio (0: none). B0-B3 scale one base table by width and
depth multipliers, like EfficientNet-V1; S/M/L/XL are tables of their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from effnetv2.errors import ConfigError

Operator = Literal["fused_mbconv", "mbconv"]
FUSED_MBCONV: Operator = "fused_mbconv"
MBCONV: Operator = "mbconv"


@dataclass(frozen=True)
class Stage:
    """One row of Table 4."""

    op: Operator
    kernel: int
    stride: int
    expansion: int
    out_channels: int
    layers: int
    se: float


@dataclass(frozen=True)
class Variant:
    """A full network: stem width, stage rows, head width and the official training defaults.

    drop_rate is the official classifier dropout; train_size / eval_size are the official resolutions.
    """

    name: str
    stem_channels: int
    stages: tuple[Stage, ...]
    head_channels: int
    drop_rate: float
    train_size: int
    eval_size: int


# fmt: off
V2_BASE_STAGES = (
    #     operator      kernel stride expansion channels layers  se
    Stage(FUSED_MBCONV, 3,     1,     1,        16,      1,      0.0),
    Stage(FUSED_MBCONV, 3,     2,     4,        32,      2,      0.0),
    Stage(FUSED_MBCONV, 3,     2,     4,        48,      2,      0.0),
    Stage(MBCONV,       3,     2,     4,        96,      3,      0.25),
    Stage(MBCONV,       3,     1,     6,        112,     5,      0.25),
    Stage(MBCONV,       3,     2,     6,        192,     8,      0.25),
)
V2_BASE_STEM, V2_BASE_HEAD = 32, 1280

V2_S = Variant(
    name="v2_s", stem_channels=24, head_channels=1280, drop_rate=0.2, train_size=300, eval_size=384,
    stages=(
        #     operator      kernel stride expansion channels layers  se
        Stage(FUSED_MBCONV, 3,     1,     1,        24,      2,      0.0),
        Stage(FUSED_MBCONV, 3,     2,     4,        48,      4,      0.0),
        Stage(FUSED_MBCONV, 3,     2,     4,        64,      4,      0.0),
        Stage(MBCONV,       3,     2,     4,        128,     6,      0.25),
        Stage(MBCONV,       3,     1,     6,        160,     9,      0.25),
        Stage(MBCONV,       3,     2,     6,        256,     15,     0.25),
    ),
)

V2_M = Variant(
    name="v2_m", stem_channels=24, head_channels=1280, drop_rate=0.3, train_size=384, eval_size=480,
    stages=(
        #     operator      kernel stride expansion channels layers  se
        Stage(FUSED_MBCONV, 3,     1,     1,        24,      3,      0.0),
        Stage(FUSED_MBCONV, 3,     2,     4,        48,      5,      0.0),
        Stage(FUSED_MBCONV, 3,     2,     4,        80,      5,      0.0),
        Stage(MBCONV,       3,     2,     4,        160,     7,      0.25),
        Stage(MBCONV,       3,     1,     6,        176,     14,     0.25),
        Stage(MBCONV,       3,     2,     6,        304,     18,     0.25),
        Stage(MBCONV,       3,     1,     6,        512,     5,      0.25),
    ),
)

V2_L = Variant(
    name="v2_l", stem_channels=32, head_channels=1280, drop_rate=0.4, train_size=384, eval_size=480,
    stages=(
        #     operator      kernel stride expansion channels layers  se
        Stage(FUSED_MBCONV, 3,     1,     1,        32,      4,      0.0),
        Stage(FUSED_MBCONV, 3,     2,     4,        64,      7,      0.0),
        Stage(FUSED_MBCONV, 3,     2,     4,        96,      7,      0.0),
        Stage(MBCONV,       3,     2,     4,        192,     10,     0.25),
        Stage(MBCONV,       3,     1,     6,        224,     19,     0.25),
        Stage(MBCONV,       3,     2,     6,        384,     25,     0.25),
        Stage(MBCONV,       3,     1,     6,        640,     7,      0.25),
    ),
)

V2_XL = Variant(
    name="v2_xl", stem_channels=32, head_channels=1280, drop_rate=0.4, train_size=384, eval_size=512,
    stages=(
        #     operator      kernel stride expansion channels layers  se
        Stage(FUSED_MBCONV, 3,     1,     1,        32,      4,      0.0),
        Stage(FUSED_MBCONV, 3,     2,     4,        64,      8,      0.0),
        Stage(FUSED_MBCONV, 3,     2,     4,        96,      8,      0.0),
        Stage(MBCONV,       3,     2,     4,        192,     16,     0.25),
        Stage(MBCONV,       3,     1,     6,        256,     24,     0.25),
        Stage(MBCONV,       3,     2,     6,        512,     32,     0.25),
        Stage(MBCONV,       3,     1,     6,        640,     8,      0.25),
    ),
)
# fmt: on


def scale_channels(channels: int, width: float) -> int:
    """Official `round_filters`: nearest multiple of 8 (no "keep 90%" guard in V2's base scaling)."""
    return int(channels * width + 4) // 8 * 8


def scale_layers(layers: int, depth: float) -> int:
    """Official `round_repeats`: always round up."""
    return math.ceil(layers * depth)


def scaled_base(
    name: str, width: float, depth: float, drop_rate: float, train_size: int, eval_size: int
) -> Variant:
    """A B-variant: the base table with stem, stage and head widths scaled by `width`, depths by `depth`."""
    stages = tuple(
        replace(
            stage,
            out_channels=scale_channels(stage.out_channels, width),
            layers=scale_layers(stage.layers, depth),
        )
        for stage in V2_BASE_STAGES
    )
    return Variant(
        name=name,
        stem_channels=scale_channels(V2_BASE_STEM, width),
        stages=stages,
        head_channels=scale_channels(V2_BASE_HEAD, width),
        drop_rate=drop_rate,
        train_size=train_size,
        eval_size=eval_size,
    )


VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        #          name     width depth dropout train eval
        scaled_base("v2_b0", 1.0, 1.0, 0.2, 192, 224),
        scaled_base("v2_b1", 1.0, 1.1, 0.2, 192, 240),
        scaled_base("v2_b2", 1.1, 1.2, 0.3, 208, 260),
        scaled_base("v2_b3", 1.2, 1.4, 0.3, 240, 300),
        V2_S,
        V2_M,
        V2_L,
        V2_XL,
    )
}


def list_models() -> list[str]:
    """Names accepted by `create_model`, smallest first."""
    return list(VARIANTS)


def get_variant(name: str) -> Variant:
    """The stage table for `name`; a ConfigError naming the valid choices otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; choose one of {', '.join(VARIANTS)} (conf/model/<name>.yaml)"
        ) from None
