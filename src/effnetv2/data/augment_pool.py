"""Augmentation in worker processes: one transform, a copy in each process, batches in shared memory.

Why: FFCV runs a plain-Python pipeline stage in its loader thread, and RandAugment there is one
albumentations call per image and operation, driven from Python. Threads serialise on the GIL around
those calls (most of the stage's time at 128 px: docs/data.md, "Loader scaling"); processes do not.
The processes run the very transform object the parent holds (pickled once into each), not a second
implementation; RandAugment's magnitude travels with every batch, so a stage change reaches the next
batch. Each image gets its own seed, drawn in the parent, so a batch comes out the same whatever the
number of processes (one runs in the calling thread, no process).

A worker is `python -m effnetv2.data.augment_pool`, started with the parent's `sys.path`; it reads
pickled tasks on stdin and answers on its own pipe, and exits when the parent closes stdin or dies;
like the torch loader's workers it leaves a job-wide SIGINT/SIGTERM to the training process.
An error in a worker raises `DataError` in the parent with the worker's traceback.
"""

from __future__ import annotations

import atexit
import os
import pickle
import subprocess
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Sequence
from multiprocessing import resource_tracker, shared_memory
from typing import Any, BinaryIO

import numpy as np

from effnetv2.errors import DataError
from effnetv2.worker_signals import ignore_interrupts_in_worker

Transform = Callable[..., dict[str, Any]]  # an albumentations transform: transform(image=...)["image"]
_STOP_SECONDS = 5.0


def augment_images(
    transform: Transform, images: np.ndarray, out: np.ndarray, seeds: np.ndarray, magnitude: float | None
) -> None:
    """out[i] = transform(images[i]) with seeds[i]; the one loop both the parent and a worker run."""
    if magnitude is not None:
        transform.magnitude = magnitude  # type: ignore[attr-defined]
    for i, seed in enumerate(seeds):
        transform.set_random_seed(int(seed))  # type: ignore[attr-defined]
        out[i] = transform(image=images[i])["image"]


