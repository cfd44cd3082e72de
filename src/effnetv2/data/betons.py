"""Bookkeeping of .beton files, without importing FFCV: which loader runs, whether a beton still
matches its source, what writing one will cost, and that only one process writes it. `BetonStore`
holds a data set's betons; `ffcv_writer` writes them, `ffcv_loader` reads them (both import FFCV).

A beton is reused while its source is unchanged: the fingerprint covers every file's path, size
and modification time (or the pixels of in-memory data) plus the labels; the write settings are
stored beside it too. Writing is announced first with an estimate from a sample of the images.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from effnetv2.data.decode import convert_channels, read_image
from effnetv2.data.samples import DataSource, SampleSet
from effnetv2.data.settings import Betons
from effnetv2.errors import DataError

try:
    import fcntl
except ImportError:  # Windows, where FFCV does not run: nothing to lock
    fcntl = None

log = logging.getLogger(__name__)

OPT_OUT = "data.loader=torch reads the images directly instead"
_SAMPLE = 24
_HUGE_BYTES = 20e9
_HUGE_SECONDS = 3600.0


def choose_loader(requested: str, sampler: str = "random") -> tuple[str, str]:
    """(loader, why) for data.loader: `auto` is FFCV where it imports (and the sampler is not the
    balanced one, which needs torch), torch otherwise. `ffcv` fails now, with install advice, without FFCV."""
    if requested == "auto" and sampler == "balanced":
        return "torch", "data.loader=auto and data.sampler=balanced needs the torch loader"
    if requested == "ffcv":
        import effnetv2.data.ffcv_loader  # noqa: F401  (imports ffcv)
    if requested != "auto":
        return requested, f"data.loader={requested}"
    try:
        import effnetv2.data.ffcv_loader  # noqa: F401  (imports ffcv)
    except DataError as error:
        reason = str(error).rpartition("(import failed: ")[2].rstrip(")") or "not installed"
        return "torch", f"data.loader=auto and FFCV cannot be imported ({reason})"
    return "ffcv", f"data.loader=auto and FFCV is installed; {OPT_OUT}"


def source_fingerprint(samples: SampleSet) -> str:
    """A digest of what a beton is written from: each file's path, size and mtime (in-memory data:
    the pixels), and the labels. Any added, removed, replaced or relabelled image changes it."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(samples.labels, dtype=np.int64).tobytes())
    if samples.images is not None:
        digest.update(np.ascontiguousarray(samples.images).tobytes())
        return digest.hexdigest()
    for path in samples.paths:
        stat = path.stat()
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def estimate_beton(
    samples: SampleSet, max_resolution: int | None, write_mode: str, jpeg_quality: int, num_workers: int
) -> tuple[float, float]:
    """(bytes, seconds) a beton of `samples` is expected to take, from up to 24 evenly spaced
    images: each is decoded, capped at max_resolution and stored raw or as JPEG (as FFCV's writer
    does); the writer's processes share the time. An image that does not decode is passed over
    here: the writer's check names it (or skips it with data.on_bad_image=skip)."""
    picks = np.linspace(0, len(samples) - 1, num=min(_SAMPLE, len(samples))).astype(int)
    sizes, start = [], time.perf_counter()
    for index in picks:
        try:
            image = (
                convert_channels(samples.images[index], 3)
                if samples.images is not None
                else read_image(samples.paths[index], 3)
            )
        except DataError:
            continue
        longest = max(image.shape[:2])
        if max_resolution is not None and longest > max_resolution:
            scale = max_resolution / longest
            image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
        if write_mode == "raw":
            sizes.append(image.nbytes)
        else:
            sizes.append(len(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1]))
    per_image = (time.perf_counter() - start) / len(picks)
    # the writer decodes each image twice: once to check it, once to write it
    per_sample = float(np.mean(sizes)) if sizes else 0.0
    return per_sample * len(samples), 2 * per_image * len(samples) / max(1, num_workers)


