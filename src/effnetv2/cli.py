"""What every entry point shares: environment defaults and turning user errors into one clear line."""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from effnetv2.errors import ConfigError, EffNetV2Error

log = logging.getLogger("effnetv2")


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


def exit_on_user_error(main: Callable[..., Any]) -> Callable[..., Any]:
    """Print an EffNetV2Error as one `error:` line and exit 1 instead of a traceback.

    Applied under `@hydra.main` in an entry point run as a script, it first checks the command-line
    overrides (`_check_command_line`): a typo such as `trainer.max_epoch=3` or `optimiser=sgd` gets one
    line with the nearest valid names instead of Hydra's multi-line "Could not override" message.
    """
    _check_command_line(main)

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except EffNetV2Error as error:
            log.error("%s", error)
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
