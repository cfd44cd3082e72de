"""EfficientNetV2 experiment template: models, data, progressive learning, training."""

__version__ = "0.1.0"
