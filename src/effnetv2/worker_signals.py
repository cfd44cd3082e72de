"""Keeping DataLoader workers alive when a signal reaches the whole job, so the training process can
finish its step and save a checkpoint (`training.callbacks.preemption.CheckpointOnSignal`)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading


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
