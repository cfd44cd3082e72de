"""Logger set-up: W&B works with no account (offline), online is one override away, and a resumed
training logs on into the W&B run it began (its id is kept in the run folder and the checkpoints)."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from effnetv2.checkpoint import read_checkpoint
from effnetv2.errors import ConfigError

log = logging.getLogger(__name__)

WANDB_MODES = ("auto", "online", "offline", "disabled")
# The W&B run a run folder logs to: `<run folder>/wandb_run_id`, and the same key in its checkpoints.
WANDB_RUN_ID = "wandb_run_id"


def wandb_credentials_present() -> bool:
    """True when W&B could authenticate: an API key in the environment or in ~/.netrc (`wandb login`)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(Path.home() / ".netrc").authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(requested: str) -> str:
    """Pick the W&B mode to run in.

    `auto` follows WANDB_MODE when set, else online with credentials and offline without. `online`
    without credentials would stop the run at a login prompt, so it falls back to offline with a warning.
    """
    if requested not in WANDB_MODES:
        raise ConfigError(
            f"logger.wandb.mode={requested!r} is unknown; choose one of {', '.join(WANDB_MODES)}"
        )
    if requested == "auto":
        env_mode = os.environ.get("WANDB_MODE")
        if env_mode in ("online", "offline", "disabled"):
            requested = env_mode
        else:
            requested = "online" if wandb_credentials_present() else "offline"
    if requested == "online" and not wandb_credentials_present():
        log.warning(
            "W&B online mode needs credentials (WANDB_API_KEY or `wandb login`); logging offline instead. "
            "Sync later with `wandb sync <run folder>/wandb/offline-run-*`."
        )
        requested = "offline"
    return requested


def prepare_logger_configs(logger_cfg: DictConfig | None) -> DictConfig | None:
    """Resolve W&B's `mode: auto` into a mode wandb.init accepts, and drop `log_model` offline
    (Lightning raises when both are set)."""
    if not logger_cfg or "wandb" not in logger_cfg:
        return logger_cfg
    logger_cfg = OmegaConf.create(OmegaConf.to_container(logger_cfg, resolve=True))
    with open_dict(logger_cfg):
        wandb_cfg = logger_cfg.wandb
        mode = resolve_wandb_mode(str(wandb_cfg.get("mode", "auto")))
        wandb_cfg.mode = mode
        wandb_cfg.offline = mode == "offline"
        if mode != "online":
            wandb_cfg.log_model = False
        Path(wandb_cfg.save_dir).mkdir(parents=True, exist_ok=True)
    return logger_cfg


def wandb_run_id_of_checkpoint(ckpt_path: str | None) -> str | None:
    """The W&B run id of the training that wrote `ckpt_path`, so resuming from it continues that W&B run.

    `<run folder>/wandb_run_id` beside `<run folder>/checkpoints/` is read first (no checkpoint load);
    the id stored in the checkpoint serves checkpoints moved out of their run folder. None: neither has
    one (a checkpoint written before run ids were kept, or without W&B).
    """
    if ckpt_path is None:
        return None
    path = Path(ckpt_path)
    beside = path.parent.parent / WANDB_RUN_ID
    if path.parent.name == "checkpoints" and beside.is_file():
        return beside.read_text().strip() or None
    run_id = read_checkpoint(path).get(WANDB_RUN_ID)
    return str(run_id) if run_id else None


def resume_wandb_run(logger_cfg: DictConfig | None, ckpt_path: str | None) -> None:
    """Point the W&B logger (`logger.wandb.id`) at the W&B run of the checkpoint being resumed, so a
    resumed training logs on into the run it began instead of starting a second one. An id set in the
    config wins; without one to resume, wandb.init makes a new run (in a W&B sweep, the agent's)."""
    if not logger_cfg or "wandb" not in logger_cfg or logger_cfg.wandb.get("id"):
        return
    run_id = wandb_run_id_of_checkpoint(ckpt_path)
    if run_id:
        with open_dict(logger_cfg):
            logger_cfg.wandb.id = run_id


def wandb_logger(trainer: L.Trainer) -> WandbLogger | None:
    """The trainer's W&B logger on rank 0 (the only rank with a W&B run), unless W&B is `disabled`."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and not logger.experiment.disabled:
            return logger
    return None


def finish_wandb() -> None:
    """Close the W&B run so the next Hydra multirun job starts its own (a new WandbLogger would reuse it)."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> `{"optimizer.lr": 0.002, ...}`, the key form of Hydra overrides."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def wandb_run_config(resolved: dict[str, Any], choices: dict[str, Any]) -> dict[str, Any]:
    """The run config as W&B stores it: flat override keys (`optimizer.lr`) plus the chosen option of
    each config group (`schedule: progressive`).

    W&B sweeps name their parameters the same way (`optimizer.lr`, `schedule`) and read them back from
    the run config, so a nested `optimizer: {...}` would overwrite the sweep's `optimizer: adamw`;
    flat keys leave every sweep parameter intact, and the W&B UI shows them exactly like nested ones.
    """
    groups = {
        g: option for g, option in choices.items() if option is not None and "/" not in g and g != "hydra"
    }
    return {**flatten_config(resolved), **groups}
