"""Evaluate a training checkpoint on its val/test data at one or several image sizes.

A checkpoint of `ClassificationModule` is self-describing: its hyperparameters hold the model config,
the classes and the data config it was trained with, and it records the eval size in force. So a
checkpoint path is all `src/eval.py` needs; every part can still be overridden.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from effnetv2.checkpoint import read_training_checkpoint
from effnetv2.errors import CheckpointError, ConfigError
from effnetv2.training.module import ClassificationModule
from effnetv2.training.precision import resolve_precision

log = logging.getLogger(__name__)

SPLITS = ("val", "test")


def module_from_checkpoint(checkpoint: dict[str, Any]) -> ClassificationModule:
    """Rebuild the LightningModule from the checkpoint's hyperparameters and load its weights
    (with EMA these are the averaged weights). Pretrained-weight files are not needed again."""
    hparams = dict(checkpoint["hyper_parameters"])
    hparams["model"] = {**hparams["model"], "pretrained": None}
    hparams["compile"] = False
    module = ClassificationModule(**hparams)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"the checkpoint's weights do not fit its own model config: {error}") from error
    return module.eval()


def datamodule_for(checkpoint: dict[str, Any], data: DictConfig | dict | None, **overrides: Any) -> Any:
    """The data module to evaluate on: `data` when given (another data set), else the one the checkpoint
    was trained with; `overrides` (e.g. batch_size, num_workers) replace single values."""
    config = data if data is not None else checkpoint["hyper_parameters"].get("data")
    if config is None:
        raise ConfigError("the checkpoint does not record its data config: choose the data with data=<name>")
    config = OmegaConf.merge(OmegaConf.create(config), {k: v for k, v in overrides.items() if v is not None})
    datamodule = instantiate(config)
    expected = checkpoint["hyper_parameters"]["num_classes"]
    if datamodule.num_classes != expected:
        raise ConfigError(
            f"the data has {datamodule.num_classes} classes but the checkpoint's model predicts {expected}; "
            "evaluate on the data it was trained for"
        )
    return datamodule


@dataclass(frozen=True)
class EvalResult:
    split: str
    size: int
    top1: float
    top5: float
    loss: float
    images: int


class _LoaderAsTest(L.LightningDataModule):
    """One loader of `datamodule` as test data, its uint8 batches normalised on the device as in
    training (the datamodule's `on_after_batch_transfer`)."""

    def __init__(self, datamodule: Any, loader: Any) -> None:
        super().__init__()
        self.datamodule = datamodule
        self.loader = loader

    def test_dataloader(self) -> Any:
        return self.loader

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        return self.trainer.precision_plugin.convert_input(self.datamodule.normalize(images)), labels


def evaluate(
    module: ClassificationModule,
    datamodule: Any,
    sizes: list[int],
    splits: list[str],
    trainer: L.Trainer,
) -> list[EvalResult]:
    """Top-1, top-5 and loss of `module` for every (size, split), as `Trainer.test` computes them
    during training, so the numbers match the run's own test metrics."""
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ConfigError(f"eval.splits has {unknown}; choose from {list(SPLITS)}")
    results = []
    for size in sizes:
        datamodule.set_eval_size(int(size))
        for split in splits:
            loader = datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()
            if not loader:
                raise ConfigError(
                    f"the data has no {split} split (data.val_fraction=0?); use eval.splits=[test]"
                )
            metrics = trainer.test(module, datamodule=_LoaderAsTest(datamodule, loader), verbose=False)[0]
            images = int(module.test_confusion_matrix.sum())
            results.append(
                EvalResult(
                    split,
                    int(size),
                    metrics["test/acc"],
                    metrics["test/acc_top5"],
                    metrics["test/loss"],
                    images,
                )
            )
    return results


def format_results(results: list[EvalResult]) -> str:
    """A plain-text table, one row per (split, size)."""
    header = f"{'split':<6} {'size':>5} {'top-1':>8} {'top-5':>8} {'loss':>8} {'images':>7}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.split:<6} {r.size:>5} {r.top1:>8.4f} {r.top5:>8.4f} {r.loss:>8.4f} {r.images:>7}")
    return "\n".join(lines)


def results_as_dicts(results: list[EvalResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


def run_eval(cfg: DictConfig) -> list[EvalResult]:
    """What `src/eval.py` runs: load, rebuild, evaluate every (size, split), print and save the table."""
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    checkpoint = read_training_checkpoint(cfg.ckpt_path)
    module = module_from_checkpoint(checkpoint)
    options = cfg.eval
    datamodule = datamodule_for(
        checkpoint, cfg.get("data"), batch_size=options.batch_size, num_workers=options.num_workers
    )
    sizes = list(options.sizes) if options.sizes else [checkpoint.get("eval_size", datamodule.eval_size)]
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        precision=resolve_precision(cfg.trainer.get("precision", "32-true")),
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        limit_test_batches=options.limit_batches,
    )
    results = evaluate(module, datamodule, sizes, list(options.splits), trainer)
    table = format_results(results)
    print(f"{cfg.ckpt_path}\n{table}")
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "eval.json").write_text(json.dumps(results_as_dicts(results), indent=2))
    log.info("Results written to %s", output_dir / "eval.json")
    return results
