"""The FFCV path, reading: load a .beton (written by `ffcv_writer`) with progressive-learning setters.

Import this module only when `data.loader=ffcv`: it imports ffcv, an install extra, and fails with
install advice without it (`ffcv_writer` takes its FFCV names from here for that reason). Traps it handles:
- `import ffcv` and every `iter(Loader)` set torch's thread count; we restore it.
- ffcv#396: `Loader()` loops forever when a compiled (numba) operation follows a plain-Python
  one. `image_pipeline` puts every compiled operation before the first Python one.
- The pipeline ends the FFCV way: `ToTensor`, `ToDevice(non_blocking=True)`, `ToTorchImage`. Images
  stay uint8 in FFCV's pinned buffers up to the device and are normalised there (the datamodule's
  `on_after_batch_transfer`); FFCV reuses an image buffer a few batches later, so a batch is used (or
  normalised, which copies it) before the next ones are drawn. Labels are fresh tensors.
- An exception in FFCV's loader thread leaves the training loop waiting forever; our iterator
  polls the thread and raises DataError instead.
- The image size changes by setting the decoder's `output_size` between epochs (buffers are
  re-allocated per epoch, nothing is recompiled). RandAugment runs as a Python stage in worker
  processes (`augment_pool`), its magnitude sent with every batch.
"""

from __future__ import annotations

import atexit
import logging
import queue
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch

from effnetv2.data.augment_pool import AugmentPool
from effnetv2.data.randaugment import RandAugment
from effnetv2.data.transforms import Augmentation
from effnetv2.errors import DataError

INSTALL_HINT = (
    "data.loader=ffcv needs the ffcv package (an install extra): `make setup` installs it with its system "
    "libraries. By hand: `sudo apt-get install pkg-config libturbojpeg0-dev libopencv-dev`, "
    "`pip install -e .[ffcv]`, then `pip install opencv-python-headless --force-reinstall` so exactly one "
    "cv2 stays (the Makefile's way: ffcv with --no-deps). Or use data.loader=torch."
)

_threads = torch.get_num_threads()
try:
    from ffcv.fields import IntField, RGBImageField  # noqa: F401  (for ffcv_writer, under this check)
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.loader.epoch_iterator import IS_CUDA
    from ffcv.pipeline.allocation_query import AllocationQuery
    from ffcv.pipeline.operation import Operation
    from ffcv.pipeline.state import State
    from ffcv.reader import Reader
    from ffcv.transforms import RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage
    from ffcv.writer import DatasetWriter  # noqa: F401  (for ffcv_writer)
except ImportError as error:
    raise DataError(f"{INSTALL_HINT} (import failed: {error})") from error
finally:
    torch.set_num_threads(_threads)  # `import ffcv` sets it to 1 for the whole process

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5
_JOIN_SECONDS = 10.0
# Epoch threads still running when Python exits abort the process ("terminate called without an
# active exception", exit code 134), e.g. after a loop that stopped early; close them first.
_open_epochs: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_epochs() -> None:
    for epoch in list(_open_epochs):
        epoch.close()
        epoch.join(_JOIN_SECONDS)


# Reading ---------------------------------------------------------------------------------------


def beton_labels(beton: Path) -> np.ndarray:
    """The label of every sample in a beton, in order (read from its metadata, no decoding)."""
    reader = Reader(str(beton))
    return np.asarray(reader.metadata[f"f{reader.field_names.index('label')}"], dtype=np.int64)


# Pipeline operations ---------------------------------------------------------------------------


class RandAugmentOp(Operation):
    """Plain-Python stage: RandAugment (or the extra transforms' Compose) on each uint8 H x W x 3 image
    of the batch; the image keeps its size.

    Runs in FFCV's loader thread, handing the batch to `processes` worker processes (`AugmentPool`):
    threads would serialise on the GIL (docs/data.md, "Loader scaling"). One process: in the thread.
    """

    def __init__(
        self, transform: RandAugment | A.Compose, processes: int, seed: int | Sequence[int] = 0
    ) -> None:
        super().__init__()
        self.pool = AugmentPool(transform, processes, seed)

    def generate_code(self) -> Any:
        return self.pool

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery]:
        return replace(previous_state, jit_mode=False), AllocationQuery(
            previous_state.shape, previous_state.dtype
        )


