"""What runs where: the torch loader's workers on platforms without POSIX signal masks (Windows: no
`signal.pthread_sigmask`; macOS: no `signal.sigwaitinfo`), simulated by removing those functions, and
with spawned workers (the start method on macOS and Windows)."""

from __future__ import annotations

import multiprocessing
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from effnetv2.data.datamodule import ImageDataModule
from effnetv2.data.torch_loader import worker_init

pytest_plugins = ["fixtures_data"]

PTHREAD_SIGMASK = signal.pthread_sigmask  # kept before a test removes it from the module


class WorkerSignals(Dataset):
    """Each sample reports, from inside the worker, what worker_init left of its signal handling."""

    def __len__(self) -> int:
        return 2

    def reseed(self, seed: int) -> None:
        """worker_init reseeds every dataset's augmentation; this one has none."""

    def __getitem__(self, index: int) -> dict[str, bool]:
        return {
            "sigint_ignored": signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
            "sigterm_blocked": signal.SIGTERM in PTHREAD_SIGMASK(signal.SIG_BLOCK, []),
            "sigterm_waiter": any(t.name == "sigterm-from-parent" for t in threading.enumerate()),
        }


def as_list(items: list[Any]) -> list[Any]:
    return items


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("missing", "posix"),
    [(None, True), ("pthread_sigmask", False), ("sigwaitinfo", False)],
    ids=["linux", "no-pthread_sigmask", "no-sigwaitinfo"],
)
def test_worker_init_keeps_what_the_platform_has(monkeypatch, missing: str | None, posix: bool) -> None:
    """Forked workers inherit the module without the function, as a Windows or macOS worker would have it:
    worker_init must not fail there, must still ignore Ctrl-C, and must not block SIGTERM with nothing
    waiting for it (the worker could then never be terminated)."""
    if missing:
        monkeypatch.delattr(signal, missing)
    loader = DataLoader(
        WorkerSignals(),
        batch_size=1,
        num_workers=1,
        worker_init_fn=worker_init,
        collate_fn=as_list,
        multiprocessing_context="fork",
    )
    reports = [report for batch in loader for report in batch]
    assert reports == [{"sigint_ignored": True, "sigterm_blocked": posix, "sigterm_waiter": posix}] * 2


@pytest.mark.timeout(300)
def test_image_loader_with_spawned_workers_follows_size_changes(tiny_folder: Path) -> None:
    """macOS and Windows start DataLoader workers with spawn: the dataset, worker_init and the shared
    live settings are pickled into a fresh interpreter. A size change made after the (persistent) worker
    started must still reach its next batches, as progressive learning needs."""
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("spawn", force=True)
    try:
        datamodule = ImageDataModule(
            source="image_folder",
            root=str(tiny_folder),
            in_chans=3,
            mean=(0.5, 0.5, 0.5),
            std=(0.25, 0.25, 0.25),
            batch_size=4,
            num_workers=1,
            persistent_workers=True,
            image_size=16,
            eval_size=16,
            val_fraction=0.5,
        )
        datamodule.setup("fit")
        loader = datamodule.val_dataloader()
        assert loader.multiprocessing_context is None  # the global start method applies: spawn
        first = [images for images, _ in loader]
        datamodule.set_eval_size(24)
        second = [images for images, _ in loader]
    finally:
        multiprocessing.set_start_method(previous, force=True)
    assert {tuple(images.shape[1:]) for images in first} == {(3, 16, 16)}
    assert {tuple(images.shape[1:]) for images in second} == {(3, 24, 24)}
    assert sum(len(images) for images in first) == 6 and torch.isfinite(torch.cat(second)).all()
