"""The EfficientNetV2 network: stem -> stages of (Fused-)MBConv blocks -> head -> pooled classifier.

Module names (`stem`, `stages.{s}.{i}`, `head`, `classifier`) are the state_dict layout that
`weights.py` maps timm and torchvision checkpoints onto.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from effnetv2.errors import ConfigError
from effnetv2.models.blocks import (
    ConvBNAct,
    Dropout,
    FusedMBConv,
    LayerSettings,
    MBConv,
    StochasticDepth,
    stochastic_depth,
)
from effnetv2.models.variants import FUSED_MBCONV, Stage, Variant

CLASSIFIER_INITS = ("uniform", "zero")

Block = FusedMBConv | MBConv


def _check_rate(what: str, value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{what} must be in [0, 1), got {value}")
    return float(value)


def _make_block(
    stage: Stage, in_channels: int, stride: int, drop_path_rate: float, settings: LayerSettings
) -> Block:
    if stage.op == FUSED_MBCONV:
        return FusedMBConv(
            in_channels, stage.out_channels, stage.kernel, stride, stage.expansion, drop_path_rate, settings
        )
    return MBConv(
        in_channels,
        stage.out_channels,
        stage.kernel,
        stride,
        stage.expansion,
        stage.se,
        drop_path_rate,
        settings,
    )


class EfficientNetV2(nn.Module):
    """EfficientNetV2 built from a `Variant` table.

    Stochastic depth: block i of n (counted over the whole network) drops its residual branch with
    probability drop_path_rate * i / n (the official survival rule 1 - 0.2 * i / n).
    Classifier dropout and the drop-path rate can change between epochs (`set_dropout`,
    `set_drop_path_rate`) without touching any parameter, so the optimizer stays valid.
    Every argument is required: `create_model` holds the defaults, in one place.
    """

    def __init__(
        self,
        variant: Variant,
        *,
        num_classes: int,
        in_chans: int,
        drop_rate: float,
        drop_path_rate: float,
        settings: LayerSettings,
        classifier_init: str,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ConfigError(f"in_chans must be at least 1, got {in_chans}")
        if classifier_init not in CLASSIFIER_INITS:
            raise ConfigError(f"classifier_init must be one of {CLASSIFIER_INITS}, got {classifier_init!r}")
        self.classifier_init = classifier_init
        self.variant = variant
        self.in_chans = in_chans
        self._drop_path_rate = _check_rate("drop_path_rate", drop_path_rate)

        self.stem = ConvBNAct(in_chans, variant.stem_channels, 3, stride=2, settings=settings)
        total_blocks = sum(stage.layers for stage in variant.stages)
        block_index = 0
        in_channels = variant.stem_channels
        stages = []
        for stage in variant.stages:
            blocks = []
            for layer in range(stage.layers):
                stride = stage.stride if layer == 0 else 1
                rate = self._drop_path_rate * block_index / total_blocks
                blocks.append(_make_block(stage, in_channels, stride, rate, settings))
                in_channels = stage.out_channels
                block_index += 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = ConvBNAct(in_channels, variant.head_channels, 1, settings=settings)
        self.num_features = variant.head_channels
        self.dropout = Dropout(_check_rate("drop_rate", drop_rate))
        self.classifier = nn.Linear(self.num_features, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """Official initialisation: conv normal(fan_out), BN (1, 0), classifier as `classifier_init` says.

        The fan-out is TF's (and timm's): k * k * out_channels / groups, so a depthwise kernel's is
        k * k. torch's `kaiming_normal_` counts every output channel there and gives depthwise
        kernels a std sqrt(channels) times too small.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                fan_out = kh * kw * module.out_channels // module.groups
                nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.reset_classifier(self.classifier.out_features)

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def reset_classifier(self, num_classes: int) -> None:
        """A freshly initialised classifier for `num_classes` (fine-tuning on a new label set).

        "uniform" is the official +-1/sqrt(num_classes), sized for 1000 classes: with 10 classes it
        starts at logits of std ~6 (loss ~5.5 instead of ln 10). "zero" starts every class equal
        (docs/training.md, "The default run", compares the two).
        """
        if num_classes < 1:
            raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
        old = self.classifier
        self.classifier = nn.Linear(self.num_features, num_classes, device=old.weight.device)
        if self.classifier_init == "zero":
            nn.init.zeros_(self.classifier.weight)
        else:
            bound = 1.0 / num_classes**0.5
            nn.init.uniform_(self.classifier.weight, -bound, bound)
        nn.init.zeros_(self.classifier.bias)

    def blocks(self) -> Iterator[Block]:
        """All blocks in network order (the order stochastic depth counts in)."""
        for stage in self.stages:
            yield from stage

    @property
    def dropout_rate(self) -> float:
        return self.dropout.p

    def set_dropout(self, p: float) -> None:
        """Classifier dropout probability for the following forward passes."""
        self.dropout.p = _check_rate("dropout", p)

    @property
    def drop_path_rate(self) -> float:
        return self._drop_path_rate

    def set_drop_path_rate(self, rate: float) -> None:
        """Re-spread stochastic depth over the blocks: block i of n gets rate * i / n.

        Sets each residual block's StochasticDepth rate (an nn.Identity becomes one when its rate turns
        positive); no parameters change.
        """
        self._drop_path_rate = _check_rate("drop_path_rate", rate)
        blocks = list(self.blocks())
        for index, block in enumerate(blocks):
            if block.drop_path is None:
                continue
            block_rate = self._drop_path_rate * index / len(blocks)
            if isinstance(block.drop_path, StochasticDepth):
                block.drop_path.p = block_rate  # also 0: the module stays, so torch.compile keeps its graph
            else:
                block.drop_path = stochastic_depth(block_rate)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after each stage (strides 2, 4, 8, 16, 16, 32[, 32]); stem and head excluded."""
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled head features, N x num_features (the classifier's input before dropout)."""
        x = self.head(self.stages(self.stem(x)))
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.forward_features(x)))
