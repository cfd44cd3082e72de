"""The DDP strategy of `trainer=ddp|ddp_cpu`, with a process-group timeout, and the error a timeout
becomes.

A rank that waits longer than `timeout_s` in a collective (another rank died, hangs, or called a
different collective) fails instead of waiting forever. With gloo (CPU) the waiting call raises; with
NCCL the process-group watchdog aborts the process after the same time. `collective_timeout_error`
turns the raised error into one line naming the rank and the step.
"""

from __future__ import annotations

import signal
from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.strategies import DDPStrategy

from effnetv2.errors import ConfigError, EffNetV2Error


class CollectiveTimeoutError(EffNetV2Error):
    """A rank waited longer than the process-group timeout for the other ranks."""


def ddp_strategy(timeout_s: float = 1800.0, **kwargs: Any) -> DDPStrategy:
    """Lightning's DDPStrategy with the process-group timeout in seconds (Hydra cannot write a timedelta)."""
    if timeout_s <= 0:
        raise ConfigError(f"trainer.strategy.timeout_s={timeout_s} must be > 0 (seconds)")
    return DDPStrategy(timeout=timedelta(seconds=timeout_s), **kwargs)


def is_collective_timeout(error: BaseException) -> bool:
    """True for the error a gloo or NCCL collective raises when the process-group timeout ran out."""
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("timed out" in text or "timeout" in text)


def end_other_ranks(trainer: L.Trainer) -> None:
    """After a timeout, the ranks this process started (Lightning's `strategy: ddp` launcher on rank 0)
    may be stuck for good: kill them so the job ends. Under torchrun or SLURM the launcher does it."""
    launcher = trainer.strategy.launcher
    if getattr(launcher, "procs", None):
        launcher.kill(signal.SIGKILL)


def collective_timeout_error(trainer: L.Trainer, error: BaseException) -> CollectiveTimeoutError:
    timeout = getattr(trainer.strategy, "_timeout", None)
    seconds = f"{timeout.total_seconds():g} s" if isinstance(timeout, timedelta) else "the timeout"
    return CollectiveTimeoutError(
        f"rank {trainer.global_rank} of {trainer.world_size} waited {seconds} for the other ranks in a "
        f"collective at global step {trainer.global_step} (epoch {trainer.current_epoch}) and gave up: "
        "another rank died, hangs or runs different code (its log says which). Resume from the last "
        f"checkpoint; raise trainer.strategy.timeout_s if a rank legitimately works that long alone "
        f"({type(error).__name__}: {str(error).splitlines()[0][:200]})"
    )
