"""A NaN or inf training loss: stop with a message naming the step, or skip that optimizer step
(`faults.on_nan: stop | skip`).

Reading the flag makes the host wait for the device (and under DDP costs an all-reduce), so it is read
every `faults.check_every_n_steps` optimizer steps, at epoch ends and before a checkpoint is written;
see docs/distributed.md for what a NaN costs in steps.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from effnetv2.errors import ConfigError, EffNetV2Error

NAN_POLICIES = ("stop", "skip")


class NonFiniteLossError(EffNetV2Error):
    """The training loss became NaN or inf (`faults.on_nan=stop`)."""


class NonFiniteLossGuard(L.Callback):
    """Catch a NaN or inf loss.

    `on_nan="stop"` raises NonFiniteLossError naming the steps. The flag stays on the device and is read
    (under DDP: one all-reduce) every `check_every_n_steps` optimizer steps, at every epoch end and
    before any checkpoint is written, so the host does not wait for the GPU at every step: up to that
    many steps may be applied after the first NaN, but no checkpoint ever holds them, and the error
    says where to resume. `on_nan="skip"` must decide before each optimizer step, so it reads the flag at
    every step: it drops that step's gradients (parameters, momentum and Adam moments stay as they were;
    the step still counts, so schedules stay aligned) and stops after `max_consecutive_skips` skips.

    With 16-bit mixed precision and loss scaling (`16-mixed`), the loss this guard sees is scaled; the
    GradScaler skips the optimizer steps whose scaled loss or gradients overflow to inf and lowers the
    scale: that is not a divergence, so there only a NaN loss counts.
    """

    def __init__(
        self, on_nan: str = "stop", max_consecutive_skips: int = 10, check_every_n_steps: int = 20
    ) -> None:
        if on_nan not in NAN_POLICIES:
            raise ConfigError(f"faults.on_nan={on_nan!r} is unknown; choose one of {', '.join(NAN_POLICIES)}")
        if max_consecutive_skips < 1:
            raise ConfigError(f"faults.max_consecutive_nan_skips={max_consecutive_skips} must be >= 1")
        if check_every_n_steps < 1:
            raise ConfigError(f"faults.check_every_n_steps={check_every_n_steps} must be >= 1")
        self.on_nan = on_nan
        self.max_consecutive_skips = max_consecutive_skips
        self.check_every_n_steps = check_every_n_steps
        self.skipped_steps = 0
        self._skips_in_a_row = 0
        self._nonfinite: torch.Tensor | None = None
        self._loss: torch.Tensor | None = None
        self._first_unchecked_step: int | None = None

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            # 16-mixed: `loss` is scaled. An inf is the scaled value overflowing (the scaler skips the
            # step and lowers the scale); only a NaN is a NaN of the loss itself.
            nonfinite = torch.isnan(loss.detach()).any()
        else:
            nonfinite = ~torch.isfinite(loss.detach()).all()  # stays on the device: no sync here
        step = trainer.global_step
        if self._nonfinite is None:
            self._nonfinite, self._loss = nonfinite, loss.detach()
            self._first_bad_step = torch.where(nonfinite, step, -1)
            self._first_unchecked_step = step
        else:  # keep the first non-finite loss and its step for the message
            first = self._nonfinite
            self._loss = torch.where(first, self._loss, loss.detach())
            self._first_bad_step = torch.where(first | ~nonfinite, self._first_bad_step, step)
            self._nonfinite = first | nonfinite

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._nonfinite is None:
            return
        step = trainer.global_step + 1  # the step this update makes
        if self.on_nan == "stop" and step % self.check_every_n_steps:
            return  # read later, with the flag of the steps in between
        if not self._check(trainer):
            self._skips_in_a_row = 0
            return
        where = self._where(trainer, trainer.global_step)
        value = self._value
        self.skipped_steps += 1
        self._skips_in_a_row += 1
        if self._skips_in_a_row >= self.max_consecutive_skips:
            raise NonFiniteLossError(
                f"the training loss is {value} at {where}, {self._skips_in_a_row} skipped steps in a row: "
                "training diverged. Lower optimizer.lr or set trainer.gradient_clip_val and resume from "
                "the last checkpoint"
            )
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = None  # optimizers leave parameters without gradients untouched
        rank_zero_warn(f"skipped {where}: the training loss is {value} (faults.on_nan=skip)")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.training:  # every rank writes (or skips) the checkpoint together: a consistent point
            self._check(trainer)

    def _check(self, trainer: L.Trainer) -> bool:
        """Read the flag of the steps since the last check (all ranks together); raise under `stop`."""
        local, first = self._nonfinite, self._first_unchecked_step
        if local is None:
            return False
        self._nonfinite = None
        local_bad = bool(local)
        self._value = f"{self._loss.float().mean().item()}" if local_bad else "not finite on another rank"
        if trainer.world_size == 1:
            bad = local_bad
        else:
            bad = trainer.strategy.reduce_boolean_decision(local_bad, all=False)
        if not bad or self.on_nan == "skip":
            return bad
        now = trainer.global_step
        bad_step = int(self._first_bad_step) if local_bad else None
        if bad_step == now:
            where = self._where(trainer, now)
        else:
            steps = (
                f"global step {bad_step}" if bad_step is not None else f"one of global steps {first}-{now}"
            )
            where = (
                f"{steps} (epoch {trainer.current_epoch}; found at global step {now}: the flag is read "
                f"every faults.check_every_n_steps={self.check_every_n_steps} steps)"
            )
        raise NonFiniteLossError(
            f"the training loss is {self._value} at {where}; no checkpoint holds weights updated with it. "
            "Lower optimizer.lr, set trainer.gradient_clip_val (e.g. 1.0), check the data, or set "
            "faults.on_nan=skip to skip such steps; resume from the last checkpoint"
        )

    @staticmethod
    def _where(trainer: L.Trainer, step: int) -> str:
        return (
            f"global step {step} (epoch {trainer.current_epoch}, "
            f"batch {trainer.fit_loop.epoch_loop.batch_idx})"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.skipped_steps:
            rank_zero_info(
                f"faults.on_nan=skip: {self.skipped_steps} optimizer step(s) skipped for a NaN/inf loss"
            )
