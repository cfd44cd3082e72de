"""Surviving faults on shared clusters: jobs get killed, pre-empted, or their loss turns NaN.

- `AtomicCheckpointIO` writes each checkpoint to a temporary file in the same folder, fsyncs it and
  renames it over the target, so a kill while saving never leaves a truncated `last.ckpt` and never
  destroys the previous one. It reads checkpoints with `weights_only=True`: a checkpoint that holds
  anything but tensors and plain values is refused instead of unpickled (unpickling can run code).
- `LastCheckpoint` keeps last.ckpt current (every N steps, every epoch, at the end).
- `CheckpointOnSignal` turns SIGTERM (cluster pre-emption, `scancel`, torchrun) and SIGINT (Ctrl-C)
  into a checkpoint at the next optimizer-step boundary, then stops with a line saying how to resume.
- `ignore_interrupts_in_worker` (for a DataLoader's worker_init_fn) keeps workers alive when a signal
  reaches the whole job, so the training process can finish its step and save.
- `NonFiniteLossGuard` stops with a message naming the step when the loss is NaN or inf, or skips
  that optimizer step (`faults.on_nan: stop | skip`).
- `check_checkpoint_fits` turns "a checkpoint of another variant or class count" into one clear error.

Under DDP every decision is reduced across ranks, so all ranks save and stop at the same step. Those
reductions (and reading the NaN flag from the GPU) make the host wait for the device, so they happen
every `faults.check_every_n_steps` optimizer steps, at epoch ends and before a checkpoint is written,
not at every step; see docs/distributed.md for what a kill or a NaN costs in steps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from effnetv2.errors import CheckpointError, ConfigError, EffNetV2Error
from effnetv2.safe_load import load_without_code

NAN_POLICIES = ("stop", "skip")
INTERRUPT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class NonFiniteLossError(EffNetV2Error):
    """The training loss became NaN or inf (`faults.on_nan=stop`)."""


class TrainingInterrupted(EffNetV2Error):
    """SIGTERM or SIGINT stopped training after a checkpoint was written.

    `exit_code` follows the shell convention for a process ended by a signal (128 + signal number).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


# Reading and writing checkpoint files ---------------------------------------------------------------
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


def read_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint's content, read with `weights_only=True`: never runs code hidden in a pickle."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}; pass the path of an existing .ckpt file "
            "(runs keep them in <run folder>/checkpoints/)"
        )
    content = load_without_code(
        path,
        map_location,
        if_refused="Use checkpoints written by this project, or re-save just the weights "
        "(torch.save(model.state_dict(), path) or a .safetensors file).",
        if_unreadable="resume from another one (e.g. the epoch checkpoint next to it)",
    )
    if not isinstance(content, dict):
        raise CheckpointError(f"{path} is not a training checkpoint (holds a {type(content).__name__})")
    return content


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
    saved = checkpoint.get("hyper_parameters", {})
    current = getattr(module, "hparams", {})

    def describe(hparams: Any) -> str:
        model = hparams.get("model") or {}
        name = model.get("name", "?") if isinstance(model, dict) else "?"
        classes, channels = hparams.get("num_classes", "?"), hparams.get("in_chans", "?")
        return f"{name} with {classes} classes and {channels} channels"

    problems = [f"{len(mismatched)} with another shape"] if mismatched else []
    problems += [f"{len(missing)} missing"] if missing else []
    problems += [f"{len(unexpected)} unexpected"] if unexpected else []
    first = (mismatched or missing or unexpected)[0]
    raise CheckpointError(
        f"{source} does not fit this model: it was trained as {describe(saved)}, this run builds "
        f"{describe(current)} (tensors: {', '.join(problems)}, e.g. {first}). To resume, use the model "
        "and data it was trained with; to start a new run from its weights, pass model.pretrained=<it> "
        "instead of ckpt_path (experiment=finetune)"
    )