def image_pipeline(
    decoder: Operation,
    compiled: Sequence[Operation],
    python: Sequence[Operation],
    device: torch.device,
    channels_last: bool,
) -> list[Operation]:
    """Order the image operations so no compiled operation follows a Python one (ffcv#396), ending
    the FFCV way with uint8 N x 3 x H x W images on `device`.

    FFCV groups a pipeline into alternating compiled / Python stages, and `Loader()` loops forever
    when a compiled operation comes after a Python one (e.g. its NormalizeImage after ToTensor, or
    after a Python RandAugment). So: compiled operations, then Python ones, then ToTensor, ToDevice
    (from FFCV's pinned buffer, asynchronous) and ToTorchImage (a view when channels_last).
    Normalisation happens on the device, in torch.
    """
    return [
        decoder,
        *compiled,
        *python,
        ToTensor(),
        ToDevice(device, non_blocking=True),
        ToTorchImage(channels_last=channels_last),
    ]


# Loading ---------------------------------------------------------------------------------------


def _next_batch(epoch: Any) -> Any:
    """The next batch of FFCV's epoch thread, or None at the end; DataError if the thread died."""
    while True:
        try:
            item = epoch.output_queue.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            if not epoch.is_alive():
                raise DataError(
                    "FFCV's loader thread stopped with an error (its traceback is printed above); "
                    "a custom pipeline operation probably failed"
                ) from None
            continue
        if item is None:
            return None
        slot, batch = item
        if IS_CUDA:
            epoch.current_stream.wait_stream(epoch.cuda_streams[slot])
        return batch


class FFCVLoader:
    """An FFCV Loader over `indices` of a beton, yielding (uint8 N x 3 x H x W on `device`, int64 N)
    batches (grayscale data keeps its first channel when normalised).

    Train: random-resized crop to the current size, flip, RandAugment at the current magnitude (the
    shared `randaugment`), then the extra transforms (keeping the size), as `augmentation` says.
    Eval: centre crop of crop_pct of the shorter side, resized to the current size.
    """

    def __init__(
        self,
        beton: Path,
        indices: np.ndarray,
        batch_size: int,
        num_workers: int,
        train: bool,
        image_size: int,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        augmentation: Augmentation | None = None,
        randaugment: RandAugment | None = None,
        distributed: bool = False,
        seed: int = 0,
    ) -> None:
        augmentation = augmentation or Augmentation()
        size = (image_size, image_size)
        compiled: list[Operation] = []
        python: list[Operation] = []
        if train:
            self.decoder = RandomResizedCropRGBImageDecoder(
                size, scale=augmentation.crop_scale, ratio=augmentation.crop_ratio
            )
            if augmentation.hflip:
                compiled.append(RandomHorizontalFlip())
            # Augmentation seeds differ per rank (the same seed orders the samples on every rank).
            rank = torch.distributed.get_rank() if distributed and torch.distributed.is_initialized() else 0
            if randaugment is not None and randaugment.num_ops > 0:
                python.append(RandAugmentOp(randaugment, num_workers, (seed, rank, 0)))
            if augmentation.extra_transforms:  # after RandAugment as on the torch path
                python.append(RandAugmentOp(A.Compose(augmentation.extra()), num_workers, (seed, rank, 1)))
        else:
            self.decoder = CenterCropRGBImageDecoder(size, ratio=augmentation.crop_pct)
        pipelines = {
            "image": image_pipeline(self.decoder, compiled, python, torch.device(device), channels_last),
            "label": [IntDecoder(), ToTensor(), Squeeze(1)],
        }
        threads = torch.get_num_threads()
        try:
            self.loader = Loader(
                str(beton),
                batch_size=batch_size,
                num_workers=max(1, num_workers),
                order=OrderOption.RANDOM if train else OrderOption.SEQUENTIAL,
                os_cache=True,
                distributed=distributed,
                seed=seed,
                indices=np.asarray(indices, dtype=np.int64),
                pipelines=pipelines,
                drop_last=train,
            )
        finally:
            torch.set_num_threads(threads)

    @property
    def image_size(self) -> int:
        return int(self.decoder.output_size[0])

    def set_image_size(self, size: int) -> None:
        """Takes effect at the next epoch: FFCV allocates its buffers when an epoch starts."""
        self.decoder.output_size = (size, size)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        threads = torch.get_num_threads()
        # ToDevice's buffers are allocated here and filled in place by the epoch thread: allocated
        # under Lightning's inference mode (validation), they would be inference tensors it cannot write.
        with torch.inference_mode(False):
            epoch = iter(self.loader)
        _open_epochs.add(epoch)
        try:
            while (batch := _next_batch(epoch)) is not None:
                # The epoch thread sets the thread count when it starts; it has, once a batch exists.
                torch.set_num_threads(threads)
                yield batch[0], batch[1].clone()  # labels live in a buffer FFCV reuses
        finally:
            epoch.close()
            _open_epochs.discard(epoch)
            torch.set_num_threads(threads)
