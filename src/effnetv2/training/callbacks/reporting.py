"""What a run shows while and after it trains: the stage plan and a grid of augmented images per stage
in the loggers, the test confusion matrix as a file and in the loggers (the stage in the progress bar:
`progress_bar.py`).

Everything goes through whichever loggers the run has (W&B, TensorBoard, CSV) and, where a logger
cannot hold it (CSV), into the run folder. Only rank 0 writes.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from matplotlib.figure import Figure
from torchvision.utils import make_grid, save_image

from effnetv2.training.callbacks.progressive import current_stage, describe_values, find_progressive
from effnetv2.training.progressive import StageValues

log = logging.getLogger(__name__)


def denormalize(images: torch.Tensor, datamodule: Any) -> torch.Tensor:
    """Normalised batch -> 0..1 pixels, with the datamodule's mean/std (min-max scaling without them)."""
    images = images.detach().float().cpu()
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    if mean is not None and std is not None and len(mean) == images.shape[1]:
        shape = (1, -1, 1, 1)
        images = images * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    else:
        low, high = images.amin(), images.amax()
        images = (images - low) / (high - low).clamp_min(1e-8)
    return images.clamp(0.0, 1.0)


def describe_stage(values: StageValues | None, num_stages: int, image_size: int) -> str:
    if values is None:
        return f"no progressive learning: image size {image_size}"
    return f"{describe_values(values)} (of {num_stages} stages)"


