"""The data module's settings in groups: how batches are loaded, how validation is split off, how
images are augmented (`transforms.Augmentation`) and how .beton files are written.

conf/data keeps every key flat (data.batch_size, data.crop_scale, data.root, ...), as users type
them; `sort_settings` puts each key into the group with a field of its name, and what no group
takes goes to the source (data.root, data.on_bad_image, the CSV keys).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from effnetv2.data.transforms import Augmentation
from effnetv2.errors import ConfigError

LOADERS = ("auto", "torch", "ffcv")


@dataclass(frozen=True)
class Loading:
    """Which loader and how it batches (data.loader: auto is FFCV where installed, else torch)."""

    loader: str = "torch"
    sampler: str = "random"  # random | balanced: classes drawn equally often (torch loader)
    batch_size: int = 128
    num_workers: int = 2
    pin_memory: bool = True
    persistent_workers: bool = True

    def __post_init__(self) -> None:
        if self.loader not in LOADERS:
            raise ConfigError(f"data.loader={self.loader!r} is not one of {LOADERS}")

    def worker_options(self) -> dict[str, Any]:
        """The torch loader's worker options (`torch_loader.make_loader` / `eval_loader` keywords)."""
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
        }


@dataclass(frozen=True)
class Splits:
    """How validation is split off the training data (stratified, seeded by `seed`)."""

    val_fraction: float = 0.1
    num_folds: int = 1
    fold: int = 0
    subset: int | float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={self.val_fraction} must be in [0, 1)")
        if self.num_folds > 1 and not 0 <= self.fold < self.num_folds:
            raise ConfigError(f"data.fold={self.fold} is out of range for data.num_folds={self.num_folds}")


@dataclass(frozen=True)
class Betons:
    """Where the FFCV loader's .beton files go and how their images are stored."""

    beton_dir: str = "data/betons"
    beton_max_resolution: int | None = None  # longest side stored (None: native)
    beton_jpeg_quality: int = 90
    beton_write_mode: str = "smart"  # raw | jpg | smart | proportion (FFCV's RGBImageField)


GROUPS: dict[str, type] = {
    "loading": Loading,
    "splits": Splits,
    "augmentation": Augmentation,
    "betons": Betons,
}


def sort_settings(groups: dict[str, Any], settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(every group: the one given or the defaults, with the flat settings that name its fields set;
    the settings no group takes)."""
    remaining = dict(settings)
    sorted_groups = {}
    for name, group_class in GROUPS.items():
        names = {field.name for field in fields(group_class)}
        own = {key: remaining.pop(key) for key in list(remaining) if key in names}
        group = groups.get(name)
        sorted_groups[name] = replace(group, **own) if group is not None else group_class(**own)
    return sorted_groups, remaining