class _Worker:
    """One worker process and its two pipes."""

    def __init__(self, transform: bytes) -> None:
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "effnetv2.data.augment_pool"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
        )
        self.tasks: BinaryIO = self.process.stdin  # type: ignore[assignment]
        self.replies: BinaryIO = self.process.stdout  # type: ignore[assignment]
        self.send(transform)

    def send(self, pickled: bytes) -> None:
        try:
            self.tasks.write(pickled)
            self.tasks.flush()
        except (BrokenPipeError, OSError):
            raise self.died() from None

    def receive(self) -> None:
        try:
            status, detail = pickle.load(self.replies)
        except (EOFError, pickle.UnpicklingError):
            raise self.died() from None
        if status != "ok":
            raise DataError(f"augmentation failed in worker process {self.process.pid}:\n{detail}")

    def died(self) -> DataError:
        try:
            code = self.process.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:  # alive but its pipes broken: end it
            self.process.kill()
            code = self.process.wait()
        return DataError(
            f"augmentation worker process {self.process.pid} exited with code {code} (its error, if any, "
            "is printed above); out of memory or killed from outside? Fewer data.num_workers uses fewer"
        )

    def stop(self) -> None:
        try:
            self.tasks.close()  # the worker's read ends: it exits
            self.process.wait(_STOP_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        self.replies.close()


def _free(buffers: list[shared_memory.SharedMemory]) -> None:
    for buffer in buffers:
        buffer.close()
        buffer.unlink()
    buffers.clear()


def _shut_down(workers: list[_Worker], buffers: list[shared_memory.SharedMemory]) -> None:
    for worker in workers:
        worker.stop()
    workers.clear()
    _free(buffers)


_open_pools: weakref.WeakSet[AugmentPool] = weakref.WeakSet()


@atexit.register  # registered on import, before ffcv_loader's: runs after it at exit
def _close_pools() -> None:
    for pool in list(_open_pools):
        pool.close()


class AugmentPool:
    """`transform` applied to each image of uint8 N x H x W x C batches, in `processes` processes.

    The workers start at the first batch and stay until `close()` (or garbage collection, or exit).
    Calls are serialised: FFCV can start an epoch's thread before the previous one has stopped.
    """

    def __init__(self, transform: Transform, processes: int, seed: int | Sequence[int] = 0) -> None:
        self.transform = transform
        self.processes = max(1, processes)
        self._seeds = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._buffers: list[shared_memory.SharedMemory] = []  # one at a time; replaced when too small
        # At exit `_close_pools` runs instead, after ffcv_loader has stopped its epoch threads.
        weakref.finalize(self, _shut_down, self._workers, self._buffers).atexit = False
        _open_pools.add(self)

    def __call__(self, images: np.ndarray, destination: np.ndarray) -> np.ndarray:
        """Augmented copies of `images` in `destination[:len(images)]` (which is returned)."""
        count = len(images)
        with self._lock:
            seeds = self._seeds.integers(0, 2**32, size=count)
            magnitude = getattr(self.transform, "magnitude", None)
            if self.processes == 1 or count < 2:
                augment_images(self.transform, images, destination, seeds, magnitude)
                return destination[:count]
            batch = self._shared_batch(images)
            self._start_workers()
            bounds = np.linspace(0, count, len(self._workers) + 1).astype(int)
            name, busy = self._buffers[0].name, []
            try:
                for worker, start, stop in zip(self._workers, bounds, bounds[1:]):
                    if stop > start:
                        task = (name, batch.shape, batch.dtype.str, start, stop, seeds[start:stop], magnitude)
                        worker.send(pickle.dumps(task, protocol=5))
                        busy.append(worker)
                for worker in busy:
                    worker.receive()
                destination[:count] = batch
            except DataError:
                del batch  # a view of the shared buffer, which cannot be freed while it exists
                _shut_down(self._workers, self._buffers)  # replies may be pending: start afresh next time
                raise
            return destination[:count]

    def _shared_batch(self, images: np.ndarray) -> np.ndarray:
        """`images` copied into the shared buffer (grown when too small), as an array over it."""
        if not self._buffers or self._buffers[0].size < images.nbytes:
            _free(self._buffers)
            self._buffers.append(shared_memory.SharedMemory(create=True, size=max(1, images.nbytes)))
        batch = np.ndarray(images.shape, images.dtype, buffer=self._buffers[0].buf)
        batch[:] = images
        return batch

    def _start_workers(self) -> None:
        if self._workers:
            return
        try:
            transform = pickle.dumps(self.transform, protocol=5)
        except (pickle.PicklingError, AttributeError, TypeError) as error:
            raise DataError(
                f"{self.transform!r} cannot be pickled, so it cannot run in augmentation worker processes "
                f"({error}); use transforms built from the config (no lambdas), or data.num_workers=1"
            ) from error
        self._workers.extend(_Worker(transform) for _ in range(self.processes))

    def close(self) -> None:
        """Stop the workers and free the shared buffer."""
        with self._lock:
            _shut_down(self._workers, self._buffers)


def _attach(name: str) -> shared_memory.SharedMemory:
    """Attach to the parent's buffer without adopting it: Python < 3.13 would register it with this
    process's resource tracker, which unlinks it when the worker exits."""
    buffer = shared_memory.SharedMemory(name=name)
    resource_tracker.unregister(buffer._name, "shared_memory")  # type: ignore[attr-defined]
    return buffer


def _augment_in_place(
    transform: Transform,
    buffer: shared_memory.SharedMemory,
    shape: tuple[int, ...],
    dtype: str,
    part: slice,
    seeds: np.ndarray,
    magnitude: float | None,
) -> None:
    """Augment `part` of the batch in `buffer`; the array over the buffer ends with this call, so the
    buffer can be closed afterwards even when the transform raised."""
    batch = np.ndarray(shape, np.dtype(dtype), buffer=buffer.buf)
    augment_images(transform, batch[part], batch[part], seeds, magnitude)


def serve(tasks: BinaryIO, replies: BinaryIO) -> None:
    """The worker's loop: a pickled transform, then tasks until the parent closes `tasks`."""
    import cv2

    cv2.setNumThreads(1)  # parallelism comes from the processes
    transform = pickle.load(tasks)
    buffer: shared_memory.SharedMemory | None = None
    while True:
        try:
            name, shape, dtype, start, stop, seeds, magnitude = pickle.load(tasks)
        except EOFError:
            break
        try:
            if buffer is None or buffer.name != name:
                if buffer is not None:
                    buffer.close()
                buffer = _attach(name)
            _augment_in_place(transform, buffer, shape, dtype, slice(start, stop), seeds, magnitude)
            reply: tuple[str, str | None] = ("ok", None)
        except Exception:  # noqa: BLE001  (sent to the parent, which raises it as DataError)
            reply = ("error", traceback.format_exc())
        pickle.dump(reply, replies, protocol=5)
        replies.flush()
    if buffer is not None:
        buffer.close()


if __name__ == "__main__":
    ignore_interrupts_in_worker()  # a job-wide SIGTERM / Ctrl-C is the training process's to handle
    # The protocol owns the original stdout; anything printed (warnings, library banners) goes to stderr.
    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, protocol)
