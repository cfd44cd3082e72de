"""Probe callbacks that runs load (`+callbacks.probe._target_=helpers.probes.StepRecorder`; tests/ is
on the children's PYTHONPATH). Each rank appends what it observed to JSON-lines files, so a test can
compare ranks and runs after the processes ended or were killed."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from effnetv2.errors import ConfigError


def append_record(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as file:
        file.write(json.dumps(record) + "\n")
        file.flush()


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


class StepRecorder(L.Callback):
    """One record per optimizer step: the step, the epoch, and the stage values its batch trained with.

    `pause_at_step`: after that optimizer step, write `<outdir>/paused` and wait (up to 5 minutes) until
    `<outdir>/release` exists, so a test can kill or signal the process at a known point.
    """

    def __init__(self, outdir: str, pause_at_step: int | None = None) -> None:
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.pause_at_step = pause_at_step
        self._batch: dict[str, int] = {}

    def _file(self, trainer: L.Trainer, kind: str) -> Path:
        return self.outdir / f"{kind}_rank{trainer.global_rank}.jsonl"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        append_record(
            self._file(trainer, "fits"), {"start_step": trainer.global_step, "epoch": trainer.current_epoch}
        )

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch = {
            "batch_idx": batch_idx,
            "image_size": int(batch[0].shape[-1]),
            "batch_size": len(batch[0]),
        }

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        """Recorded here, before any batch-end hook can stop the run: optimizer step `step` happens now."""
        record = {
            "step": trainer.global_step + 1,
            "epoch": trainer.current_epoch,
            **self._batch,
            "dropout": float(pl_module.model.dropout_rate),
        }
        append_record(self._file(trainer, "steps"), record)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.pause_at_step is not None and trainer.global_step == self.pause_at_step:
            (self.outdir / "paused").write_text(str(trainer.global_step))
            deadline = time.monotonic() + 300
            while not (self.outdir / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)


class FailFirstJob(L.Callback):
    """A user error (ConfigError), or with `user_error=False` a RuntimeError, in the first run that uses
    it and none in later ones: the first creates `marker`. For sweeps, which must go on after a failed
    job whatever values the sweeper chose."""

    def __init__(self, marker: str, user_error: bool = True) -> None:
        self.marker = Path(marker)
        self.user_error = user_error

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.marker.exists():
            self.marker.touch()
            error = ConfigError if self.user_error else RuntimeError
            raise error("FailFirstJob stopped the first job")


def epoch_indices(loader: Any, epoch: int) -> tuple[str, list[int]]:
    """The sample indices this rank's train loader draws in `epoch`, and what draws them."""
    sampler = getattr(loader, "sampler", None)
    if sampler is not None:  # torch DataLoader: Lightning set the sampler's epoch before on_train_epoch_start
        return type(sampler).__name__, [int(i) for i in sampler]
    ffcv = loader.loader  # effnetv2's FFCVLoader wraps an ffcv Loader, which counts epochs itself
    order = ffcv.traversal_order.sample_order(epoch)[: len(ffcv) * ffcv.batch_size]
    kind = f"ffcv {type(ffcv.traversal_order).__name__}" + (" distributed" if ffcv.distributed else "")
    return kind, [int(i) for i in order]


