"""Class probabilities of one or more classifiers over a set of images, with test-time augmentation.

Views: every classifier at every size (resized from the original image, as in evaluation: shorter
side to size / crop_pct, centre crop), each also flipped horizontally when `hflip`. The softmax
probabilities of all views are averaged: a fold ensemble with TTA is one mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from effnetv2.data.device_batch import ImageNormalizer
from effnetv2.data.sources import SampleSet
from effnetv2.data.torch_loader import eval_loader
from effnetv2.errors import ConfigError
from effnetv2.inference.checkpoint import TrainedClassifier


def check_compatible(classifiers: Sequence[TrainedClassifier]) -> None:
    """An ensemble averages class probabilities: same classes in the same order, same input."""
    if not classifiers:
        raise ConfigError("no checkpoints to predict with: pass checkpoints=[...]")
    first = classifiers[0]
    for other in classifiers[1:]:
        if other.class_names != first.class_names:
            raise ConfigError(
                f"checkpoints disagree on the classes: {first.name} has {first.class_names}, "
                f"{other.name} has {other.class_names}; ensemble only models trained on the same data"
            )
        if not other.preprocessing.same_input_as(first.preprocessing):
            raise ConfigError(
                f"checkpoints disagree on the input (channels, mean/std, crop): {first.name} "
                f"{first.preprocessing} vs {other.name} {other.preprocessing}"
            )


def size_plan(
    classifiers: Sequence[TrainedClassifier], sizes: Sequence[int] | None
) -> list[tuple[int, list[TrainedClassifier]]]:
    """(size, classifiers to run at it): every classifier at every size, or each at its own eval size."""
    if sizes:
        if any(int(size) < 1 for size in sizes):
            raise ConfigError(f"tta.sizes={list(sizes)}: sizes must be positive")
        return [(int(size), list(classifiers)) for size in dict.fromkeys(sizes)]
    plan: dict[int, list[TrainedClassifier]] = {}
    for classifier in classifiers:
        plan.setdefault(classifier.preprocessing.eval_size, []).append(classifier)
    return list(plan.items())


@torch.inference_mode()
def predict_probabilities(
    classifiers: Sequence[TrainedClassifier],
    samples: SampleSet,
    sizes: Sequence[int] | None = None,
    hflip: bool = False,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """N x num_classes mean softmax probabilities over all views (rows in the order of `samples`)."""
    check_compatible(classifiers)
    plan = size_plan(classifiers, sizes)
    preprocessing = classifiers[0].preprocessing
    normalize = ImageNormalizer(preprocessing.mean, preprocessing.std)
    total = torch.zeros(len(samples), len(classifiers[0].class_names), dtype=torch.float64)
    flips = 2 if hflip else 1
    views = 0
    loaders = [
        (
            size,
            members,
            eval_loader(
                samples, size, preprocessing.crop_pct, preprocessing.in_chans, batch_size, num_workers
            ),
        )
        for size, members in plan
    ]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("predicting", total=sum(len(loader) for _, _, loader in loaders))
        for size, members, loader in loaders:
            bar.update(task, description=f"predicting at {size}px")
            start = 0
            for images, _ in loader:
                images = normalize(images.to(device, non_blocking=True))
                inputs = [images, images.flip(-1)] if hflip else [images]
                batch = sum(
                    classifier.model(view).float().softmax(dim=-1)
                    for classifier in members
                    for view in inputs
                )
                total[start : start + len(images)] += batch.double().cpu()
                start += len(images)
                bar.advance(task)
            views += len(members) * flips
    return (total / views).numpy()