def announce_beton(beton: Path, count: int, size_bytes: float, seconds: float) -> str:
    """The line logged before a beton is written (expected size and time, and how to opt out)."""
    line = (
        f"writing {beton} for the FFCV loader: {count} images, about {size_bytes / 1e9:.2g} GB and "
        f"{_duration(seconds)} (estimated from {min(_SAMPLE, count)} images); written once and reused "
        f"while the source is unchanged; {OPT_OUT}"
    )
    if size_bytes > _HUGE_BYTES or seconds > _HUGE_SECONDS:
        line += (
            ". This is a large write (an ImageNet-sized beton takes hours and 100+ GB): stop now and "
            "rerun with data.loader=torch to skip it, or set data.beton_dir to a disk with room"
        )
    return line


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@contextlib.contextmanager
def beton_lock(beton_dir: Path, name: str) -> Iterator[None]:
    """Held while a data set's betons are checked and written: a second process (another node's
    rank 0 on a shared disk, or a second run) waits, then finds them written and reuses them."""
    beton_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(beton_dir / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def info_path(beton: Path) -> Path:
    """Where a beton's description (what it was written from, with which settings) is stored."""
    return beton.with_name(beton.name + ".json")


def read_info(beton: Path) -> dict[str, Any] | None:
    path = info_path(beton)
    return json.loads(path.read_text()) if path.is_file() and beton.is_file() else None


class BetonStore:
    """A data set's .beton files (one per split, `<beton_dir>/<name>_<split>.beton`): whether each
    still matches its source and settings, its labels and listing, and writing them."""

    def __init__(
        self, settings: Betons, name: str, source: DataSource, samples: Callable[[str], SampleSet | None]
    ) -> None:
        self.settings = settings
        self.name = name
        self.source = source
        self._samples = samples  # the source's samples of a split (the datamodule scans each once)
        self._fingerprints: dict[str, str | None] = {}

    def path(self, split: str) -> Path:
        return Path(self.settings.beton_dir) / f"{self.name}_{split}.beton"

    def _info(self, split: str) -> dict[str, Any]:
        """What a split's beton is written from and how: compared with the stored info before reuse."""
        return {
            **self.source.describe(),
            "class_names": self.source.class_names,
            "source_fingerprint": self._fingerprint(split),
            "max_resolution": self.settings.beton_max_resolution,
            "jpeg_quality": self.settings.beton_jpeg_quality,
            "write_mode": self.settings.beton_write_mode,
        }

    def _fingerprint(self, split: str) -> str | None:
        """The split's source fingerprint, computed once (it stats every file)."""
        if split not in self._fingerprints:
            samples = self._samples(split)
            self._fingerprints[split] = source_fingerprint(samples) if samples is not None else None
        return self._fingerprints[split]

    def is_current(self, split: str) -> bool:
        info = read_info(self.path(split))
        return info is not None and all(info.get(key) == value for key, value in self._info(split).items())

    def checked(self, split: str) -> Path:
        beton = self.path(split)
        if not self.is_current(split):
            raise DataError(
                f"{beton} is missing or was written from other data or settings. Write it with "
                f"`python src/prepare_data.py data={self.name}` (Lightning's prepare_data also does)."
            )
        return beton

    def labels(self, split: str) -> np.ndarray:
        from effnetv2.data.ffcv_loader import beton_labels

        return beton_labels(self.checked(split))

    def listed(self, split: str) -> SampleSet | None:
        """The source's samples of `split` less the files the beton left out (unreadable ones), so
        index i names the image the beton holds at i."""
        samples = self._samples(split)
        if samples is None or samples.paths is None:
            return samples
        info = read_info(self.checked(split)) or {}
        skipped = set(info.get("skipped_files", []))
        kept = np.array([i for i, path in enumerate(samples.paths) if str(path) not in skipped], np.int64)
        if len(kept) != info.get("num_samples"):
            raise DataError(
                f"{self.path(split)} holds {info.get('num_samples')} samples, the source lists "
                f"{len(kept)} of them: rewrite it with `python src/prepare_data.py data={self.name}`"
            )
        return samples.subset(kept) if skipped else samples

    def write(self, overwrite: bool, num_workers: int, on_bad_image: str) -> dict[str, Path]:
        """Write one .beton per split of the source (missing or stale ones unless `overwrite`).

        One process at a time (a file lock): Lightning calls prepare_data on rank 0 while the other
        ranks wait; a process that waited for the lock finds the betons current and reuses them.
        """
        from effnetv2.data.ffcv_writer import write_beton

        written = {}
        settings = self.settings
        with beton_lock(Path(settings.beton_dir), self.name):
            for split in ("train", "val", "test"):
                beton = self.path(split)
                samples = self._samples(split)
                if samples is None or (not overwrite and self.is_current(split)):
                    continue
                size, seconds = estimate_beton(
                    samples,
                    settings.beton_max_resolution,
                    settings.beton_write_mode,
                    settings.beton_jpeg_quality,
                    num_workers,
                )
                log.warning(announce_beton(beton, len(samples), size, seconds))
                count = write_beton(
                    samples,
                    beton,
                    self._info(split),
                    settings,
                    num_workers=num_workers,
                    on_bad_image=on_bad_image,
                )
                log.info("wrote %d of %d %s samples to %s", count, len(samples), split, beton)
                written[split] = beton
        return written
