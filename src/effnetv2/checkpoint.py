"""Training checkpoints: the one place that reads, writes and checks them.

- Reading never runs code: `torch.load(weights_only=True)` (`load_without_code`), so a checkpoint that
  holds anything but tensors and plain values is refused instead of unpickled. The stored configs'
  `_target_`s are brought up to date (`effnetv2.target_aliases`), so checkpoints of earlier versions load.
- Writing is atomic (`save_atomically`): a kill while saving never leaves a truncated `last.ckpt` and
  never destroys the previous one. `AtomicCheckpointIO` makes Lightning read and write this way.
- `check_checkpoint_fits` turns "a checkpoint of another variant or class count" into one clear error.

Training (resume, fine-tuning from a checkpoint), `src/eval.py`, `src/predict.py`, `src/export.py` and
weight import (`models/weights.py`) all read through here.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from effnetv2.errors import CheckpointError
from effnetv2.target_aliases import with_current_targets

# The LightningModule keeps the network in `self.model`: its weights are the `model.*` entries.
MODEL_PREFIX = "model."


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


def missing_checkpoint(path: str | os.PathLike[str]) -> CheckpointError:
    """The error for a checkpoint path that names no file."""
    return CheckpointError(
        f"checkpoint {path} does not exist; pass the path of an existing .ckpt file "
        "(runs keep them in <run folder>/checkpoints/: the best one and last.ckpt)"
    )


def read_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint's content, read with `weights_only=True`: never runs code hidden in a pickle."""
    path = Path(path)
    if not path.is_file():
        raise missing_checkpoint(path)
    content = load_without_code(
        path,
        map_location,
        if_refused="Use checkpoints written by this project, or re-save just the weights "
        "(torch.save(model.state_dict(), path) or a .safetensors file).",
        if_unreadable="use another one (e.g. the epoch checkpoint next to it)",
    )
    if not isinstance(content, dict):
        raise CheckpointError(f"{path} is not a training checkpoint (holds a {type(content).__name__})")
    if isinstance(content.get("hyper_parameters"), dict):
        content["hyper_parameters"] = with_current_targets(content["hyper_parameters"])
    return content


def read_training_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint of `src/train.py` (model config and weights included), for eval, predict and export."""
    checkpoint = read_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters")
    if not hparams or "model" not in hparams or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a training checkpoint of this project (no model hyperparameters); "
            "pass a .ckpt written by src/train.py"
        )
    return checkpoint


def model_weights(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The network's own weights (`state_dict` without the LightningModule's prefix and metrics)."""
    state = checkpoint["state_dict"]
    return {key[len(MODEL_PREFIX) :]: value for key, value in state.items() if key.startswith(MODEL_PREFIX)}


def load_model_weights(model: torch.nn.Module, checkpoint: dict[str, Any]) -> torch.nn.Module:
    """Load the checkpoint's network weights into `model` strictly: every key must fit."""
    try:
        model.load_state_dict(model_weights(checkpoint))
    except RuntimeError as error:
        raise CheckpointError(f"the checkpoint's weights do not fit its own model config: {error}") from error
    return model


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: the directory entry must reach the disk too (POSIX)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_atomically(content: Any, path: str | os.PathLike[str]) -> None:
    """`torch.save(content, path)` such that `path` holds either its old or its new content, whole.

    The temporary file lives in the target's folder (a rename across file systems is a copy, not
    atomic). Leftovers of an earlier process that was killed while writing are removed afterwards.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        # 0o666 & ~umask, like a plain open(): checkpoints stay readable to the group on clusters.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as file:
            torch.save(content, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    _fsync_directory(path.parent)
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes atomically and reads safely (see `save_atomically`,
    `read_checkpoint`). Remote paths (s3://, ...) keep Lightning's own writer."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        save_atomically(checkpoint, path)

    def load_checkpoint(
        self, path: Any, map_location: Any = lambda storage, loc: storage, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Always `weights_only=True`, whatever the caller asks: resuming needs nothing else."""
        if "://" in str(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return read_checkpoint(path, map_location=map_location)


def _describe(hparams: Any) -> str:
    model = hparams.get("model") or {}
    name = model.get("name", "?") if isinstance(model, dict) else "?"
    classes, channels = hparams.get("num_classes", "?"), hparams.get("in_chans", "?")
    return f"{name} with {classes} classes and {channels} channels"


def check_checkpoint_fits(
    checkpoint: dict[str, Any], module: torch.nn.Module, source: str = "the checkpoint"
) -> None:
    """Raise CheckpointError when `checkpoint`'s weights do not fit `module` (another variant or class count).

    Lightning would otherwise fail deep inside `load_state_dict` with a page of size mismatches.
    """
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{source} holds no state_dict: it is not a training checkpoint of this project"
        )
    ours = module.state_dict()
    mismatched = [
        key for key, value in state.items() if key in ours and tuple(value.shape) != tuple(ours[key].shape)
    ]
    missing = [key for key in ours if key not in state]
    unexpected = [key for key in state if key not in ours]
    if not (mismatched or missing or unexpected):
        return
    problems = [f"{len(mismatched)} with another shape"] if mismatched else []
    problems += [f"{len(missing)} missing"] if missing else []
    problems += [f"{len(unexpected)} unexpected"] if unexpected else []
    first = (mismatched or missing or unexpected)[0]
    saved, current = checkpoint.get("hyper_parameters", {}), getattr(module, "hparams", {})
    raise CheckpointError(
        f"{source} does not fit this model: it was trained as {_describe(saved)}, this run builds "
        f"{_describe(current)} (tensors: {', '.join(problems)}, e.g. {first}). To resume, use the model "
        "and data it was trained with; to start a new run from its weights, pass model.pretrained=<it> "
        "instead of ckpt_path (experiment=finetune)"
    )
