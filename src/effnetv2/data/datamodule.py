"""ImageDataModule: source + split + transforms + loader, configured by conf/data/<name>.yaml.

Progressive learning calls `set_image_size`, `set_eval_size` and `set_randaug_magnitude` between
epochs; with either loader (`loader: torch | ffcv`) the next epoch's batches use the new values.

Lightning creates the first epoch's train iterator *before* `on_train_epoch_start`, so values for
epoch 0 must be set earlier (e.g. in a callback's `on_fit_start`) or passed to the constructor.

Validation data, in order of precedence: fold `fold` of the CSV's own folds (`fold_column`); fold
`fold` of a stratified K-fold when num_folds > 1; an explicit val split (image_folder's root/val); a
stratified `val_fraction` of train; otherwise the (labeled) test split. With a CSV `group_column`,
K-fold and the val_fraction split keep every group on one side (the val_fraction split is fold 0 of
round(1 / val_fraction) group folds). `subset` first draws a stratified subset of the training data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from effnetv2.data.balance import BalancedSampler, check_sampler
from effnetv2.data.betons import announce_beton, beton_lock, choose_loader, estimate_beton, source_fingerprint
from effnetv2.data.device_batch import ImageNormalizer
from effnetv2.data.randaugment import RandAugment
from effnetv2.data.sources import FASHION_MNIST_ROOT, SampleSet, build_source, check_policy
from effnetv2.data.splits import (
    check_groups_apart,
    column_fold_count,
    stratified_group_kfold,
    stratified_kfold,
    stratified_split,
    stratified_subset,
)
from effnetv2.data.torch_loader import ImageDataset, LiveSettings, make_loader
from effnetv2.data.transforms import (
    EvalTransform,
    TrainTransform,
    build_extra_transform,
    check_extra_transforms,
)
from effnetv2.errors import ConfigError, DataError

log = logging.getLogger(__name__)

LOADERS = ("auto", "torch", "ffcv")
FASHION_MNIST_MEAN = (0.2860,)  # the defaults describe the default source
FASHION_MNIST_STD = (0.3530,)


class ImageDataModule(L.LightningDataModule):
    """Image classification data with run-time image size and augmentation strength.

    Loaders yield (uint8 N x C x H x W images, int64 N labels); `on_after_batch_transfer` turns the
    images into float32 normalised by mean/std on the device (`normalize` does it for a batch by hand).
    """

    def __init__(
        self,
        source: str = "fashion_mnist",
        root: str = FASHION_MNIST_ROOT,
        name: str | None = None,
        in_chans: int = 1,
        # CSV sources (Kaggle layout)
        train_csv: str = "train.csv",
        image_dir: str = "train",
        id_column: str = "id",
        label_column: str = "label",
        extension: str = "",
        test_csv: str | None = None,
        test_image_dir: str = "test",
        fold_column: str | None = None,
        group_column: str | None = None,
        # loading
        loader: str = "torch",  # auto | torch | ffcv
        sampler: str = "random",
        batch_size: int = 128,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        # splits
        val_fraction: float = 0.1,
        num_folds: int = 1,
        fold: int = 0,
        subset: int | float | None = None,
        seed: int = 0,
        # augmentation and evaluation
        image_size: int = 32,
        eval_size: int = 32,
        crop_pct: float = 0.875,
        crop_scale: Sequence[float] = (0.08, 1.0),
        crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
        hflip: bool = True,
        randaug_num_ops: int = 2,
        randaug_magnitude: float = 10.0,
        randaug_ops: Sequence[str] | None = None,
        randaug_policy: str = "increasing",
        mean: Sequence[float] = FASHION_MNIST_MEAN,
        std: Sequence[float] = FASHION_MNIST_STD,
        on_bad_image: str = "error",
        extra_transforms: Sequence[Mapping[str, Any]] = (),
        # FFCV (.beton files)
        beton_dir: str = "data/betons",
        beton_max_resolution: int | None = None,
        beton_jpeg_quality: int = 90,
        beton_write_mode: str = "smart",
    ) -> None:
        super().__init__()
        if loader not in LOADERS:
            raise ConfigError(f"data.loader={loader!r} is not one of {LOADERS}")
        if in_chans not in (1, 3):
            raise ConfigError(f"data.in_chans={in_chans}: images are converted to 1 or 3 channels")
        if not (len(mean) == len(std) == in_chans):
            raise ConfigError(
                f"data.mean / data.std need {in_chans} values (data.in_chans), got {mean} / {std}"
            )
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction} must be in [0, 1)")
        if num_folds > 1 and not 0 <= fold < num_folds:
            raise ConfigError(f"data.fold={fold} is out of range for data.num_folds={num_folds}")
        if source != "csv" and (fold_column or group_column):
            raise ConfigError("data.fold_column and data.group_column name CSV columns: they need data=csv")
        self.on_bad_image = check_policy(on_bad_image)
        self.source = build_source(
            source,
            root,
            on_bad_image=on_bad_image,
            **(
                {
                    "train_csv": train_csv,
                    "image_dir": image_dir,
                    "id_column": id_column,
                    "label_column": label_column,
                    "extension": extension,
                    "test_csv": test_csv,
                    "test_image_dir": test_image_dir,
                    "fold_column": fold_column,
                    "group_column": group_column,
                }
                if source == "csv"
                else {}
            ),
        )
        self.name = name or source
        self._in_chans = in_chans
        if loader == "auto" and sampler == "balanced":
            self.loader, reason = "torch", "data.loader=auto and data.sampler=balanced needs the torch loader"
        else:
            self.loader, reason = choose_loader(loader)
        log.info("data loader: %s (%s)", self.loader, reason)
        if self.loader == "ffcv":
            import effnetv2.data.ffcv_loader  # noqa: F401  (fail now, with install advice, if ffcv is missing)
        self.sampler = check_sampler(sampler, self.loader)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.val_fraction = val_fraction
        self.num_folds = num_folds
        self.fold = fold
        self.subset = subset
        self.seed = seed
        self._image_size = image_size
        self._eval_size = eval_size
        self._randaug_magnitude = float(randaug_magnitude)
        self.crop_pct = crop_pct
        self.crop_scale = tuple(crop_scale)
        self.crop_ratio = tuple(crop_ratio)
        self.hflip = hflip
        self.randaug_num_ops = randaug_num_ops
        self.randaug_ops = tuple(randaug_ops) if randaug_ops is not None else None
        self.randaug_policy = randaug_policy
        RandAugment(
            randaug_num_ops, self._randaug_magnitude, self.randaug_ops, policy=randaug_policy
        )  # validates
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.normalizer = ImageNormalizer(self.mean, self.std)
        self.beton_dir = Path(beton_dir)
        self.beton_max_resolution = beton_max_resolution
        self.beton_jpeg_quality = beton_jpeg_quality
        self.beton_write_mode = beton_write_mode
        EvalTransform(eval_size, crop_pct)  # validates crop_pct now rather than at the first batch
        self.extra_transforms = [
            OmegaConf.to_container(entry, resolve=True) if isinstance(entry, DictConfig) else entry
            for entry in extra_transforms
        ]
        check_extra_transforms(self.extra_transforms, in_chans)
        self._splits: dict[str, SampleSet | None] = {}
        self._fingerprints: dict[str, str | None] = {}
        self._settings: LiveSettings | None = None
        self._randaugment: RandAugment | None = None
        self._datasets: dict[str, ImageDataset] = {}
        self._ffcv_loaders: dict[str, Any] = {}
        self._roles: dict[str, tuple[str, np.ndarray]] = {}  # role -> (split, indices into it)

    # What the model needs to know -------------------------------------------------------------

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_chans(self) -> int:
        return self._in_chans

    def save_class_map(self, path: str | Path) -> Path:
        """Write class names and indices as JSON (predictions map indices back to names with it)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        content = {
            "class_names": self.class_names,
            "class_to_index": {name: i for i, name in enumerate(self.class_names)},
            "in_chans": self.in_chans,
            "mean": self.mean,
            "std": self.std,
            "eval_size": self.eval_size,
            "crop_pct": self.crop_pct,
            **self.source.describe(),
        }
        path.write_text(json.dumps(content, indent=2))
        return path

    # Run-time settings ------------------------------------------------------------------------

    @property
    def image_size(self) -> int:
        return self._image_size

    @image_size.setter
    def image_size(self, size: int) -> None:
        self.set_image_size(size)

    @property
    def eval_size(self) -> int:
        return self._eval_size

    @eval_size.setter
    def eval_size(self, size: int) -> None:
        self.set_eval_size(size)

    @property
    def randaug_magnitude(self) -> float:
        return self._randaug_magnitude

    @randaug_magnitude.setter
    def randaug_magnitude(self, magnitude: float) -> None:
        self.set_randaug_magnitude(magnitude)

    def set_image_size(self, size: int) -> None:
        """Train crop size for the next train epoch."""
        if int(size) < 1:
            raise ConfigError(f"image size must be positive, got {size}")
        self._image_size = int(size)
        if self._settings is not None:
            self._settings.image_size = self._image_size
        if "train" in self._ffcv_loaders:
            self._ffcv_loaders["train"].set_image_size(self._image_size)

    def set_eval_size(self, size: int) -> None:
        """Evaluation size for the next validation / test pass."""
        if int(size) < 1:
            raise ConfigError(f"eval size must be positive, got {size}")
        self._eval_size = int(size)
        if self._settings is not None:
            self._settings.eval_size = self._eval_size
        for split in ("val", "test", "predict"):
            if split in self._ffcv_loaders:
                self._ffcv_loaders[split].set_image_size(self._eval_size)

    def set_randaug_magnitude(self, magnitude: float) -> None:
        """RandAugment magnitude (TF scale, 10 = standard) for the next train epoch."""
        if not magnitude >= 0:
            raise ConfigError(f"RandAugment magnitude must be >= 0, got {magnitude}")
        self._randaug_magnitude = float(magnitude)
        if self._settings is not None:
            self._settings.magnitude = self._randaug_magnitude
        if self._randaugment is not None:
            self._randaugment.magnitude = self._randaug_magnitude

    # Splits -----------------------------------------------------------------------------------

    def _split(self, split: str) -> SampleSet | None:
        """The source's samples of a split, scanned once."""
        if split not in self._splits:
            self._splits[split] = self.source.load(split)
        return self._splits[split]

    def _listed(self, split: str) -> SampleSet | None:
        """The samples a loader's indices point into: the source's listing, less (ffcv) the files
        prepare_data left out of the .beton, so index i names the image the beton holds at i."""
        samples = self._split(split)
        if self.loader != "ffcv" or samples is None or samples.paths is None:
            return samples
        from effnetv2.data.ffcv_loader import read_info

        info = read_info(self._checked_beton(split)) or {}
        skipped = set(info.get("skipped_files", []))
        kept = np.array([i for i, path in enumerate(samples.paths) if str(path) not in skipped], np.int64)
        if len(kept) != info.get("num_samples"):
            raise DataError(
                f"{self._beton(split)} holds {info.get('num_samples')} samples, the source lists "
                f"{len(kept)} of them: rewrite it with `python src/prepare_data.py data={self.name}`"
            )
        return samples.subset(kept) if skipped else samples

    def _has_split(self, split: str) -> bool:
        """Whether the source lists the split (a beton left from other data does not count)."""
        return self._split(split) is not None

    def _labels(self, split: str) -> np.ndarray:
        if self.loader == "ffcv":
            from effnetv2.data.ffcv_loader import beton_labels

            return beton_labels(self._checked_beton(split))
        samples = self._split(split)
        if samples is None:
            raise DataError(f"{self.name} has no {split} split")
        return samples.labels

    def _fold_and_group_columns(self, count: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The train samples' folds and groups (CSV data.fold_column / data.group_column), or None."""
        if not (getattr(self.source, "fold_column", None) or getattr(self.source, "group_column", None)):
            return None, None
        samples = self._listed("train")
        return samples.folds, samples.groups

    def _plan(self) -> dict[str, tuple[str, np.ndarray]]:
        """For train and val: which split's samples and which indices of it."""
        labels = self._labels("train")
        pool = np.arange(len(labels))
        if self.subset is not None:
            pool = stratified_subset(labels, self.subset, self.seed)
        folds, groups = self._fold_and_group_columns(len(labels))
        if folds is not None:
            self.num_folds = column_fold_count(folds, self.num_folds, self.fold)
            train, val = pool[folds[pool] != self.fold], pool[folds[pool] == self.fold]
            if groups is not None:
                check_groups_apart(groups, train, val)
            log.info("validation: fold %d of the %d in data.fold_column", self.fold, self.num_folds)
            return {"train": ("train", train), "val": ("train", val)}
        if self.num_folds > 1:
            if groups is not None:
                train, val = stratified_group_kfold(
                    labels[pool], groups[pool], self.num_folds, self.fold, self.seed
                )
            else:
                train, val = stratified_kfold(labels[pool], self.num_folds, self.fold, self.seed)
            log.info("validation: fold %d of %d", self.fold, self.num_folds)
            return {"train": ("train", pool[train]), "val": ("train", pool[val])}
        if self._has_split("val"):
            log.info("validation: the data set's val split")
            return {"train": ("train", pool), "val": ("val", np.arange(len(self._labels("val"))))}
        if self.val_fraction > 0:
            if groups is not None:
                num_folds = max(2, round(1 / self.val_fraction))
                train, val = stratified_group_kfold(labels[pool], groups[pool], num_folds, 0, self.seed)
            else:
                train, val = stratified_split(labels[pool], self.val_fraction, self.seed)
            log.info("validation: a stratified %.0f%% of train", 100 * len(val) / len(pool))
            return {"train": ("train", pool[train]), "val": ("train", pool[val])}
        plan = {"train": ("train", pool)}
        if self._has_split("test") and (test_labels := self._labels("test")).min(initial=0) >= 0:
            log.info("validation: the test split (data.val_fraction=0)")
            plan["val"] = ("test", np.arange(len(test_labels)))
        else:
            log.info("validation: none (data.val_fraction=0 and no labeled test split)")
        return plan

    def train_labels(self) -> np.ndarray:
        """Labels of the samples the train loader draws from (after subset and split): class weights."""
        if "train" not in self._roles:
            self.setup("fit")
        split, indices = self._roles["train"]
        return self._labels(split)[indices]

    def samples(self, role: str) -> SampleSet | None:
        """The samples a loader of `role` ("train", "val", "test") reads, as the source lists them
        (files or in-memory images, with labels), in loader order for val/test; None without such data.

        With the ffcv loader the indices point into the .beton; files prepare_data skipped are not listed.
        """
        if role not in self._roles:
            self.setup("fit" if role in ("train", "val") else "test")
        if role not in self._roles:
            return None
        split, indices = self._roles[role]
        samples = self._listed(split)
        return samples.subset(indices) if samples is not None else None

    # Lightning hooks --------------------------------------------------------------------------

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images as the loaders deliver them -> float32 model input, on their device."""
        return self.normalizer(images)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The batch is on the training device: convert and normalise there (uint8 travelled).

        Lightning's precision plugin converts inputs before the transfer, when they were still
        uint8; it converts the float images now (e.g. to float16 under precision=16-true)."""
        if isinstance(batch, torch.Tensor):  # e.g. the model summary's example input: images alone
            return self._model_input(batch)
        images, labels = batch
        return self._model_input(images), labels

    def _model_input(self, images: torch.Tensor) -> torch.Tensor:
        images = self.normalize(images)
        if self.trainer is not None:
            images = self.trainer.precision_plugin.convert_input(images)
        return images

    def prepare_data(self) -> None:
        """FFCV: write the .beton files that are missing or were written from other data/settings
        (Lightning calls this on local rank 0 only, the other ranks wait)."""
        if self.loader == "ffcv":
            self.write_betons(overwrite=False)

    def _ensure_live_state(self) -> None:
        """Shared settings and the FFCV RandAugment, created per process (they do not pickle)."""
        if self._settings is None:
            self._settings = LiveSettings(self._image_size, self._eval_size, self._randaug_magnitude)
        if self._randaugment is None:
            self._randaugment = RandAugment(
                self.randaug_num_ops, self._randaug_magnitude, self.randaug_ops, policy=self.randaug_policy
            )

    def setup(self, stage: str | None = None) -> None:
        self._ensure_live_state()
        if stage in (None, "fit", "validate") and "train" not in self._roles:
            self._roles.update(self._plan())
        if stage in (None, "test", "predict") and "test" not in self._roles:
            if not self._has_split("test"):
                raise DataError(f"{self.name} has no test split" + self._test_hint())
            self._roles["test"] = ("test", np.arange(len(self._labels("test"))))

    def has_labeled_test_split(self) -> bool:
        """Whether a final test can run: a Kaggle-style data set has no labelled test images."""
        return self._has_split("test") and self._labels("test").min(initial=0) >= 0

    def _test_hint(self) -> str:
        hints = {"csv": "; set data.test_csv", "image_folder": f"; add {self.source.root}/test/<class>/*"}
        return hints.get(self.source.kind, "")

    def train_dataloader(self) -> Any:
        return self._dataloader("train")

    def val_dataloader(self) -> Any:
        if "train" not in self._roles:
            self.setup("fit")
        if "val" not in self._roles:
            return []
        return self._dataloader("val")

    def test_dataloader(self) -> Any:
        return self._dataloader("test")

    def predict_dataloader(self) -> Any:
        return self._dataloader("test", role="predict")

    def _dataloader(self, split_role: str, role: str | None = None) -> Any:
        role = role or split_role
        if split_role not in self._roles:
            self.setup("fit" if split_role in ("train", "val") else "test")
        split, indices = self._roles[split_role]
        if role == "test" and self._labels(split).min(initial=0) < 0:
            raise DataError(
                f"the {split} split of {self.name} is unlabeled: use it for prediction, not testing"
            )
        if self.loader == "ffcv":
            return self._ffcv_dataloader(role, split, indices)
        samples = self._split(split).subset(indices)
        return self._torch_dataloader(samples, train=role == "train")

    # torch path -------------------------------------------------------------------------------

    def _train_transform(self) -> TrainTransform:
        return TrainTransform(
            self._image_size,
            crop_scale=self.crop_scale,
            crop_ratio=self.crop_ratio,
            hflip=self.hflip,
            randaug_num_ops=self.randaug_num_ops,
            randaug_magnitude=self._randaug_magnitude,
            randaug_ops=self.randaug_ops,
            randaug_policy=self.randaug_policy,
            extra=[build_extra_transform(entry) for entry in self.extra_transforms],
            seed=self.seed,
        )

    def _torch_dataloader(self, samples: SampleSet, train: bool) -> DataLoader:
        transform = self._train_transform() if train else EvalTransform(self._eval_size, self.crop_pct)
        dataset = ImageDataset(samples, transform, self._settings, self.in_chans, self.on_bad_image)
        balanced = train and self.sampler == "balanced"
        return make_loader(
            dataset,
            self.batch_size,
            train=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            sampler=BalancedSampler(samples.labels, *self._replicas(), seed=self.seed) if balanced else None,
        )

    def eval_dataloader(self, samples: SampleSet) -> DataLoader:
        """An evaluation loader (torch path) over any samples, e.g. `sources.list_images(folder)`."""
        self._ensure_live_state()
        return self._torch_dataloader(samples, train=False)

    # FFCV path --------------------------------------------------------------------------------

    def _beton(self, split: str) -> Path:
        return self.beton_dir / f"{self.name}_{split}.beton"

    def _beton_info(self, split: str) -> dict[str, Any]:
        """What a split's beton is written from and how: compared with the stored info before reuse."""
        return {
            **self.source.describe(),
            "class_names": self.class_names,
            "source_fingerprint": self._fingerprint(split),
            "max_resolution": self.beton_max_resolution,
            "jpeg_quality": self.beton_jpeg_quality,
            "write_mode": self.beton_write_mode,
        }

    def _fingerprint(self, split: str) -> str | None:
        """The split's source fingerprint, computed once per data module (it stats every file)."""
        if split not in self._fingerprints:
            samples = self._split(split)
            self._fingerprints[split] = source_fingerprint(samples) if samples is not None else None
        return self._fingerprints[split]

    def _beton_is_current(self, split: str) -> bool:
        from effnetv2.data.ffcv_loader import read_info

        info = read_info(self._beton(split))
        return info is not None and all(
            info.get(key) == value for key, value in self._beton_info(split).items()
        )

    def _checked_beton(self, split: str) -> Path:
        beton = self._beton(split)
        if not self._beton_is_current(split):
            raise DataError(
                f"{beton} is missing or was written from other data or settings. Write it with "
                f"`python src/prepare_data.py data={self.name}` (Lightning's prepare_data also does)."
            )
        return beton

    def write_betons(self, overwrite: bool = True) -> dict[str, Path]:
        """Write one .beton per split of the source (missing or stale ones unless `overwrite`).

        One process at a time (a file lock): Lightning calls prepare_data on rank 0 while the other
        ranks wait; a process that waited for the lock finds the betons current and reuses them.
        """
        from effnetv2.data.ffcv_loader import write_beton

        written = {}
        with beton_lock(self.beton_dir, self.name):
            for split in ("train", "val", "test"):
                beton = self._beton(split)
                samples = self._split(split)
                if samples is None or (not overwrite and self._beton_is_current(split)):
                    continue
                size, seconds = estimate_beton(
                    samples,
                    self.beton_max_resolution,
                    self.beton_write_mode,
                    self.beton_jpeg_quality,
                    self.num_workers,
                )
                log.warning(announce_beton(beton, len(samples), size, seconds))
                count = write_beton(
                    samples,
                    beton,
                    info=self._beton_info(split),
                    max_resolution=self.beton_max_resolution,
                    jpeg_quality=self.beton_jpeg_quality,
                    write_mode=self.beton_write_mode,
                    num_workers=self.num_workers,
                    on_bad_image=self.on_bad_image,
                )
                log.info("wrote %d of %d %s samples to %s", count, len(samples), split, beton)
                written[split] = beton
        return written

    def _distributed(self) -> bool:
        if self.trainer is not None:
            return self.trainer.world_size > 1
        return torch.distributed.is_available() and torch.distributed.is_initialized()

    def _replicas(self) -> tuple[int, int]:
        """(number of processes, this one's rank) sharing the train data."""
        if self.trainer is not None:
            return self.trainer.world_size, self.trainer.global_rank
        if self._distributed():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def _device(self) -> torch.device:
        """Where batches are used: the trainer's device (FFCV copies them there itself)."""
        strategy = getattr(self.trainer, "strategy", None)
        return strategy.root_device if strategy is not None else torch.device("cpu")

    def _channels_last(self) -> bool:
        """Whether the model being trained takes channels_last input (module.channels_last)."""
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        return bool(getattr(module, "hparams", {}).get("channels_last", False))

    def _ffcv_dataloader(self, role: str, split: str, indices: np.ndarray) -> Any:
        if role not in self._ffcv_loaders:
            from effnetv2.data.ffcv_loader import FFCVLoader

            train = role == "train"
            self._ffcv_loaders[role] = FFCVLoader(
                self._checked_beton(split),
                indices,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                train=train,
                image_size=self._image_size if train else self._eval_size,
                device=self._device(),
                channels_last=self._channels_last(),
                crop_scale=self.crop_scale,
                crop_ratio=self.crop_ratio,
                crop_pct=self.crop_pct,
                hflip=self.hflip,
                randaugment=self._randaugment if train else None,
                extra_transforms=[build_extra_transform(e) for e in self.extra_transforms] if train else (),
                distributed=self._distributed(),
                seed=self.seed,
            )
        return self._ffcv_loaders[role]
