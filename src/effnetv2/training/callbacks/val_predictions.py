"""Callback that writes the validation split's predictions after training (`val_predictions.csv`).

With K-fold cross-validation (data.num_folds=K, data.fold=k) these are the out-of-fold predictions
of fold k; `src/oof.py` joins all folds into a CV score and an OOF probabilities file. The best
checkpoint (val top-1) predicts, as `src/predict.py` would use it, at its evaluation size.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np

from effnetv2.data.sources import SampleSet
from effnetv2.inference.checkpoint import Preprocessing, TrainedClassifier, load_classifier
from effnetv2.inference.oof import Predictions, write_predictions
from effnetv2.inference.predictor import predict_probabilities

log = logging.getLogger(__name__)


def validation_samples(datamodule: L.LightningDataModule) -> tuple[list[str], SampleSet] | None:
    """Ids and samples of the validation role in the datamodule's split plan (None without validation)."""
    samples = datamodule.samples("val")
    return None if samples is None else (datamodule.sample_ids("val"), samples)


def current_classifier(pl_module: L.LightningModule, datamodule: L.LightningDataModule) -> TrainedClassifier:
    """The module's model as it is (when no best checkpoint exists, e.g. fast_dev_run)."""
    return TrainedClassifier(
        model=pl_module.model.eval(),
        class_names=list(datamodule.class_names),
        preprocessing=Preprocessing(
            in_chans=datamodule.in_chans,
            mean=tuple(datamodule.mean),
            std=tuple(datamodule.std),
            eval_size=datamodule.eval_size,
            crop_pct=datamodule.crop_pct,
        ),
        name="the trained model",
    )


class SaveValPredictions(L.Callback):
    """At the end of `fit`, predict the validation samples and write `path` (see `inference.oof`)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        validation = validation_samples(datamodule)
        if validation is None:
            log.warning("no validation split: %s not written", self.path)
            return
        ids, samples = validation
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        classifier = (
            load_classifier(best, pl_module.device) if best else current_classifier(pl_module, datamodule)
        )
        probabilities = predict_probabilities(
            [classifier],
            samples,
            batch_size=datamodule.batch_size,
            num_workers=datamodule.num_workers,
            device=pl_module.device,
            progress=False,
        )
        fold = datamodule.fold if datamodule.num_folds > 1 else 0
        predictions = Predictions(
            ids=ids,
            folds=np.full(len(ids), fold, dtype=np.int64),
            num_folds=np.full(len(ids), datamodule.num_folds, dtype=np.int64),
            targets=np.asarray(samples.labels, dtype=np.int64),
            probabilities=probabilities,
            class_names=classifier.class_names,
        )
        write_predictions(self.path, predictions)
        accuracy = float((probabilities.argmax(axis=1) == predictions.targets).mean())
        log.info(
            "validation predictions (%s, top-1 %.4f): %s",
            Path(best).name or "last weights",
            accuracy,
            self.path,
        )
