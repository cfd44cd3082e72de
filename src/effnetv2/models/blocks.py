"""Building blocks of EfficientNetV2 (paper Fig. 2, official `effnetv2_model.py`).

ConvBNAct is the unit everything else is made of. MBConv and FusedMBConv are the two block types the
stage tables choose between; SqueezeExcite and StochasticDepth are their optional parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Padding = Literal["symmetric", "same"]
PADDINGS: tuple[str, ...] = ("symmetric", "same")


@dataclass(frozen=True)
class LayerSettings:
    """Conventions that differ between implementations (docs/models.md, Options; defaults: factory.py).

    bn_momentum uses the PyTorch convention: the paper's TF momentum 0.99 is 0.01 here.
    padding "symmetric" pads k // 2 on every side (torchvision, timm's plain models); "same" is
    TensorFlow's padding, asymmetric at stride 2 on even sizes (official code, timm's `tf_` ports).
    """

    bn_eps: float
    bn_momentum: float
    padding: Padding


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU, in place unless autograd records it.

    In place under autograd makes PyTorch copy the input to keep it for backward, which costs more than
    writing a new output; without autograd (eval, inference) in place saves the allocation.
    """
    return F.silu(x, inplace=not x.requires_grad)


def tf_same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one dimension under TF "same": output size ceil(size / stride)."""
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


class TFSamePad(nn.Module):
    """Pads the input like TensorFlow's "same" before an unpadded conv.

    The amount depends on the input size, so it is a few integer operations per call; this module is
    only used where the result differs from a fixed padding (stride > 1 or an even kernel).
    """

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = tf_same_padding(x.shape[-2], self.kernel_size, self.stride)
        left, right = tf_same_padding(x.shape[-1], self.kernel_size, self.stride)
        return F.pad(x, (left, right, top, bottom))


class ConvBNAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> SiLU (or no activation for projection convs).

    While BatchNorm is in eval mode it is an affine map per channel, so it is folded into the conv's
    weights and bias for that call (same result, one pass over the activations less). The folded
    weights are recomputed every call from the live parameters, so nothing goes stale.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
        *,
        settings: LayerSettings,
    ) -> None:
        super().__init__()
        dynamic_pad = settings.padding == "same" and (stride > 1 or kernel_size % 2 == 0)
        self.pad = TFSamePad(kernel_size, stride) if dynamic_pad else None
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=0 if dynamic_pad else kernel_size // 2,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=settings.bn_eps, momentum=settings.bn_momentum)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = self.pad(x)
        x = self.bn(self.conv(x)) if self.bn.training else self._conv_with_folded_bn(x)
        return silu(x) if self.activation else x

    def _conv_with_folded_bn(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn = self.conv, self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    def extra_repr(self) -> str:
        return f"activation={self.activation}"


class SqueezeExcite(nn.Module):
    """Channel attention: global mean -> 1x1 conv -> SiLU -> 1x1 conv -> sigmoid, multiplied in.

    Both convs have a bias (the only biased convs in the network).
    """

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.expand(silu(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * scale.sigmoid()


class _Rate(nn.Module):
    """A drop rate kept in a 0-d buffer besides a Python copy: progressive learning changes it between
    stages, and torch.compile treats a buffer as an input of the graph, whereas it would guard a float
    attribute as a constant and recompile the model at every change."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self._p = float(p)
        self.register_buffer("rate", torch.tensor(self._p), persistent=False)

    @property
    def p(self) -> float:
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        self._p = float(value)
        self.rate.fill_(self._p)

    def extra_repr(self) -> str:
        return f"p={self._p}"


class Dropout(_Rate):
    """Element-wise dropout (training only), kept values scaled by 1 / (1 - p), as nn.Dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        survival = 1.0 - self.rate
        return x * (torch.rand_like(x) < survival).to(x.dtype) / survival.to(x.dtype)


class StochasticDepth(_Rate):
    """Drops the whole residual branch per sample with probability p (training only).

    Kept samples are scaled by 1 / (1 - p) so the expected output matches evaluation. Blocks whose
    rate is 0 use nn.Identity instead, so the common path has no extra operation.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        survival = 1.0 - self.rate
        draws = torch.rand((x.shape[0], 1, 1, 1), device=x.device)
        return x * (draws < survival).to(x.dtype) / survival.to(x.dtype)


def stochastic_depth(p: float) -> nn.Module:
    """The residual-branch dropper for rate p: StochasticDepth, or nn.Identity when p is 0."""
    return StochasticDepth(p) if p > 0 else nn.Identity()


class FusedMBConv(nn.Module):
    """kxk conv (stride, expansion) + BN + SiLU -> 1x1 projection + BN; a single kxk conv when e = 1.

    Residual (with stochastic depth) when stride is 1 and the channel count is unchanged.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expansion: int,
        drop_path_rate: float,
        settings: LayerSettings,
    ) -> None:
        super().__init__()
        if expansion == 1:
            self.fused = ConvBNAct(in_channels, out_channels, kernel_size, stride, settings=settings)
            self.project = None
        else:
            mid_channels = in_channels * expansion
            self.fused = ConvBNAct(in_channels, mid_channels, kernel_size, stride, settings=settings)
            self.project = ConvBNAct(mid_channels, out_channels, 1, activation=False, settings=settings)
        self.has_residual = stride == 1 and in_channels == out_channels
        self.drop_path = stochastic_depth(drop_path_rate) if self.has_residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fused(x)
        if self.project is not None:
            out = self.project(out)
        if self.drop_path is not None:
            out = self.drop_path(out) + x
        return out


class MBConv(nn.Module):
    """1x1 expansion + BN + SiLU -> kxk depthwise (stride) + BN + SiLU -> SE -> 1x1 projection + BN.

    The SE squeeze width comes from the block's input channels, not the expanded width.
    Residual (with stochastic depth) when stride is 1 and the channel count is unchanged.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expansion: int,
        se_ratio: float,
        drop_path_rate: float,
        settings: LayerSettings,
    ) -> None:
        super().__init__()
        mid_channels = in_channels * expansion
        self.expand = ConvBNAct(in_channels, mid_channels, 1, settings=settings) if expansion != 1 else None
        self.depthwise = ConvBNAct(
            mid_channels, mid_channels, kernel_size, stride, groups=mid_channels, settings=settings
        )
        self.se = SqueezeExcite(mid_channels, max(1, int(in_channels * se_ratio))) if se_ratio > 0 else None
        self.project = ConvBNAct(mid_channels, out_channels, 1, activation=False, settings=settings)
        self.has_residual = stride == 1 and in_channels == out_channels
        self.drop_path = stochastic_depth(drop_path_rate) if self.has_residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x) if self.expand is not None else x
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        if self.drop_path is not None:
            out = self.drop_path(out) + x
        return out