# last.ckpt and pre-emption: SIGTERM / SIGINT -------------------------------------------------------------
class LastCheckpoint(L.Callback):
    """Keeps `<dirpath>/last.ckpt` current: every `every_n_steps` optimizer steps, at the end of every
    epoch (after its validation) and when training ends, so a kill loses at most N steps or one epoch.

    Lightning 2.6's `ModelCheckpoint(save_last=True)` writes last.ckpt only when it also wrote a top-k
    checkpoint (or every N steps with `every_n_train_steps`, but then never at epoch ends), so at the end
    of a run last.ckpt can be older than the final weights. `resume=auto` and CheckpointOnSignal use this
    file. All ranks call `trainer.save_checkpoint`; rank 0 writes.
    """

    def __init__(self, dirpath: str | os.PathLike[str], every_n_steps: int | None = 500) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigError(
                f"faults.checkpoint_every_n_steps={every_n_steps} must be >= 1 (or null: epochs only)"
            )
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = every_n_steps
        self.saved_step = -1

    def save(self, trainer: L.Trainer) -> None:
        if trainer.fast_dev_run:  # a smoke test writes no checkpoints (as Lightning's ModelCheckpoint)
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        self.saved_step = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step != self.saved_step:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)  # also when a step save just happened: this one includes the epoch's validation

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self.saved_step:  # stopped inside an epoch (max_steps, should_stop)
            self.save(trainer)


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where `last.ckpt` goes: LastCheckpoint's file, else that of a ModelCheckpoint with save_last."""
    for callback in trainer.callbacks:
        if isinstance(callback, LastCheckpoint):
            return callback.path
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath:
            return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


class CheckpointOnSignal(L.Callback):
    """On SIGTERM or SIGINT, finish the current optimizer step, write last.ckpt and stop.

    Lightning 2.6 only turns SIGTERM into an exit (a checkpoint only with SLURM auto-requeue, on SIGUSR1)
    and Ctrl-C into a KeyboardInterrupt at whatever line is running. This callback replaces both handlers
    while the training loop runs: the handler only records the signal; at the end of the next training
    batch that stepped the optimizer, all ranks agree (any rank that got it counts), save the checkpoint
    together and raise `TrainingInterrupted` (exit code 128 + signal). A second signal stops at once.
    DataLoader workers forked while the handler is installed inherit it and keep running until the main
    process shuts them down.

    Under DDP agreeing costs an all-reduce, so ranks agree every `check_every_n_steps` optimizer steps
    and at the end of every epoch (a single process checks its flag at every step, which is free).
    A signal that arrives while the main thread is blocked in a collective (a rank died or hangs) never
    reaches the Python handler; a watchdog thread, woken through `signal.set_wakeup_fd`, ends the
    process (exit code 128 + signal, no checkpoint) when training made no step for `grace_s` seconds
    after the signal.
    """

    def __init__(self, check_every_n_steps: int = 20, grace_s: float = 120.0) -> None:
        if check_every_n_steps < 1:
            raise ConfigError(f"faults.check_every_n_steps={check_every_n_steps} must be >= 1")
        if grace_s <= 0:
            raise ConfigError(f"faults.signal_grace_s={grace_s} must be > 0 (seconds)")
        self.check_every_n_steps = check_every_n_steps
        self.grace_s = grace_s
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._previous_wakeup_fd = -1
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._stopping = threading.Event()
        self._trainer: L.Trainer | None = None
        self._step_seen = 0

    # Handlers ---------------------------------------------------------------------------------------
    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            rank_zero_warn("CheckpointOnSignal: not in the main thread, SIGTERM/SIGINT keep their handlers")
            return
        self.received = None
        for signum in INTERRUPT_SIGNALS:
            self._previous.setdefault(signum, signal.getsignal(signum))
            signal.signal(signum, self._on_signal)
        self._start_watchdog()

    def _restore(self) -> None:
        self._stopping.set()
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            for end in self._wakeup:
                end.close()  # the watchdog's recv returns: it ends
            self._wakeup = None

    def _start_watchdog(self) -> None:
        """Python runs signal handlers between bytecodes of the main thread, so a SIGTERM that arrives
        while it waits inside a collective is never handled. The C-level handler still writes the
        signal's number to the wakeup fd; this thread reads it there."""
        if self._wakeup is not None:
            return
        receiver, sender = socket.socketpair()
        sender.setblocking(False)
        self._previous_wakeup_fd = signal.set_wakeup_fd(sender.fileno(), warn_on_full_buffer=False)
        self._wakeup = (receiver, sender)
        self._stopping = threading.Event()
        threading.Thread(target=self._watch, args=(receiver,), name="signal-watchdog", daemon=True).start()

    def _watch(self, receiver: socket.socket) -> None:
        signals = {int(signum) for signum in INTERRUPT_SIGNALS}
        while True:
            try:
                data = receiver.recv(64)
            except OSError:
                return
            if not data or self._stopping.is_set():
                return
            received = [signum for signum in data if signum in signals]
            if not received:
                continue
            trainer = self._trainer
            step = trainer.global_step if trainer is not None else -1
            if self._stopping.wait(self.grace_s):
                return
            if trainer is not None and trainer.global_step != step:
                continue  # training moves on: the handler runs and stops at the next check
            name = signal.Signals(received[0]).name
            rank = trainer.global_rank if trainer is not None else 0
            message = (
                f"\nerror: rank {rank}: {name} received, but training made no step for {self.grace_s:g} s "
                f"(stuck at global step {step}, e.g. waiting for another rank in a collective): exiting "
                "without a checkpoint; resume from the last one (faults.signal_grace_s sets the wait)\n"
            )
            os.write(2, message.encode())
            os._exit(128 + received[0])

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            os.write(2, f"\n{name} again: stopping now, without a checkpoint\n".encode())
            self._restore()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signum
        os.write(
            2,
            f"\n{name} received: saving a checkpoint after the current training step, then stopping "
            f"(send {name} again to stop at once)\n".encode(),
        )

    # Hooks ------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Lightning registered its own SIGTERM handler (Trainer._run), so ours wins during training.
        self._step_seen = trainer.global_step
        self._trainer = trainer
        self._install()
        if trainer.received_sigterm:  # Lightning's flag: SIGTERM before training started
            self.received = signal.SIGTERM

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self._step_seen:
            return  # gradient accumulation: no optimizer step yet, nothing consistent to save
        self._step_seen = trainer.global_step
        if trainer.world_size == 1 or trainer.global_step % self.check_every_n_steps == 0:
            self._stop_if_signalled(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_signalled(trainer)  # a signal during the epoch's last step or its validation

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_signalled(trainer)  # training is over; stop before testing all the same
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def _stop_if_signalled(self, trainer: L.Trainer) -> None:
        """Save last.ckpt and raise TrainingInterrupted on every rank when any rank got a signal."""
        if trainer.world_size == 1:
            if self.received is None:
                return
        elif not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        self._stopping.set()  # the watchdog stands down: every rank is at the same step boundary
        path = last_checkpoint_path(trainer)
        last = next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)
        if last is None or last.saved_step != trainer.global_step:  # not just written by LastCheckpoint
            trainer.save_checkpoint(path, weights_only=False)
        signum = self.received or signal.SIGTERM  # or another rank received it
        self.received = None
        self._restore()
        raise TrainingInterrupted(
            f"training stopped by {signal.Signals(signum).name} at global step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}); checkpoint: {path}. Resume with ckpt_path={path}, or "
            "resume=auto with the same hydra.run.dir",
            signum,
        )


