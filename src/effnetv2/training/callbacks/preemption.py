"""Pre-emption: SIGTERM (cluster pre-emption, `scancel`, torchrun) and SIGINT (Ctrl-C) become a checkpoint
at the next optimizer-step boundary and a line saying how to resume.

Under DDP the decision is reduced across ranks, so all ranks save and stop at the same step. That
reduction makes the host wait for the device, so it happens every `faults.check_every_n_steps`
optimizer steps and at epoch ends, not at every step; see docs/distributed.md for what a kill costs.
DataLoader workers survive the signal through `effnetv2.worker_signals.ignore_interrupts_in_worker`.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

from effnetv2.errors import ConfigError, EffNetV2Error
from effnetv2.training.callbacks.checkpoints import LastCheckpoint, last_checkpoint_path

INTERRUPT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(EffNetV2Error):
    """SIGTERM or SIGINT stopped training after a checkpoint was written.

    `exit_code` follows the shell convention for a process ended by a signal (128 + signal number).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


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
