"""Callbacks the fault and DDP tests add to `src/train.py` runs (`+callbacks.probe._target_=fault_probes...`,
with tests/ on PYTHONPATH). Each rank appends what it observed to JSON-lines files in `outdir`, so the
test can compare ranks and runs after the processes are gone (or were killed)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as file:
        file.write(json.dumps(record) + "\n")
        file.flush()


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


class StepRecorder(L.Callback):
    """One record per training batch: the step, the epoch, and the stage values the batch trained with.

    `pause_at_step`: after that optimizer step, write `<outdir>/paused` and wait (up to 5 minutes) until
    `<outdir>/release` exists, so a test can kill or signal the process at a known point.
    """

    def __init__(self, outdir: str, pause_at_step: int | None = None) -> None:
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.pause_at_step = pause_at_step

    def _file(self, trainer: L.Trainer, kind: str) -> Path:
        return self.outdir / f"{kind}_rank{trainer.global_rank}.jsonl"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _append(
            self._file(trainer, "fits"), {"start_step": trainer.global_step, "epoch": trainer.current_epoch}
        )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        images = batch[0]
        record = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "batch_idx": batch_idx,
            "image_size": int(images.shape[-1]),
            "batch_size": int(images.shape[0]),
            "dropout": float(pl_module.model.dropout_rate),
        }
        _append(self._file(trainer, "steps"), record)
        if self.pause_at_step is not None and trainer.global_step == self.pause_at_step:
            (self.outdir / "paused").write_text(str(trainer.global_step))
            deadline = time.monotonic() + 300
            while not (self.outdir / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)


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
            _append(ckpt_file, {"path": str(path)})
            save(checkpoint, path, storage_options)

        io.save_checkpoint = recording_save

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._trained = 0
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        indices = [int(i) for i in sampler] if sampler is not None else None
        if indices is None:  # FFCV: its Loader draws the rank's share of `indices` each epoch
            ffcv_loader = getattr(loader, "loader", loader)
            indices = (
                [int(i) for i in ffcv_loader.next_traversal_order()]
                if hasattr(ffcv_loader, "next_traversal_order")
                else None
            )
        _append(
            self._file(trainer, "shards"),
            {"epoch": trainer.current_epoch, "sampler": type(sampler).__name__, "indices": indices},
        )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._trained += int(batch[0].shape[0])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _append(self._file(trainer, "trained"), {"epoch": trainer.current_epoch, "samples": self._trained})

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
            _append(self._file(trainer, "val"), {"epoch": trainer.current_epoch, **self._val})
