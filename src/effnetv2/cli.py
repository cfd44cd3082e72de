"""What every entry point shares: environment defaults and turning user errors into one clear line."""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import os
import re
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from effnetv2.errors import ConfigError, EffNetV2Error
from effnetv2.multirun import JobFailure

log = logging.getLogger("effnetv2")

# Example values of the required keys (`???` in conf/) for the error that names a missing one.
REQUIRED_VALUE_EXAMPLES = {
    "data.root": "/path/to/images",
    "ckpt_path": "outputs/train/runs/<time>/checkpoints/last.ckpt",
    "checkpoint": "outputs/train/runs/<time>/checkpoints/last.ckpt",
    "checkpoints": "[outputs/train/runs/<time>/checkpoints/last.ckpt]",
    "run_dir": "outputs/train/multiruns/<time>",
}


def set_environment_defaults() -> None:
    """Keep third-party start-up quiet and offline: albumentations checks PyPI at import otherwise."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")


# Hydra flags after which the command line is not a plain list of overrides to compose.
FLAGS_WITHOUT_OVERRIDE_CHECK = frozenset(
    ["--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc", "--multirun", "-m"]
    + ["--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"]
)


def _close_matches(word: str, candidates: list[str], prefix: str = "") -> str:
    matches = difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(prefix + m for m in matches)}?)" if matches else ""


def check_overrides(config_dir: Path, config_name: str, overrides: list[str]) -> None:
    """Compose the config with `overrides` and turn Hydra's multi-line composition errors into one
    ConfigError that names the key or option, suggests the nearest valid ones and says how to fix it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    def composed(with_overrides: list[str]) -> Any:
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
                return compose(config_name=config_name, overrides=with_overrides)
        finally:
            GlobalHydra.instance().clear()

    try:
        composed(overrides)
    except MissingConfigException as err:
        group, _, option = (err.missing_cfg_file or "").rpartition("/")
        options = list(err.options or [])
        if not group or not options:
            raise ConfigError(" ".join(str(err).split())) from None
        raise ConfigError(
            f"{group}={option} is not an option of config group {group}{_close_matches(option, options)}; "
            f"choose one of {', '.join(options)} (files in conf/{group}/)"
        ) from None
    except OverrideParseException as err:
        raise ConfigError(f"cannot parse the command line: {' '.join(str(err).split())}") from None
    except ConfigCompositionException as err:
        unknown = re.match(r"Could not override '([^']+)'", str(err))
        if unknown is None:
            raise ConfigError(" ".join(str(err).split())) from None
        key = unknown.group(1)
        parent, _, leaf = key.rpartition(".")
        rest = [o for o in overrides if o.split("=", 1)[0].lstrip("~+") != key]
        candidates: list[str] = []
        with contextlib.suppress(Exception):  # suggestions only: the error below stands without them
            node = composed(rest)
            node = OmegaConf.select(node, parent) if parent else node
            candidates = [str(k) for k in node] if isinstance(node, DictConfig) else []
        suggestion = _close_matches(leaf, candidates, f"{parent}." if parent else "")
        raise ConfigError(
            f"unknown config key {key}{suggestion}; list the keys with --cfg job, "
            f"or add a new key with +{key}=..."
        ) from None


