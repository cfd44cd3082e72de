"""The torch DataLoader path: cv2 decode, albumentations per image, uint8 batches.

Progressive learning changes the image size and RandAugment magnitude between epochs, but
DataLoader workers are separate processes that never see attribute changes made in the main
process (persistent workers keep their copy for the whole run). So the current values live in
shared memory (`LiveSettings`) and every sample reads them: a change made between epochs reaches
the next epoch's first batch, with persistent workers or without.

Samples and batches stay uint8 (4x less to copy, pin and send to the GPU than float32); they are
converted and normalised on the device (`effnetv2.data.device_batch`).
"""

from __future__ import annotations

import logging
import multiprocessing

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from effnetv2.data.decode import convert_channels, read_image
from effnetv2.data.sources import SampleSet
from effnetv2.data.transforms import EvalTransform, TrainTransform
from effnetv2.errors import DataError
from effnetv2.worker_signals import ignore_interrupts_in_worker

log = logging.getLogger(__name__)


class LiveSettings:
    """Train size, eval size and RandAugment magnitude in shared memory, read by every sample."""

    def __init__(self, image_size: int, eval_size: int, magnitude: float) -> None:
        self._image_size = multiprocessing.RawValue("i", image_size)
        self._eval_size = multiprocessing.RawValue("i", eval_size)
        self._magnitude = multiprocessing.RawValue("d", magnitude)

    @property
    def image_size(self) -> int:
        return self._image_size.value

    @image_size.setter
    def image_size(self, size: int) -> None:
        self._image_size.value = size

    @property
    def eval_size(self) -> int:
        return self._eval_size.value

    @eval_size.setter
    def eval_size(self, size: int) -> None:
        self._eval_size.value = size

    @property
    def magnitude(self) -> float:
        return self._magnitude.value

    @magnitude.setter
    def magnitude(self, magnitude: float) -> None:
        self._magnitude.value = magnitude


class ImageDataset(Dataset):
    """Samples of a SampleSet as (uint8 C x H x W tensor, label), transformed at the live settings.

    A sample that fails to decode raises DataError naming the file, or with on_bad_image="skip"
    becomes None, which the collate function drops (and the log counts).
    """

    def __init__(
        self,
        samples: SampleSet,
        transform: TrainTransform | EvalTransform,
        settings: LiveSettings,
        channels: int,
        on_bad_image: str = "error",
    ) -> None:
        self.samples = samples
        self.transform = transform
        self.settings = settings
        self.channels = channels
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> np.ndarray:
        """The untransformed image of sample `index` as uint8 H x W x channels."""
        if self.samples.images is not None:
            return convert_channels(self.samples.images[index], self.channels)
        return read_image(self.samples.paths[index], self.channels)

    def _follow_settings(self) -> None:
        if isinstance(self.transform, TrainTransform):
            self.transform.set_size(self.settings.image_size)
            self.transform.randaugment.magnitude = self.settings.magnitude
        else:
            self.transform.set_size(self.settings.eval_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        try:
            image = self.read(index)
        except DataError as error:
            if self.on_bad_image == "error":
                raise
            log.warning("skipped a sample at load time: %s", error)
            return None
        self._follow_settings()
        image = self.transform(image)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), int(
            self.samples.labels[index]
        )

    def reseed(self, seed: int) -> None:
        self.transform.reseed(seed)


class Uint8Collate:
    """Stack uint8 samples into a uint8 N x C x H x W batch, dropping samples that failed to decode."""

    def __call__(self, items: list[tuple[torch.Tensor, int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
        kept = [item for item in items if item is not None]
        if not kept:
            raise DataError(f"all {len(items)} images of a batch failed to decode (see the warnings above)")
        images = torch.stack([image for image, _ in kept])
        return images, torch.tensor([label for _, label in kept], dtype=torch.int64)


def single_threaded_opencv() -> None:
    """Call before forking worker processes (DataLoader, FFCV's writer).

    OpenCV's thread pool does not survive fork: a child that uses or resizes it waits forever for
    threads that exist only in the parent (seen here: cv2.setNumThreads(1) hanging in a worker
    after the parent had run cv2). With one thread OpenCV uses no pool, in parent and children.
    The workers are the parallelism anyway.
    """
    cv2.setNumThreads(1)


def worker_init(worker_id: int) -> None:
    """One torch thread per worker and a fresh random stream per worker: albumentations'
    generators would otherwise be forked copies repeating the same augmentations in every worker."""
    torch.set_num_threads(1)
    info = get_worker_info()
    info.dataset.reseed(info.seed % 2**32)
    ignore_interrupts_in_worker()


def make_loader(
    dataset: ImageDataset,
    batch_size: int,
    train: bool,
    num_workers: int,
    pin_memory: bool,
    persistent_workers: bool,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader of uint8 batches over `dataset`: shuffled (or drawn by `sampler`) without the last
    partial batch for training."""
    if num_workers > 0:
        single_threaded_opencv()
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train and len(dataset) >= batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory and torch.cuda.is_available(),
        persistent_workers=persistent_workers and num_workers > 0,
        worker_init_fn=worker_init if num_workers > 0 else None,
        collate_fn=Uint8Collate(),
    )


def eval_loader(
    samples: SampleSet,
    size: int | LiveSettings,
    crop_pct: float,
    channels: int,
    batch_size: int,
    num_workers: int,
    on_bad_image: str = "error",
    pin_memory: bool = True,
    persistent_workers: bool = False,
) -> DataLoader:
    """Samples in their order as evaluation prepares them (shorter side to size / crop_pct, centre
    crop; uint8 batches that `ImageNormalizer` finishes on the device): the datamodule's val and test
    loaders and the predictor's. `size` is fixed, or the datamodule's live settings, whose eval size
    a later pass may change (`set_eval_size`)."""
    settings = size if isinstance(size, LiveSettings) else LiveSettings(size, size, 0.0)
    transform = EvalTransform(settings.eval_size, crop_pct)
    dataset = ImageDataset(samples, transform, settings, channels, on_bad_image)
    return make_loader(dataset, batch_size, False, num_workers, pin_memory, persistent_workers)