class StageReport(L.Callback):
    """Logs the stage plan when fitting starts and, at the first batch of every stage, the transition
    (`progressive/transition` = the new stage, at that step) and a grid of that batch's training images
    as the loader delivers them (cropped and RandAugmented, before mixup/CutMix).

    Grids go to W&B and TensorBoard and to `<dirpath>/stage<N>_epoch<E>.png`. Nothing here draws random
    numbers, so reporting never changes what the run trains on.
    """

    def __init__(self, dirpath: str, max_images: int = 32) -> None:
        self.dirpath = Path(dirpath)
        self.max_images = max_images
        self._reported_stage: int | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reported_stage = None
        progressive = find_progressive(trainer)
        if progressive is None or not trainer.is_global_zero or trainer.fast_dev_run:
            return
        schedule, max_epochs = progressive.schedule, int(trainer.max_epochs)
        columns = [
            "stage",
            "first_epoch",
            "last_epoch",
            "image_size",
            "randaug_magnitude",
            "mixup",
            "dropout",
        ]
        rows = []
        for stage in range(schedule.num_stages):
            values, epochs = schedule.stage_values(stage), schedule.stage_epochs(stage, max_epochs)
            row = [stage, epochs.start, epochs.stop - 1, values.image_size, values.randaug_magnitude]
            rows.append([*row, values.mixup_alpha, values.dropout])
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table("progressive/schedule", columns=columns, data=rows)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        values, num_stages = current_stage(trainer)
        stage = values.stage if values is not None else 0
        if stage == self._reported_stage:
            return
        self._reported_stage = stage
        if not trainer.is_global_zero:
            return
        images = batch[0][: self.max_images]
        caption = describe_stage(values, num_stages, images.shape[-1])
        grid = make_grid(denormalize(images, trainer.datamodule), nrow=8, padding=2)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"stage{stage}_epoch{trainer.current_epoch:03d}.png"
        save_image(grid, path)
        # the stage's values are announced by ProgressiveLearning; this line says what its batches show
        log.info("Stage %d: first training batch (%d px) saved as %s", stage, images.shape[-1], path)
        step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics({"progressive/transition": float(stage)}, step=step)
            if isinstance(logger, WandbLogger):
                logger.log_image("train/augmented_images", images=[grid], caption=[caption], step=step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(f"train/augmented_images/stage{stage}", grid, global_step=step)


class ConfusionMatrixReport(L.Callback):
    """After testing: the confusion matrix (rows: true class, columns: predicted) as
    `<dirpath>/confusion_matrix.csv` and `.png`, a W&B table and image, and a TensorBoard figure.

    Above `max_classes` classes (`module.max_logged_classes`) a figure (0.5 inch per class: ~60k pixels a
    side for 1000 classes) and a full W&B table would cost gigabytes: then the CSV stays whole and the
    figure and tables give way to the `top_pairs` most-confused (true, predicted) pairs, in
    `<dirpath>/confusion_top_pairs.csv` and a W&B table; the per-class accuracies, then not logged one
    metric per class, go to `<dirpath>/per_class_accuracy.csv`.
    """

    def __init__(self, dirpath: str, max_classes: int = 50, top_pairs: int = 50) -> None:
        self.dirpath = Path(dirpath)
        self.max_classes = max_classes
        self.top_pairs = top_pairs

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        matrix = getattr(pl_module, "test_confusion_matrix", None)
        if matrix is None or not trainer.is_global_zero:
            return
        names = list(pl_module.hparams.get("class_names") or [str(i) for i in range(matrix.shape[0])])
        self.dirpath.mkdir(parents=True, exist_ok=True)
        with open(self.dirpath / "confusion_matrix.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["true \\ predicted", *names])
            for name, counts in zip(names, matrix.tolist()):
                writer.writerow([name, *counts])
        if len(names) > self.max_classes:
            self._summarise(trainer, matrix, names)
        else:
            self._draw(trainer, matrix, names)
        log.info("Confusion matrix: %s", self.dirpath / "confusion_matrix.csv")

    def _draw(self, trainer: L.Trainer, matrix: torch.Tensor, names: list[str]) -> None:
        rows = [[name, *map(int, counts)] for name, counts in zip(names, matrix.tolist())]
        figure = confusion_figure(matrix, names)
        image_path = self.dirpath / "confusion_matrix.png"
        figure.savefig(image_path, dpi=120, bbox_inches="tight")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table("test/confusion_matrix", columns=["true \\ predicted", *names], data=rows)
                logger.log_image("test/confusion_matrix_image", images=[str(image_path)])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("test/confusion_matrix", figure, global_step=trainer.global_step)

    def _summarise(self, trainer: L.Trainer, matrix: torch.Tensor, names: list[str]) -> None:
        columns = ["true", "predicted", "count", "share_of_true"]
        rows = most_confused_pairs(matrix, names, self.top_pairs)
        with open(self.dirpath / "confusion_top_pairs.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(columns)
            writer.writerows(rows)
        per_class = getattr(trainer.lightning_module, "test_per_class_accuracy", None)
        if per_class is not None:  # not logged one metric per class above the same bound (module.py)
            with open(self.dirpath / "per_class_accuracy.csv", "w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(["class", "accuracy"])
                writer.writerows(zip(names, per_class.tolist()))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table("test/confusion_top_pairs", columns=columns, data=rows)
        log.info(
            "%d classes > callbacks.confusion_matrix.max_classes=%d: no confusion figure; the %d most "
            "confused pairs are in %s",
            len(names),
            self.max_classes,
            len(rows),
            self.dirpath / "confusion_top_pairs.csv",
        )


def most_confused_pairs(matrix: torch.Tensor, names: list[str], count: int) -> list[list[Any]]:
    """The `count` largest off-diagonal cells: [true, predicted, count, count / images of true class]."""
    off_diagonal = matrix.clone()
    off_diagonal.fill_diagonal_(0)
    values, flat = off_diagonal.flatten().topk(min(count, off_diagonal.numel()))
    totals = matrix.sum(dim=1).clamp_min(1)
    rows = []
    for value, index in zip(values.tolist(), flat.tolist()):
        if value <= 0:
            break
        true, predicted = divmod(index, matrix.shape[1])
        rows.append([names[true], names[predicted], int(value), round(value / int(totals[true]), 4)])
    return rows


def confusion_figure(matrix: torch.Tensor, names: list[str]) -> Figure:
    """A heat map of the counts with each cell labelled (a bare matplotlib Figure: no display, no pyplot)."""
    size = max(4.0, 0.5 * len(names) + 2.0)
    figure = Figure(figsize=(size, size))
    axes = figure.subplots()
    axes.imshow(matrix.numpy(), cmap="Blues")
    axes.set_xticks(range(len(names)), names, rotation=90)
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(names) <= 30:
        half = matrix.max().item() / 2
        for i, row in enumerate(matrix.tolist()):
            for j, count in enumerate(row):
                axes.text(
                    j, i, str(count), ha="center", va="center", color="white" if count > half else "black"
                )
    return figure
