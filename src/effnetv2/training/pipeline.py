"""Train-and-test from a composed Hydra config: what `src/train.py` runs, callable from tests."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from effnetv2.checkpoint import AtomicCheckpointIO, missing_checkpoint
from effnetv2.models.summary import format_summary, model_summary
from effnetv2.target_aliases import current_target
from effnetv2.training.callbacks.wandb_run import KeepWandbRunId
from effnetv2.training.distributed import collective_timeout_error, end_other_ranks, is_collective_timeout
from effnetv2.training.loggers import (
    finish_wandb,
    prepare_logger_configs,
    resume_wandb_run,
    wandb_run_config,
)
from effnetv2.training.module import ClassificationModule
from effnetv2.training.precision import resolve_precision

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group that has a `_target_` (callbacks, loggers); a `_target_`
    of an earlier layout names the class where it lives now (`effnetv2.target_aliases`)."""
    if not group:
        return []
    return [
        instantiate(entry, _target_=current_target(entry._target_))
        for entry in group.values()
        if isinstance(entry, DictConfig) and "_target_" in entry
    ]


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """`ckpt_path` wins; `resume=auto` picks checkpoints/last.ckpt of this run folder when present."""
    if cfg.get("ckpt_path"):
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise missing_checkpoint(path)
        return str(path)
    if cfg.get("resume") == "auto":
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        if last.is_file():
            log.info("resume=auto: resuming from %s", last)
            return str(last)
        log.info("resume=auto: no %s yet, starting fresh", last)
    return None


def build_module(cfg: DictConfig, datamodule: L.LightningDataModule) -> ClassificationModule:
    return ClassificationModule(
        model=cfg.model,
        optimizer=cfg.optimizer,
        lr_scheduler=cfg.lr_scheduler,
        num_classes=datamodule.num_classes,
        in_chans=datamodule.in_chans,
        class_names=datamodule.class_names,
        data=cfg.data,  # stored in checkpoints: eval and predict rebuild the same data from it
        **cfg.module,
    )


def log_run_config(trainer: L.Trainer, cfg: DictConfig) -> None:
    """Every logger gets the whole resolved config (the module's own hyperparameters are a part of it);
    W&B gets it with flat keys and the chosen group options, see `wandb_run_config`."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    for logger in trainer.loggers:
        logger.log_hyperparams(
            wandb_run_config(resolved, choices) if isinstance(logger, WandbLogger) else resolved
        )


def build_trainer(cfg: DictConfig, output_dir: Path, ckpt_path: str | None) -> L.Trainer:
    """The Trainer of `cfg.trainer` with the run's callbacks and loggers; a resumed training logs on
    into its W&B run."""
    callbacks = [*instantiate_group(cfg.get("callbacks")), KeepWandbRunId(output_dir)]
    logger_cfg = prepare_logger_configs(cfg.get("logger"))
    resume_wandb_run(logger_cfg, ckpt_path)
    loggers = instantiate_group(logger_cfg)
    # AtomicCheckpointIO: a kill while saving never truncates last.ckpt; checkpoints load weights_only.
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        precision=resolve_precision(cfg.trainer.get("precision", "32-true")),
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
    )
    log_run_config(trainer, cfg)
    return trainer


def run_final_test(
    trainer: L.Trainer, module: ClassificationModule, datamodule: L.LightningDataModule, output_dir: Path
) -> dict[str, float]:
    """Test metrics of the best checkpoint (of the weights in memory without one); rank 0 also writes
    the test confusion matrix."""
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:
        log.info("Testing the best checkpoint: %s", best)
    test_results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
    if trainer.is_global_zero:
        torch.save(module.test_confusion_matrix, output_dir / "confusion_matrix.pt")
    return {k: float(v) for k, v in test_results[0].items()} if test_results else {}


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; returns the final metrics and writes them to the run folder."""
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    # Lightning's model summary measures FLOPs and shapes on this input (without it, "FLOPs 0")
    size = datamodule.image_size
    module.example_input_array = torch.zeros(1, datamodule.in_chans, size, size)
    if rank_zero_only.rank == 0:
        log.info(format_summary(model_summary(module.model, size)))
        datamodule.save_class_map(output_dir / "class_map.json")
    else:  # DDP: rank 0 alone writes the run folder and the info log; other ranks report warnings only
        logging.getLogger("effnetv2").setLevel(logging.WARNING)

    ckpt_path = resolve_ckpt_path(cfg) if cfg.get("train", True) else None
    trainer = build_trainer(cfg, output_dir, ckpt_path)

    try:
        if cfg.get("train", True):
            try:
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            except RuntimeError as error:
                if trainer.world_size > 1 and is_collective_timeout(error):
                    end_other_ranks(trainer)
                    raise collective_timeout_error(trainer, error) from error
                raise
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        if cfg.get("test", True) and not datamodule.has_labeled_test_split():
            log.info(
                "Final test skipped: %s has no labelled test split (val/acc is the run's score; "
                "predict unlabelled images with src/predict.py)",
                datamodule.name,
            )
        elif cfg.get("test", True):
            metrics.update(run_final_test(trainer, module, datamodule, output_dir))
    finally:
        finish_wandb()

    if trainer.is_global_zero:
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        summary = ", ".join(
            f"{k}={metrics[k]:.4f}" for k in ("val/acc", "test/acc", "test/acc_top5") if k in metrics
        )
        log.info("Run folder: %s", output_dir)
        log.info("Final metrics: %s", summary)
    return metrics
