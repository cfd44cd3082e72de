"""`_target_` paths of classes that moved, so configs written for an earlier layout keep working.

A training checkpoint stores the configs it was built from (model, optimizer, data), `_target_`s
included, and users keep configs of their own that name callbacks (e.g.
`+callbacks.val_predictions={_target_: ...}`). Checkpoints pass through `with_current_targets` when
read (`effnetv2.checkpoint`) and callback and logger configs before they are instantiated.
"""

from __future__ import annotations

from typing import Any

# (old module, current module): the classes that moved from one to the other
MOVED = {
    ("effnetv2.training.callbacks", "effnetv2.training.callbacks.progressive"): ("ProgressiveLearning",),
    ("effnetv2.training.reporting", "effnetv2.training.callbacks.reporting"): (
        "StageReport",
        "ConfusionMatrixReport",
    ),
    ("effnetv2.training.reporting", "effnetv2.training.callbacks.progress_bar"): ("StageProgressBar",),
    ("effnetv2.training.faults", "effnetv2.training.callbacks.checkpoints"): ("LastCheckpoint",),
    ("effnetv2.training.faults", "effnetv2.training.callbacks.preemption"): ("CheckpointOnSignal",),
    ("effnetv2.training.faults", "effnetv2.training.callbacks.nan_guard"): ("NonFiniteLossGuard",),
    ("effnetv2.training.ema", "effnetv2.training.callbacks.ema"): ("EMAWeightAveraging",),
    ("effnetv2.training.finetune", "effnetv2.training.callbacks.finetune"): ("NewHead", "FreezeBackbone"),
    ("effnetv2.training.val_predictions", "effnetv2.training.callbacks.val_predictions"): (
        "SaveValPredictions",
    ),
}
TARGET_ALIASES = {f"{old}.{name}": f"{new}.{name}" for (old, new), names in MOVED.items() for name in names}


def current_target(target: str) -> str:
    """Where the class or function that `target` named lives now."""
    return TARGET_ALIASES.get(target, target)


def with_current_targets(config: Any) -> Any:
    """`config` (plain dicts and lists) with every `_target_` naming a moved class replaced by its
    current path; everything else is returned as it is."""
    if isinstance(config, dict):
        updated = {key: with_current_targets(value) for key, value in config.items()}
        if isinstance(updated.get("_target_"), str):
            updated["_target_"] = current_target(updated["_target_"])
        return updated
    if isinstance(config, list):
        return [with_current_targets(value) for value in config]
    return config
