"""Which samples each loader role ("train", "val", "test") reads: the source's splits, scanned once,
as the loader indexes them, and the plan of which indices train and which validate (`splits.plan_roles`).

With the FFCV loader the indices point into the .beton files, which leave out the images
prepare_data could not read: the listing drops them too, so index i names the image the beton holds at i.
"""

from __future__ import annotations

import numpy as np

from effnetv2.data.betons import BetonStore
from effnetv2.data.samples import DataSource, SampleSet
from effnetv2.data.settings import Splits
from effnetv2.data.splits import plan_roles
from effnetv2.errors import DataError


class Roles:
    """A data set's splits as the loader sees them, and the role -> (split, indices) plan."""

    def __init__(self, source: DataSource, name: str) -> None:
        self.source = source
        self.name = name
        self.betons: BetonStore | None = None  # set when the FFCV loader reads the data
        self.plan: dict[str, tuple[str, np.ndarray]] = {}
        self._scanned: dict[str, SampleSet | None] = {}

    def scanned(self, split: str) -> SampleSet | None:
        """The source's samples of a split, scanned once."""
        if split not in self._scanned:
            self._scanned[split] = self.source.load(split)
        return self._scanned[split]

    def listed(self, split: str) -> SampleSet | None:
        """The samples a loader's indices point into (ffcv: less the files the beton left out)."""
        return self.betons.listed(split) if self.betons is not None else self.scanned(split)

    def has(self, split: str) -> bool:
        """Whether the source lists the split (a beton left from other data does not count)."""
        return self.scanned(split) is not None

    def labels(self, split: str) -> np.ndarray:
        if self.betons is not None:
            return self.betons.labels(split)
        samples = self.scanned(split)
        if samples is None:
            raise DataError(f"{self.name} has no {split} split")
        return samples.labels

    def has_labeled_test(self) -> bool:
        return self.has("test") and self.labels("test").min(initial=0) >= 0

    def plan_fit(self, splits: Splits) -> int:
        """Plan the train and val roles; returns the number of folds (data.fold_column's own when set)."""
        folds, groups = None, None
        if getattr(self.source, "fold_column", None) or getattr(self.source, "group_column", None):
            train = self.listed("train")
            folds, groups = train.folds, train.groups
        plan, num_folds = plan_roles(
            splits, lambda split: self.labels(split) if self.has(split) else None, folds, groups
        )
        self.plan.update(plan)
        return num_folds

    def plan_test(self) -> None:
        if not self.has("test"):
            hints = {"csv": "; set data.test_csv", "image_folder": f"; add {self.source.root}/test/<class>/*"}
            raise DataError(f"{self.name} has no test split" + hints.get(self.source.kind, ""))
        self.plan["test"] = ("test", np.arange(len(self.labels("test"))))

    def samples(self, role: str) -> SampleSet | None:
        """The samples of a planned role in loader order (None when the plan has no such role)."""
        if role not in self.plan:
            return None
        split, indices = self.plan[role]
        samples = self.listed(split)
        return samples.subset(indices) if samples is not None else None
