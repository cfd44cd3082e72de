"""Bookkeeping of .beton files, without importing FFCV: which loader runs, whether a beton still
matches its source, what writing one will cost, and that only one process writes it.

A beton is reused while its source is unchanged: the fingerprint covers every file's path, size
and modification time (or the pixels of in-memory data) plus the labels; the write settings are
stored beside it too. Writing is announced first with an estimate from a sample of the images.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from effnetv2.data.decode import convert_channels, read_image
from effnetv2.data.sources import SampleSet
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


def choose_loader(requested: str) -> tuple[str, str]:
    """(loader, why) for data.loader: `auto` is FFCV where it imports, torch otherwise."""
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
