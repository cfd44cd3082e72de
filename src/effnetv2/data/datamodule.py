"""ImageDataModule: source + split + transforms + loader, configured by conf/data/<name>.yaml.

Progressive learning calls `set_image_size`, `set_eval_size` and `set_randaug_magnitude` between
epochs; with either loader (`loader: torch | ffcv`) the next epoch's batches use the new values.

Lightning creates the first epoch's train iterator *before* `on_train_epoch_start`, so values for
epoch 0 must be set earlier (e.g. in a callback's `on_fit_start`) or passed to the constructor.

Which samples train and which validate: `effnetv2.data.roles` and `splits.plan_roles`.

Settings come in groups (`effnetv2.data.settings`: loading, splits, augmentation, betons) and the
source is an object (`data.source`: a config node built by Hydra, or a kind name); conf/data keeps
every key flat, as users type them, and the constructor sorts them into their groups.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from effnetv2.data.balance import BalancedSampler, check_sampler
from effnetv2.data.betons import BetonStore, choose_loader
from effnetv2.data.device_batch import ImageNormalizer
from effnetv2.data.live import LiveValues
from effnetv2.data.placement import placement
from effnetv2.data.roles import Roles
from effnetv2.data.samples import DataSource, SampleSet
from effnetv2.data.settings import Betons, Loading, Splits, sort_settings
from effnetv2.data.sources import build_source
from effnetv2.data.torch_loader import ImageDataset, eval_loader, make_loader
from effnetv2.data.transforms import Augmentation, TrainTransform
from effnetv2.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FASHION_MNIST_MEAN = (0.2860,)  # the defaults describe the default source
FASHION_MNIST_STD = (0.3530,)


class ImageDataModule(L.LightningDataModule):
    """Image classification data with run-time image size and augmentation strength.

    Loaders yield (uint8 N x C x H x W images, int64 N labels); `on_after_batch_transfer` turns the
    images into float32 normalised by mean/std on the device (`normalize` does it for a batch by hand).
    """

    def __init__(
        self,
        source: DataSource | Mapping[str, Any] | str = "fashion_mnist",
        name: str | None = None,
        in_chans: int = 1,
        mean: Sequence[float] = FASHION_MNIST_MEAN,
        std: Sequence[float] = FASHION_MNIST_STD,
        image_size: int = 32,
        eval_size: int = 32,
        randaug_magnitude: float = 10.0,
        loading: Loading | None = None,
        splits: Splits | None = None,
        augmentation: Augmentation | None = None,
        betons: Betons | None = None,
        **settings: Any,
    ) -> None:
        """`settings`: conf/data's flat keys. One that names a field of a group (data.batch_size is
        `loading.batch_size`) sets it there; the others are the source's arguments (data.root,
        data.on_bad_image, the CSV keys such as data.train_csv)."""
        super().__init__()
        groups = {"loading": loading, "splits": splits, "augmentation": augmentation, "betons": betons}
        groups, source_arguments = sort_settings(groups, settings)
        self.loading: Loading = groups["loading"]
        self.splits: Splits = groups["splits"]
        self.augmentation: Augmentation = groups["augmentation"]
        if in_chans not in (1, 3):
            raise ConfigError(f"data.in_chans={in_chans}: images are converted to 1 or 3 channels")
        if not (len(mean) == len(std) == in_chans):
            raise ConfigError(
                f"data.mean / data.std need {in_chans} values (data.in_chans), got {mean} / {std}"
            )
        self.source = build_source(source, **source_arguments)
        self.on_bad_image = getattr(self.source, "on_bad_image", "error")
        self.name = name or self.source.kind
        self._in_chans = in_chans
        self.loader, reason = choose_loader(self.loading.loader, self.loading.sampler)
        log.info("data loader: %s (%s)", self.loader, reason)
        self.sampler = check_sampler(self.loading.sampler, self.loader)
        self.augmentation.check(in_chans, float(randaug_magnitude))
        self.live = LiveValues(image_size, eval_size, randaug_magnitude, self.augmentation)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.normalizer = ImageNormalizer(self.mean, self.std)
        self.roles = Roles(self.source, self.name)
        self.betons = BetonStore(groups["betons"], self.name, self.source, self.roles.scanned)
        if self.loader == "ffcv":
            self.roles.betons = self.betons

    # Settings read elsewhere (the module's learning-rate scaling, validation predictions) ----------

    @property
    def batch_size(self) -> int:
        return self.loading.batch_size

    @property
    def num_workers(self) -> int:
        return self.loading.num_workers

    @property
    def fold(self) -> int:
        return self.splits.fold

    @property
    def num_folds(self) -> int:
        return self.splits.num_folds

    @property
    def crop_pct(self) -> float:
        return self.augmentation.crop_pct

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
        return self.live.image_size

    @image_size.setter
    def image_size(self, size: int) -> None:
        self.set_image_size(size)

    @property
    def eval_size(self) -> int:
        return self.live.eval_size

    @eval_size.setter
    def eval_size(self, size: int) -> None:
        self.set_eval_size(size)

    @property
    def randaug_magnitude(self) -> float:
        return self.live.magnitude

    @randaug_magnitude.setter
    def randaug_magnitude(self, magnitude: float) -> None:
        self.set_randaug_magnitude(magnitude)

    def set_image_size(self, size: int) -> None:
        """Train crop size for the next train epoch."""
        self.live.set_image_size(size)

    def set_eval_size(self, size: int) -> None:
        """Evaluation size for the next validation / test pass."""
        self.live.set_eval_size(size)

    def set_randaug_magnitude(self, magnitude: float) -> None:
        """RandAugment magnitude (TF scale, 10 = standard) for the next train epoch."""
        self.live.set_magnitude(magnitude)

    # Splits -----------------------------------------------------------------------------------

    def train_labels(self) -> np.ndarray:
        """Labels of the samples the train loader draws from (after subset and split): class weights."""
        if "train" not in self.roles.plan:
            self.setup("fit")
        split, indices = self.roles.plan["train"]
        return self.roles.labels(split)[indices]

    def samples(self, role: str) -> SampleSet | None:
        """The samples a loader of `role` ("train", "val", "test") reads, as the source lists them
        (files or in-memory images, with labels), in loader order for val/test; None without such data.

        With the ffcv loader the indices point into the .beton; files prepare_data skipped are not listed.
        """
        if role not in self.roles.plan:
            self.setup("fit" if role in ("train", "val") else "test")
        return self.roles.samples(role)

    def sample_ids(self, role: str) -> list[str] | None:
        """Ids of `samples(role)`, unique over the data set so that folds join: image paths relative to
        the data root (absolute when the images live elsewhere), or `<split>#<index>` in memory."""
        samples = self.samples(role)
        if samples is None:
            return None
        if samples.paths is None:
            split, indices = self.roles.plan[role]
            return [f"{split}#{index}" for index in indices]
        root = Path(self.source.root)
        return [(p.relative_to(root) if p.is_relative_to(root) else p).as_posix() for p in samples.paths]

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

    def setup(self, stage: str | None = None) -> None:
        self.live.ensure()
        if stage in (None, "fit", "validate") and "train" not in self.roles.plan:
            self.splits = replace(self.splits, num_folds=self.roles.plan_fit(self.splits))
        if stage in (None, "test", "predict") and "test" not in self.roles.plan:
            self.roles.plan_test()

    def has_labeled_test_split(self) -> bool:
        """Whether a final test can run: a Kaggle-style data set has no labelled test images."""
        return self.roles.has_labeled_test()

    def train_dataloader(self) -> Any:
        return self._dataloader("train")

    def val_dataloader(self) -> Any:
        if "train" not in self.roles.plan:
            self.setup("fit")
        if "val" not in self.roles.plan:
            return []
        return self._dataloader("val")

    def test_dataloader(self) -> Any:
        return self._dataloader("test")

    def predict_dataloader(self) -> Any:
        return self._dataloader("test", role="predict")

    def _dataloader(self, split_role: str, role: str | None = None) -> Any:
        role = role or split_role
        if split_role not in self.roles.plan:
            self.setup("fit" if split_role in ("train", "val") else "test")
        split, indices = self.roles.plan[split_role]
        if role == "test" and self.roles.labels(split).min(initial=0) < 0:
            raise DataError(
                f"the {split} split of {self.name} is unlabeled: use it for prediction, not testing"
            )
        if self.loader == "ffcv":
            return self._ffcv_dataloader(role, split, indices)
        samples = self.roles.scanned(split).subset(indices)
        return self._torch_dataloader(samples, train=role == "train")

    # torch path -------------------------------------------------------------------------------

    def _train_transform(self) -> TrainTransform:
        return TrainTransform(
            self.image_size, self.augmentation, self.randaug_magnitude, seed=self.splits.seed
        )

    def _torch_dataloader(self, samples: SampleSet, train: bool) -> DataLoader:
        loading, where = self.loading, placement(self.trainer)
        options = loading.worker_options()
        if not train:
            size, batch_size, on_bad_image = self.live.shared, loading.batch_size, self.on_bad_image
            return eval_loader(
                samples, size, self.crop_pct, self.in_chans, batch_size, on_bad_image=on_bad_image, **options
            )
        transform = self._train_transform()
        dataset = ImageDataset(samples, transform, self.live.shared, self.in_chans, self.on_bad_image)
        sampler = None
        if self.sampler == "balanced":
            sampler = BalancedSampler(samples.labels, where.world_size, where.rank, seed=self.splits.seed)
        return make_loader(dataset, loading.batch_size, train=True, sampler=sampler, **options)

    def eval_dataloader(self, samples: SampleSet) -> DataLoader:
        """An evaluation loader (torch path) over any samples, e.g. `sources.list_images(folder)`."""
        self.live.ensure()
        return self._torch_dataloader(samples, train=False)

    # FFCV path --------------------------------------------------------------------------------

    def write_betons(self, overwrite: bool = True) -> dict[str, Path]:
        """Write one .beton per split of the source (missing or stale ones unless `overwrite`)."""
        return self.betons.write(overwrite, self.loading.num_workers, self.on_bad_image)

    def _ffcv_dataloader(self, role: str, split: str, indices: np.ndarray) -> Any:
        if role not in self.live.ffcv_loaders:
            from effnetv2.data.ffcv_loader import FFCVLoader

            train, where = role == "train", placement(self.trainer)
            self.live.ffcv_loaders[role] = FFCVLoader(
                self.betons.checked(split),
                indices,
                batch_size=self.loading.batch_size,
                num_workers=self.loading.num_workers,
                train=train,
                image_size=self.image_size if train else self.eval_size,
                device=where.device,
                channels_last=where.channels_last,
                augmentation=self.augmentation,
                randaugment=self.live.randaugment if train else None,
                distributed=where.distributed,
                seed=self.splits.seed,
            )
        return self.live.ffcv_loaders[role]
