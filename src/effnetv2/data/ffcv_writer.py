"""The FFCV path, writing: a .beton (RGB images and int labels) from any source's samples.

`BetonStore.write` calls it; the info written beside a beton (what it holds, from which data, with
which settings) is how `BetonStore` decides whether it can be reused.
"""

from __future__ import annotations

import json
import os
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effnetv2.data.betons import info_path
from effnetv2.data.decode import convert_channels, read_image
from effnetv2.data.ffcv_loader import DatasetWriter, IntField, RGBImageField  # ffcv, with install advice
from effnetv2.data.samples import SampleSet, settle_bad_inputs
from effnetv2.data.settings import Betons
from effnetv2.data.torch_loader import single_threaded_opencv
from effnetv2.errors import DataError


class _RGBSamples:
    """Indexable (RGB uint8 image, label) view of a SampleSet, the input DatasetWriter expects."""

    def __init__(self, samples: SampleSet) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if self.samples.images is not None:
            image = convert_channels(self.samples.images[index], 3)
        else:
            image = read_image(self.samples.paths[index], 3)
        return image, int(self.samples.labels[index])


def _decode_problem(path: Path) -> str | None:
    try:
        read_image(path, 3)
    except DataError as error:
        return str(error)
    return None


def readable_samples(samples: SampleSet, on_bad_image: str, num_workers: int) -> SampleSet:
    """Decode every file once and keep the readable ones (a beton cannot skip a sample later).

    FFCV's writer waits forever when a worker fails, so nothing unreadable may reach it.
    """
    if samples.paths is None:
        return samples
    from tqdm import tqdm

    with Pool(max(1, num_workers)) as pool:
        problems = list(
            tqdm(
                pool.imap(_decode_problem, samples.paths, chunksize=64),
                total=len(samples),
                desc="checking images",
            )
        )
    bad = [(str(path), problem) for path, problem in zip(samples.paths, problems) if problem is not None]
    settle_bad_inputs(bad, on_bad_image, "images that do not decode")
    return samples.subset(
        np.array([i for i, problem in enumerate(problems) if problem is None], dtype=np.int64)
    )


def write_beton(
    samples: SampleSet,
    beton: Path,
    info: dict[str, Any],
    settings: Betons,
    num_workers: int,
    on_bad_image: str,
) -> int:
    """Write `samples` to `beton` (images as RGB, labels as ints) and `info` beside it; returns the count.

    Written to a temporary name and renamed, so an interrupted run leaves no half-written file.
    """
    single_threaded_opencv()  # the image check and DatasetWriter fork processes that run cv2
    readable = readable_samples(samples, on_bad_image, num_workers)
    beton.parent.mkdir(parents=True, exist_ok=True)
    partial = beton.with_name(beton.name + ".partial")
    fields = {
        "image": RGBImageField(
            write_mode=settings.beton_write_mode,
            max_resolution=settings.beton_max_resolution,
            jpeg_quality=settings.beton_jpeg_quality,
        ),
        "label": IntField(),
    }
    threads = torch.get_num_threads()
    try:
        DatasetWriter(str(partial), fields, num_workers=max(1, num_workers)).from_indexed_dataset(
            _RGBSamples(readable)
        )
    finally:
        torch.set_num_threads(threads)
    os.replace(partial, beton)
    kept = set(readable.paths or ())
    skipped_files = [str(path) for path in samples.paths or () if path not in kept]
    info = {**info, "num_samples": len(readable), "skipped": len(samples) - len(readable)}
    info["skipped_files"] = skipped_files  # the datamodule drops them from the listing: indices align
    info_path(beton).write_text(json.dumps(info, indent=2))
    return len(readable)
