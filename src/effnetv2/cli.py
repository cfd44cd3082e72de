"""What every entry point shares: environment defaults and turning user errors into one clear line."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from effnetv2.errors import EffNetV2Error

log = logging.getLogger("effnetv2")


def set_environment_defaults() -> None:
    """Keep third-party start-up quiet and offline: albumentations checks PyPI at import otherwise."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")


def exit_on_user_error(main: Callable[..., Any]) -> Callable[..., Any]:
    """Print an EffNetV2Error as one `error:` line and exit 1 instead of a traceback."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except EffNetV2Error as error:
            log.error("%s", error)
            print(f"error: {error}", file=sys.stderr)
            sys.exit(getattr(error, "exit_code", 1))  # e.g. 128 + signal for a run stopped by SIGTERM

    return wrapper
