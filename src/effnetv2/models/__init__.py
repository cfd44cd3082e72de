"""EfficientNetV2 models: `create_model(name, ...)` builds any variant in `list_models()`."""

from effnetv2.models.efficientnetv2 import EfficientNetV2
from effnetv2.models.factory import create_model
from effnetv2.models.summary import format_summary, model_summary
from effnetv2.models.variants import list_models

__all__ = ["EfficientNetV2", "create_model", "format_summary", "list_models", "model_summary"]
