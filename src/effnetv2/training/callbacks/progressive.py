"""The progressive-learning callback: applies `ProgressiveSchedule` stages during `Trainer.fit`."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from effnetv2.errors import ConfigError
from effnetv2.training.progressive import ProgressiveSchedule, StageValues

DATAMODULE_SETTERS = ("set_image_size", "set_eval_size", "set_randaug_magnitude")
MODULE_SETTERS = ("set_mixup_alpha", "set_dropout")

log = logging.getLogger(__name__)


@rank_zero_only
def log_info(message: str) -> None:
    """To the run's log (Hydra's file and console handlers), once per run under DDP."""
    log.info(message)


def first_epoch_after_restore(checkpoint: dict[str, Any]) -> int:
    """The epoch whose batches come first when training resumes from `checkpoint`.

    A checkpoint saved at the end of an epoch (`on_train_epoch_end`) has `processed` = epochs done;
    one saved by validation or `every_n_train_steps` after the epoch's last batch has not counted
    that epoch yet, but Lightning finishes it on resume, so training continues with the next one.
    """
    fit_loop = checkpoint.get("loops", {}).get("fit_loop")
    if fit_loop is None:
        return int(checkpoint.get("epoch", 0))
    progress = fit_loop["epoch_progress"]["current"]
    epoch = int(progress["processed"])
    epoch_unfinished = progress["started"] > progress["processed"]
    if epoch_unfinished and fit_loop["epoch_loop.batch_progress"].get("is_last_batch", False):
        epoch += 1
    return epoch


class ProgressiveLearning(L.Callback):
    """Progressive learning with adaptive regularization (paper Algorithm 1).

    At every epoch the stage is derived from `trainer.current_epoch` and `trainer.max_epochs`; when it
    differs from the stage in force, the callback sets the train image size and RandAugment magnitude
    on the datamodule and the mixup alpha and dropout (CutMix alpha and drop-path rate when the
    schedule has them) on the LightningModule, then prints the change.

    Nothing about the stage is stored: resuming from any checkpoint, even in the middle of a stage,
    restores the right stage from the epoch. Under DDP every rank computes the same stage from the
    same epoch, so no communication is needed.

    When the values must be in place (Lightning 2.6): from the second epoch on, a train dataloader
    iterator (and its worker processes) is created *after* `on_train_epoch_start`. The first epoch's
    iterator of a `fit` call is created earlier, by the first `fit_loop.setup_data()`, which
    `configure_optimizers` already triggers when it reads `trainer.estimated_stepping_batches`
    (before `on_fit_start`). So the first stage is applied in `setup` (fresh start) and
    `on_load_checkpoint` (resume: the epoch comes from the checkpoint's loop state), both of which
    run before that; later stages in `on_train_epoch_start`. `on_train_batch_start` re-checks the
    stage because Lightning skips `on_train_epoch_start` for an epoch it resumes mid-way.
    """

    def __init__(self, schedule: ProgressiveSchedule, print_schedule: bool = True) -> None:
        if not isinstance(schedule, ProgressiveSchedule):
            raise ConfigError(
                "ProgressiveLearning(schedule=...) needs a ProgressiveSchedule, "
                f"got {type(schedule).__name__}; pick one with schedule=<name> (conf/schedule/)"
            )
        self.schedule = schedule
        self.print_schedule = print_schedule
        self.applied: StageValues | None = None
        self._applied_epoch = 0
        self._announced: StageValues | None = None

    # Hooks ------------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":  # validate / test / predict: evaluate at the schedule's eval size
            if hasattr(trainer.datamodule, "set_eval_size"):
                trainer.datamodule.set_eval_size(self.schedule.final_eval_size)
            return
        self._datamodule(trainer).set_eval_size(self.schedule.final_eval_size)
        self._check_module(pl_module)
        self.applied = self._announced = None
        max_epochs = self._max_epochs(trainer)
        if self.print_schedule and not trainer.fast_dev_run:
            log_info(self.schedule.describe(max_epochs))
        self._apply(trainer, pl_module, trainer.current_epoch)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == "fit":
            self._apply(trainer, pl_module, first_epoch_after_restore(checkpoint))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._announce()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply(trainer, pl_module, trainer.current_epoch)
        self._announce()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        stage = self._stage_of(trainer, trainer.current_epoch)
        if self.applied is None or self.applied.stage != stage:
            rank_zero_warn(
                f"Progressive learning: stage {stage} applied late (epoch {trainer.current_epoch}, batch "
                f"{batch_idx}); this epoch's data loader may still deliver the previous stage's images."
            )
            self._apply(trainer, pl_module, trainer.current_epoch)
            self._announce()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.applied is None:
            return
        metrics = {
            "progressive/stage": float(self.applied.stage),
            "progressive/image_size": float(self.applied.image_size),
            "progressive/randaug_magnitude": self.applied.randaug_magnitude,
            "progressive/mixup_alpha": self.applied.mixup_alpha,
            "progressive/dropout": self.applied.dropout,
        }
        if self.applied.cutmix_alpha is not None:
            metrics["progressive/cutmix_alpha"] = self.applied.cutmix_alpha
        if self.applied.drop_path_rate is not None:
            metrics["progressive/drop_path_rate"] = self.applied.drop_path_rate
        pl_module.log_dict(metrics, on_step=False, on_epoch=True)

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule.to_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("schedule")
        if saved is not None and saved != self.schedule.to_dict():
            rank_zero_warn(
                "Progressive learning: the checkpoint was trained with a different schedule "
                f"({saved}); training continues with the configured one ({self.schedule.to_dict()})."
            )

    # Applying a stage -------------------------------------------------------------------------------
    def _apply(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        values = self.schedule.stage_values(self._stage_of(trainer, epoch))
        if values == self.applied:
            return
        datamodule = self._datamodule(trainer)
        datamodule.set_image_size(values.image_size)
        datamodule.set_randaug_magnitude(values.randaug_magnitude)
        pl_module.set_mixup_alpha(values.mixup_alpha)
        pl_module.set_dropout(values.dropout)
        if values.cutmix_alpha is not None:
            pl_module.set_cutmix_alpha(values.cutmix_alpha)
        if values.drop_path_rate is not None:
            pl_module.set_drop_path_rate(values.drop_path_rate)
        self.applied, self._applied_epoch = values, epoch

    def _announce(self) -> None:
        """Print the stage in force once (a resume applies its stage silently before fitting starts)."""
        if self.applied is not None and self.applied != self._announced:
            log_info(
                f"Progressive learning: epoch {self._applied_epoch} trains {describe_values(self.applied)}"
            )
            self._announced = self.applied

    def _stage_of(self, trainer: L.Trainer, epoch: int) -> int:
        if trainer.fast_dev_run:
            return 0  # one batch per loop: a smoke test of the first stage
        return self.schedule.stage_of_epoch(epoch, self._max_epochs(trainer))

    def _max_epochs(self, trainer: L.Trainer) -> int:
        if trainer.fast_dev_run:
            return self.schedule.num_stages
        max_epochs = trainer.max_epochs
        if max_epochs is None or max_epochs < 0:
            raise ConfigError(
                f"trainer.max_epochs={max_epochs}: progressive learning splits epochs into stages; "
                f"set trainer.max_epochs >= schedule.num_stages={self.schedule.num_stages}"
            )
        return self.schedule.check_epochs(max_epochs)

    def _datamodule(self, trainer: L.Trainer) -> Any:
        datamodule = trainer.datamodule
        missing = [name for name in DATAMODULE_SETTERS if not hasattr(datamodule, name)]
        if datamodule is None or missing:
            raise ConfigError(
                "ProgressiveLearning changes the data between stages: pass a datamodule with "
                f"{', '.join(DATAMODULE_SETTERS)} to trainer.fit(datamodule=...) "
                f"(got {type(datamodule).__name__}), or remove callbacks.progressive"
            )
        return datamodule

    def _check_module(self, pl_module: L.LightningModule) -> None:
        needed = list(MODULE_SETTERS)
        if self.schedule.cutmix_alpha is not None:
            needed.append("set_cutmix_alpha")
        if self.schedule.drop_path_rate is not None:
            needed.append("set_drop_path_rate")
        missing = [name for name in needed if not hasattr(pl_module, name)]
        if missing:
            raise ConfigError(
                f"ProgressiveLearning needs {type(pl_module).__name__}.{', '.join(missing)}: "
                "use effnetv2.training.module.ClassificationModule or add the setters"
            )


def describe_values(values: StageValues) -> str:
    """One line for the log, e.g. `stage 1: image size 96, RandAugment 8.3, mixup 0, dropout 0.17`."""
    parts = [
        f"stage {values.stage}: image size {values.image_size}",
        f"RandAugment {values.randaug_magnitude:.3g}",
        f"mixup {values.mixup_alpha:.3g}",
        f"dropout {values.dropout:.3g}",
    ]
    if values.cutmix_alpha is not None:
        parts.append(f"CutMix {values.cutmix_alpha:.3g}")
    if values.drop_path_rate is not None:
        parts.append(f"drop-path {values.drop_path_rate:.3g}")
    return ", ".join(parts)


def find_progressive(trainer: L.Trainer) -> ProgressiveLearning | None:
    """The run's progressive-learning callback, if it has one."""
    return next((cb for cb in trainer.callbacks if isinstance(cb, ProgressiveLearning)), None)


def current_stage(trainer: L.Trainer) -> tuple[StageValues | None, int]:
    """The stage values in force (None without progressive learning) and the number of stages."""
    progressive = find_progressive(trainer)
    if progressive is None:
        return None, 1
    return progressive.applied, progressive.schedule.num_stages
