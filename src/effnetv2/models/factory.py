"""`create_model`: the one entry point that builds a variant, applies overrides and loads weights."""

from __future__ import annotations

import logging
import os
from typing import Any

from effnetv2.errors import ConfigError
from effnetv2.models.blocks import PADDINGS, LayerSettings
from effnetv2.models.efficientnetv2 import EfficientNetV2
from effnetv2.models.variants import get_variant
from effnetv2.models.weights import load_pretrained

log = logging.getLogger(__name__)

# Override -> default: the one place the model's defaults are written in code; conf/model/base/
# efficientnetv2.yaml states the same values (tests/test_models.py holds them equal). drop_rate None
# means the variant's official classifier dropout. classifier_init "zero" is what training runs use.
DEFAULT_OVERRIDES: dict[str, Any] = {
    "in_chans": 3,
    "drop_rate": None,
    "drop_path_rate": 0.2,
    "bn_eps": 1e-3,
    "bn_momentum": 0.1,
    "padding": "symmetric",
    "classifier_init": "zero",
}


def _settings(options: dict[str, Any]) -> LayerSettings:
    if options["padding"] not in PADDINGS:
        raise ConfigError(f"padding must be one of {PADDINGS}, got {options['padding']!r}")
    if not options["bn_eps"] > 0:
        raise ConfigError(f"bn_eps must be positive, got {options['bn_eps']}")
    momentum = options["bn_momentum"]
    if not 0 < momentum < 1:
        raise ConfigError(f"bn_momentum must be in (0, 1), got {momentum}")
    if momentum > 0.5:
        log.warning(
            "bn_momentum=%s uses the PyTorch convention (weight of the new batch); the paper's TF "
            "momentum 0.99 is 0.01 here",
            momentum,
        )
    return LayerSettings(
        bn_eps=float(options["bn_eps"]), bn_momentum=float(momentum), padding=options["padding"]
    )


def create_model(
    name: str,
    num_classes: int = 1000,
    pretrained: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> EfficientNetV2:
    """Build variant `name` (see `list_models()`), optionally loading weights from a local file.

    overrides (defaults: DEFAULT_OVERRIDES): in_chans, drop_rate (classifier dropout; None: the
    variant's official value), drop_path_rate (stochastic depth of the last block), bn_eps, bn_momentum
    (PyTorch convention), padding ("symmetric" or TF "same"), classifier_init ("zero", or "uniform",
    the official rule, made for 1000 classes). `pretrained` accepts our own, timm and torchvision
    weights (see `effnetv2.models.weights`).
    """
    variant = get_variant(name)
    unknown = sorted(set(overrides) - set(DEFAULT_OVERRIDES))
    if unknown:
        raise ConfigError(
            f"unknown model option(s) {unknown} for {name}; valid options: {', '.join(DEFAULT_OVERRIDES)}"
        )
    options = {**DEFAULT_OVERRIDES, **overrides}
    drop_rate = variant.drop_rate if options["drop_rate"] is None else options["drop_rate"]
    model = EfficientNetV2(
        variant,
        num_classes=num_classes,
        in_chans=int(options["in_chans"]),
        drop_rate=drop_rate,
        drop_path_rate=options["drop_path_rate"],
        settings=_settings(options),
        classifier_init=options["classifier_init"],
    )
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model
