"""last.ckpt kept current: what `resume=auto` and a run stopped by a signal continue from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from effnetv2.errors import ConfigError


class LastCheckpoint(L.Callback):
    """Keeps `<dirpath>/last.ckpt` current: every `every_n_steps` optimizer steps, at the end of every
    epoch (after its validation) and when training ends, so a kill loses at most N steps or one epoch.

    Lightning 2.6's `ModelCheckpoint(save_last=True)` writes last.ckpt only when it also wrote a top-k
    checkpoint (or every N steps with `every_n_train_steps`, but then never at epoch ends), so at the end
    of a run last.ckpt can be older than the final weights. `resume=auto` and CheckpointOnSignal use this
    file. All ranks call `trainer.save_checkpoint`; rank 0 writes.
    """

    def __init__(self, dirpath: str | os.PathLike[str], every_n_steps: int | None = 500) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigError(
                f"faults.checkpoint_every_n_steps={every_n_steps} must be >= 1 (or null: epochs only)"
            )
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = every_n_steps
        self.saved_step = -1

    def save(self, trainer: L.Trainer) -> None:
        if trainer.fast_dev_run:  # a smoke test writes no checkpoints (as Lightning's ModelCheckpoint)
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        self.saved_step = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step != self.saved_step:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)  # also when a step save just happened: this one includes the epoch's validation

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self.saved_step:  # stopped inside an epoch (max_steps, should_stop)
            self.save(trainer)


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where `last.ckpt` goes: LastCheckpoint's file, else that of a ModelCheckpoint with save_last."""
    for callback in trainer.callbacks:
        if isinstance(callback, LastCheckpoint):
            return callback.path
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath:
            return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