def ignore_interrupts_in_worker() -> None:
    """Call in a DataLoader `worker_init_fn`: the worker ignores SIGINT, and SIGTERM unless its parent
    (the training process, shutting its workers down) sends it.

    SLURM (`scancel`, pre-emption, `--signal`) signals every process of a job and Ctrl-C the whole
    process group, so DataLoader workers get the signal too. By default they die of SIGTERM or stop on
    SIGINT, and the main process then fails at once ("DataLoader worker ... is killed by signal")
    instead of finishing its step and writing the checkpoint. A SIGTERM from the parent still ends the
    worker, as torch's own handler does, so shutting workers down never hangs; workers whose parent was
    killed exit on their own (torch watches the parent).

    Telling the parent's SIGTERM from others needs POSIX signal masks and `sigwaitinfo`: Windows has
    neither, macOS lacks `sigwaitinfo`. There SIGTERM keeps its default (blocking it with nobody waiting
    would make the worker impossible to terminate) and only SIGINT (Ctrl-C) is ignored.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(ValueError):  # the parent's watchdog wakeup fd (CheckpointOnSignal)
        signal.set_wakeup_fd(-1)
    if not (hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigwaitinfo")):
        return
    # Block SIGTERM in this thread (threads started later inherit the mask); one thread waits for it and
    # reads who sent it, which a Python signal handler cannot.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def exit_when_the_parent_asks() -> None:
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == os.getppid():
                os._exit(0)

    threading.Thread(target=exit_when_the_parent_asks, name="sigterm-from-parent", daemon=True).start()


# NaN / inf losses ----------------------------------------------------------------------------------------
class NonFiniteLossGuard(L.Callback):
    """Catch a NaN or inf loss.

    `on_nan="stop"` raises NonFiniteLossError naming the steps. The flag stays on the device and is read
    (under DDP: one all-reduce) every `check_every_n_steps` optimizer steps, at every epoch end and
    before any checkpoint is written, so the host does not wait for the GPU at every step: up to that
    many steps may be applied after the first NaN, but no checkpoint ever holds them, and the error
    says where to resume. `on_nan="skip"` must decide before each optimizer step, so it reads the flag at
    every step: it drops that step's gradients (parameters, momentum and Adam moments stay as they were;
    the step still counts, so schedules stay aligned) and stops after `max_consecutive_skips` skips.

    With 16-bit mixed precision and loss scaling (`16-mixed`), the loss this guard sees is scaled; the
    GradScaler skips the optimizer steps whose scaled loss or gradients overflow to inf and lowers the
    scale: that is not a divergence, so there only a NaN loss counts.
    """

    def __init__(
        self, on_nan: str = "stop", max_consecutive_skips: int = 10, check_every_n_steps: int = 20
    ) -> None:
        if on_nan not in NAN_POLICIES:
            raise ConfigError(f"faults.on_nan={on_nan!r} is unknown; choose one of {', '.join(NAN_POLICIES)}")
        if max_consecutive_skips < 1:
            raise ConfigError(f"faults.max_consecutive_nan_skips={max_consecutive_skips} must be >= 1")
        if check_every_n_steps < 1:
            raise ConfigError(f"faults.check_every_n_steps={check_every_n_steps} must be >= 1")
        self.on_nan = on_nan
        self.max_consecutive_skips = max_consecutive_skips
        self.check_every_n_steps = check_every_n_steps
        self.skipped_steps = 0
        self._skips_in_a_row = 0
        self._nonfinite: torch.Tensor | None = None
        self._loss: torch.Tensor | None = None
        self._first_unchecked_step: int | None = None

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            # 16-mixed: `loss` is scaled. An inf is the scaled value overflowing (the scaler skips the
            # step and lowers the scale); only a NaN is a NaN of the loss itself.
            nonfinite = torch.isnan(loss.detach()).any()
        else:
            nonfinite = ~torch.isfinite(loss.detach()).all()  # stays on the device: no sync here
        step = trainer.global_step
        if self._nonfinite is None:
            self._nonfinite, self._loss = nonfinite, loss.detach()
            self._first_bad_step = torch.where(nonfinite, step, -1)
            self._first_unchecked_step = step
        else:  # keep the first non-finite loss and its step for the message
            first = self._nonfinite
            self._loss = torch.where(first, self._loss, loss.detach())
            self._first_bad_step = torch.where(first | ~nonfinite, self._first_bad_step, step)
            self._nonfinite = first | nonfinite

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._nonfinite is None:
            return
        step = trainer.global_step + 1  # the step this update makes
        if self.on_nan == "stop" and step % self.check_every_n_steps:
            return  # read later, with the flag of the steps in between
        if not self._check(trainer):
            self._skips_in_a_row = 0
            return
        where = self._where(trainer, trainer.global_step)
        value = self._value
        self.skipped_steps += 1
        self._skips_in_a_row += 1
        if self._skips_in_a_row >= self.max_consecutive_skips:
            raise NonFiniteLossError(
                f"the training loss is {value} at {where}, {self._skips_in_a_row} skipped steps in a row: "
                "training diverged. Lower optimizer.lr or set trainer.gradient_clip_val and resume from "
                "the last checkpoint"
            )
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = None  # optimizers leave parameters without gradients untouched
        rank_zero_warn(f"skipped {where}: the training loss is {value} (faults.on_nan=skip)")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.training:  # every rank writes (or skips) the checkpoint together: a consistent point
            self._check(trainer)

    def _check(self, trainer: L.Trainer) -> bool:
        """Read the flag of the steps since the last check (all ranks together); raise under `stop`."""
        local, first = self._nonfinite, self._first_unchecked_step
        if local is None:
            return False
        self._nonfinite = None
        local_bad = bool(local)
        self._value = f"{self._loss.float().mean().item()}" if local_bad else "not finite on another rank"
        if trainer.world_size == 1:
            bad = local_bad
        else:
            bad = trainer.strategy.reduce_boolean_decision(local_bad, all=False)
        if not bad or self.on_nan == "skip":
            return bad
        now = trainer.global_step
        bad_step = int(self._first_bad_step) if local_bad else None
        if bad_step == now:
            where = self._where(trainer, now)
        else:
            steps = (
                f"global step {bad_step}" if bad_step is not None else f"one of global steps {first}-{now}"
            )
            where = (
                f"{steps} (epoch {trainer.current_epoch}; found at global step {now}: the flag is read "
                f"every faults.check_every_n_steps={self.check_every_n_steps} steps)"
            )
        raise NonFiniteLossError(
            f"the training loss is {self._value} at {where}; no checkpoint holds weights updated with it. "
            "Lower optimizer.lr, set trainer.gradient_clip_val (e.g. 1.0), check the data, or set "
            "faults.on_nan=skip to skip such steps; resume from the last checkpoint"
        )

    @staticmethod
    def _where(trainer: L.Trainer, step: int) -> str:
        return (
            f"global step {step} (epoch {trainer.current_epoch}, "
            f"batch {trainer.fit_loop.epoch_loop.batch_idx})"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.skipped_steps:
            rank_zero_info(
                f"faults.on_nan=skip: {self.skipped_steps} optimizer step(s) skipped for a NaN/inf loss"
            )
