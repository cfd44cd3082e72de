"""Reading torch files without running code they may hide: `torch.load(weights_only=True)`, with
errors that name the file, what was refused and the fix. Weights files (`models/weights.py`) and
training checkpoints (`effnetv2.checkpoint`) both read through here."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from effnetv2.errors import CheckpointError


def load_without_code(path: Path, map_location: Any, *, if_refused: str, if_unreadable: str) -> Any:
    """The file's content; `if_refused` / `if_unreadable` end the error message with the caller's fix."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if unsupported is None:
            raise CheckpointError(f"cannot read {path}: not a torch file; {if_unreadable}") from err
        raise CheckpointError(
            f"refused to load {path}: it holds a Python object ({unsupported.group(1)}) besides tensors and "
            f"plain values, and unpickling it could run code. {if_refused}"
        ) from err
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(
            f"cannot read {path}: truncated or not a torch checkpoint ({err}); {if_unreadable}"
        ) from err
