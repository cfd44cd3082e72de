"""What every data source shares: SampleSet (the samples of one split), the bad-input policy and
its report, and the DataSource interface.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from effnetv2.data.decode import check_image_file
from effnetv2.errors import ConfigError, DataError

log = logging.getLogger(__name__)

BAD_IMAGE_POLICIES = ("error", "skip")
UNLABELED = -1
LISTED_PROBLEMS = 10


@dataclass(frozen=True)
class SampleSet:
    """The samples of one split: in-memory uint8 images (N x H x W x C) or file paths, and labels.

    Labels are class indices, or UNLABELED (-1) for an unlabeled test set. A CSV source may add each
    sample's fold (data.fold_column) and group (data.group_column), which the split plan honours.
    """

    labels: np.ndarray
    images: np.ndarray | None = None
    paths: tuple[Path, ...] | None = None
    folds: np.ndarray | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.images is None) == (self.paths is None):
            raise ValueError("a SampleSet holds either images or paths")
        if len(self.labels) != len(self.images if self.images is not None else self.paths):
            raise ValueError("a SampleSet needs one label per sample")
        columns = [column for column in (self.folds, self.groups) if column is not None]
        if any(len(column) != len(self.labels) for column in columns):
            raise ValueError("a SampleSet needs one fold and group per sample")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def is_labeled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())

    def subset(self, indices: np.ndarray) -> SampleSet:
        indices = np.asarray(indices, dtype=np.int64)
        return SampleSet(
            labels=self.labels[indices],
            images=self.images[indices] if self.images is not None else None,
            paths=tuple(self.paths[i] for i in indices) if self.paths is not None else None,
            folds=self.folds[indices] if self.folds is not None else None,
            groups=self.groups[indices] if self.groups is not None else None,
        )

    def name(self, index: int) -> str:
        """What to call sample `index` in messages and prediction files: its path or its position."""
        return str(self.paths[index]) if self.paths is not None else f"#{index}"


def settle_bad_inputs(problems: list[tuple[str, str]], on_bad_image: str, what: str) -> None:
    """Raise DataError listing `problems` ((item, reason) pairs), or log them when skipping."""
    if not problems:
        return
    listing = "\n".join(f"  {item}: {reason}" for item, reason in problems[:LISTED_PROBLEMS])
    if len(problems) > LISTED_PROBLEMS:
        listing += f"\n  ... and {len(problems) - LISTED_PROBLEMS} more"
    if on_bad_image == "error":
        raise DataError(
            f"{len(problems)} bad {what}:\n{listing}\n"
            "Fix or remove them, or set data.on_bad_image=skip to skip them (they are counted in the log)."
        )
    log.warning("skipped %d bad %s:\n%s", len(problems), what, listing)


def check_policy(on_bad_image: str) -> str:
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ConfigError(f"data.on_bad_image={on_bad_image!r} is not one of {BAD_IMAGE_POLICIES}")
    return on_bad_image


class DataSource(ABC):
    """Lists samples per split ("train", "val", "test") and names the classes."""

    kind: str
    root: Path
    on_bad_image: str  # error | skip: what the loaders do with an image that fails to decode

    @property
    @abstractmethod
    def class_names(self) -> list[str]:
        """Class names; index i is label i. Cheap: no image files are opened."""

    @abstractmethod
    def load(self, split: str) -> SampleSet | None:
        """The samples of `split`, or None when the source has no such split."""

    def describe(self) -> dict[str, str]:
        """What identifies this data set (stored beside derived files such as .beton)."""
        return {"source": self.kind, "root": str(self.root.resolve())}


def checked_files(files: list[tuple[Path, int]], on_bad_image: str, what: str) -> np.ndarray:
    """Positions in `files` of the (path, label) pairs whose header check passes; report the others."""
    kept, problems = [], []
    for position, (path, _) in enumerate(files):
        reason = check_image_file(path)
        if reason is None:
            kept.append(position)
        else:
            problems.append((str(path), reason))
    settle_bad_inputs(problems, on_bad_image, what)
    return np.asarray(kept, dtype=np.int64)


def labeled_paths(files: list[tuple[Path, int]], kept: np.ndarray, **columns: np.ndarray) -> SampleSet:
    """The kept files as a SampleSet; `columns` (folds, groups) hold one value per file."""
    return SampleSet(
        labels=np.asarray([files[i][1] for i in kept], dtype=np.int64),
        paths=tuple(files[i][0] for i in kept),
        **{name: values[kept] for name, values in columns.items()},
    )
