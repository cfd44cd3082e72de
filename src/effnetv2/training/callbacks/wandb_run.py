"""Keeping the W&B run id with the run, so a resumed training logs on into the W&B run it began
(`effnetv2.training.loggers.resume_wandb_run` reads it back)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from effnetv2.training.loggers import WANDB_RUN_ID, wandb_logger


class KeepWandbRunId(L.Callback):
    """Keeps the id of the W&B run the training logs to in `<output_dir>/wandb_run_id` and in every
    checkpoint, where `wandb_run_id_of_checkpoint` finds it when the training is resumed. The id is the
    one W&B uses, read from the logger: a W&B sweep replaces a configured one by the agent's."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        logger = wandb_logger(trainer) if stage == "fit" else None
        if logger is not None:
            (self.output_dir / WANDB_RUN_ID).write_text(f"{logger.experiment.id}\n")

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        logger = wandb_logger(trainer)
        if logger is not None:
            checkpoint[WANDB_RUN_ID] = logger.experiment.id
