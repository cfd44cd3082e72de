"""The progress bar: Lightning's rich bar plus the progressive-learning stage and the train image size."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress.progress_bar import get_standard_metrics

from effnetv2.training.callbacks.progressive import current_stage


class StageProgressBar(RichProgressBar):
    """Lightning's rich progress bar, plus the progressive-learning stage and the train image size.

    Only rank 0 draws the bar, so it must never start a collective: Lightning's `get_metrics` reads
    `trainer.progress_bar_metrics`, which computes (and under DDP all-gathers) every epoch metric not
    computed yet, e.g. at `on_train_epoch_end` before the loop computes them on all ranks, while the
    other ranks wait in another collective: a deadlock. This bar shows the values every rank already
    computed (step values after each batch, epoch values after each epoch or validation), and reads
    them from the device every `trainer.log_every_n_steps` steps only, so drawing it does not make the
    host wait for the GPU at every step.
    """

    def __init__(
        self,
        *args: Any,
        logged_metrics: tuple[str, ...] = ("train/loss_step", "train/loss_epoch"),
        **kwargs: Any,
    ) -> None:
        """`logged_metrics`: logged values shown besides those logged with `prog_bar=True` (which
        Lightning converts to Python numbers after every step, so per-step values use this instead)."""
        super().__init__(*args, **kwargs)
        self.logged_metrics = tuple(logged_metrics)
        self._shown: dict[str, Any] = {}
        self._read_now = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        every = max(1, int(trainer.log_every_n_steps))
        self._read_now = batch_idx == 0 or trainer.global_step % every == 0
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._read_now = True

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        if self._read_now or not self._shown:
            connector = trainer._logger_connector  # values already computed: no compute, no collective
            logged = {
                name: value
                for name, value in connector._logged_metrics.items()
                if name in self.logged_metrics
            }
            computed = {**connector._progress_bar_metrics, **logged}
            computed.pop("train/image_size", None)  # shown as `size` below, from the stage itself
            computed = {
                name: value.item() if isinstance(value, torch.Tensor) else value
                for name, value in computed.items()
            }
            self._shown = {**get_standard_metrics(trainer), **computed}
        items = dict(self._shown)
        values, num_stages = current_stage(trainer)
        if values is not None:
            items = {"stage": f"{values.stage + 1}/{num_stages}", "size": values.image_size, **items}
        elif (size := getattr(trainer.datamodule, "image_size", None)) is not None:
            items = {"size": size, **items}
        return items