def _check_command_line(main: Callable[..., Any]) -> None:
    """Check the overrides of `src/<name>.py` (config conf/<name>.yaml) before Hydra composes them.

    Runs once, in the script's own process (not in DDP worker ranks, which re-run the same command),
    and not for Hydra flags such as --help, --cfg's siblings --info/-m, or another --config-name.
    """
    script = Path(sys.argv[0]).resolve()
    config_dir = script.parent.parent / "conf"
    arguments = sys.argv[1:]
    if (
        main.__module__ != "__main__"
        or os.environ.get("LOCAL_RANK", "0") != "0"
        or not (config_dir / f"{script.stem}.yaml").is_file()
        or any(a.split("=", 1)[0] in FLAGS_WITHOUT_OVERRIDE_CHECK for a in arguments)
    ):
        return
    # Overrides hold "=" (or start with "~"); flag values such as `--cfg job` do not.
    overrides = [
        a for a in arguments if not a.startswith(("-", "hydra.")) and ("=" in a or a.startswith("~"))
    ]
    try:
        check_overrides(config_dir, script.stem, overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def _missing_keys(value: Any, key: str = "") -> list[str]:
    """The dotted keys whose value is `???` in a config turned into plain containers, unresolved (OmegaConf's
    own missing_keys resolves interpolations, and fails on one that points to a missing value)."""
    if isinstance(value, dict):
        return [
            m
            for name, item in value.items()
            for m in _missing_keys(item, f"{key}.{name}" if key else str(name))
        ]
    if isinstance(value, list):
        return [m for i, item in enumerate(value) for m in _missing_keys(item, f"{key}[{i}]")]
    return [key] if value == "???" else []


def _required_but_null(config_name: str, overrides: list[str]) -> list[str]:
    """Keys that `overrides` set to null while the config requires them (`???` without that override)."""
    nulls = [o for o in overrides if o.endswith("=null") and not o.startswith("~")]
    if not nulls:
        return []
    from hydra import compose

    rest = [o for o in overrides if o not in nulls]
    required = _missing_keys(OmegaConf.to_container(compose(config_name, rest), resolve=False))
    return [key for key in (o.split("=", 1)[0].lstrip("+") for o in nulls) if key in required]


def check_required_values(cfg: DictConfig) -> None:
    """Raise a ConfigError naming the required values (`???` in conf/, or set to null) this run lacks and
    the command that sets them; OmegaConf would fail at their first use, with a traceback."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    overrides = [str(o) for o in hydra_cfg.overrides.task] if hydra_cfg else []
    missing = _missing_keys(OmegaConf.to_container(cfg, resolve=False))
    if hydra_cfg:
        missing += _required_but_null(hydra_cfg.job.config_name, overrides)
    if not missing:
        return
    # A key of a config group: the message names the option that requires it, e.g. data=image_folder.
    choices = dict(hydra_cfg.runtime.choices) if hydra_cfg else {}
    options = sorted({f"{g}={choices[g]}" for g in (key.split(".")[0] for key in missing) if choices.get(g)})
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("~+") not in missing]
    examples = [f"{key}={REQUIRED_VALUE_EXAMPLES.get(key, '<value>')}" for key in missing]
    command = shlex.join(["python", sys.argv[0], *kept, *examples])
    required = f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required"
    raise ConfigError(f"{required}{' for ' + ', '.join(options) if options else ''}: {command}")


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def exit_on_user_error(main: Callable[..., Any]) -> Callable[..., Any]:
    """Print an EffNetV2Error as one `error:` line and exit 1 instead of a traceback.

    Applied under `@hydra.main` in an entry point run as a script, it first checks the command-line
    overrides (`_check_command_line`): a typo such as `trainer.max_epoch=3` or `optimiser=sgd` gets one
    line with the nearest valid names instead of Hydra's multi-line "Could not override" message. Then,
    in the job, that every required value is set (`check_required_values`).

    In a multirun (-m) a user error ends only its job: the job logs it and returns a `JobFailure`, the
    sweep goes on, and `multirun.ReportFailedJobs` reports the failed jobs at the end.
    """
    _check_command_line(main)

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            if args and isinstance(args[0], DictConfig):  # the config Hydra composed
                check_required_values(args[0])
            return main(*args, **kwargs)
        except (EffNetV2Error, InstantiationException) as caught:
            # Hydra's instantiate wraps what a constructor raises (e.g. the data module's checks)
            error = caught.__cause__ if isinstance(caught, InstantiationException) else caught
            if not isinstance(error, EffNetV2Error):
                raise
            log.error("%s", error)
            # A signal (an error with its own exit code) stops the whole sweep, as it asks.
            if _in_multirun() and not hasattr(error, "exit_code"):
                return JobFailure(str(error))
            print(f"error: {error}", file=sys.stderr)
            sys.exit(getattr(error, "exit_code", 1))  # e.g. 128 + signal for a run stopped by SIGTERM
        except SystemExit as stop:
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            if not isinstance(stop, SIGTERMException):
                raise
            # Lightning ends its loops on SIGTERM (outside training steps) with SystemExit(): status 0,
            # which a scheduler would take for success.
            message = "stopped by SIGTERM; run the same command again (resume=auto continues training)"
            log.error("%s", message)
            print(f"error: {message}", file=sys.stderr)
            sys.exit(128 + signal.SIGTERM)

    return wrapper