class ShardRecorder(L.Callback):
    """Under DDP: which sample indices this rank's sampler yields, how many samples it trained and
    validated on and how many it got right, and every checkpoint write this rank performed."""

    def __init__(self, outdir: str) -> None:
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self._val = {"correct": 0, "total": 0}
        self._trained = 0

    def _file(self, trainer: L.Trainer, kind: str) -> Path:
        return self.outdir / f"{kind}_rank{trainer.global_rank}.jsonl"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        io = trainer.strategy.checkpoint_io
        save = io.save_checkpoint
        ckpt_file = self._file(trainer, "ckpt_writes")

        def recording_save(checkpoint: dict, path: Any, storage_options: Any = None) -> None:
            append_record(ckpt_file, {"path": str(path)})
            save(checkpoint, path, storage_options)

        io.save_checkpoint = recording_save

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._trained = 0
        kind, indices = epoch_indices(trainer.train_dataloader, trainer.current_epoch)
        append_record(
            self._file(trainer, "shards"), {"epoch": trainer.current_epoch, "kind": kind, "indices": indices}
        )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._trained += int(batch[0].shape[0])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        append_record(
            self._file(trainer, "trained"), {"epoch": trainer.current_epoch, "samples": self._trained}
        )

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val = {"correct": 0, "total": 0}

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        images, targets = batch
        with torch.no_grad():
            predictions = pl_module(images).argmax(dim=-1)
        self._val["correct"] += int((predictions == targets).sum())
        self._val["total"] += int(targets.numel())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            append_record(self._file(trainer, "val"), {"epoch": trainer.current_epoch, **self._val})


class StallRank(L.Callback):
    """Under DDP: rank `rank` sleeps `seconds` after optimizer step `at_step` (a hung or slow rank),
    writing `<outdir>/stalled` first, while the other ranks go on into the next collective."""

    def __init__(self, outdir: str, rank: int = 1, at_step: int = 2, seconds: float = 600.0) -> None:
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.rank, self.at_step, self.seconds = rank, at_step, seconds

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.at_step:
            (self.outdir / "stalled").write_text(str(trainer.global_step))
            time.sleep(self.seconds)


SYNCING_TENSOR_METHODS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__")
SYNCING_COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "broadcast", "barrier")


class SyncCounter(L.Callback):
    """Counts the calls that make the host wait for the device, per training batch: the tensor methods
    that read a value to Python (`item`, `tolist`, `numpy`, `bool()`, `float()`, `int()`) and the
    torch.distributed collectives. A batch's count runs from its `on_train_batch_start` until the next
    batch starts or validation begins, so Lightning's own per-step bookkeeping is included (torch.optim's
    reads of its CPU step counters are not counted). Results in
    `SyncCounter.per_batch` (a list of {name: count}), for in-process runs."""

    per_batch: list[dict[str, int]] = []

    def __init__(self) -> None:
        self._originals: dict[tuple[Any, str], Any] = {}
        self._current: dict[str, int] | None = None

    def _patch(self, owner: Any, name: str) -> None:
        original = getattr(owner, name)
        self._originals[(owner, name)] = original

        def counting(*args: Any, **kwargs: Any) -> Any:
            # torch.optim keeps its `step` counters on the CPU on purpose (also with CUDA parameters),
            # so the `.item()` it calls on them does not wait for the device
            caller = sys._getframe(1).f_code.co_filename.replace(os.sep, "/")
            if self._current is not None and "/torch/optim/" not in caller:
                self._current[name] = self._current.get(name, 0) + 1
            return original(*args, **kwargs)

        setattr(owner, name, counting)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        SyncCounter.per_batch = []
        for name in SYNCING_TENSOR_METHODS:
            self._patch(torch.Tensor, name)
        for name in SYNCING_COLLECTIVES:
            self._patch(torch.distributed, name)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._current = {}
        SyncCounter.per_batch.append(self._current)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._current = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._current = None
        for (owner, name), original in self._originals.items():
            setattr(owner, name, original)
        self._originals = {}


class BatchShapeRecorder(L.Callback):
    """The distinct (phase, batch shape) pairs the model saw: what torch.compile may compile once each.
    Results in `BatchShapeRecorder.seen`, for in-process runs."""

    seen: set[tuple[str, tuple[int, ...]]] = set()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            BatchShapeRecorder.seen = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        BatchShapeRecorder.seen.add(("train", tuple(batch[0].shape)))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        BatchShapeRecorder.seen.add(("validate", tuple(batch[0].shape)))

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        # Lightning tests under inference_mode: inference tensors make a graph of their own
        BatchShapeRecorder.seen.add(("test", tuple(batch[0].shape)))
