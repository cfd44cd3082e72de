"""Surviving faults: atomic checkpoint files, a checkpoint on SIGTERM/SIGINT, NaN/inf losses, and
kill -9 during an epoch followed by a resume that ends with the same steps and stage schedule."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from effnetv2.checkpoint import AtomicCheckpointIO, read_checkpoint, save_atomically
from effnetv2.errors import CheckpointError, ConfigError
from effnetv2.training.callbacks.checkpoints import LastCheckpoint
from effnetv2.training.callbacks.nan_guard import NonFiniteLossError, NonFiniteLossGuard
from effnetv2.training.callbacks.preemption import CheckpointOnSignal, TrainingInterrupted
from effnetv2.training.optim import RMSpropTF
from helpers.configs import compose_config
from helpers.paths import ROOT
from helpers.probes import read_records
from helpers.runs import run_train, start_train, wait_for
from helpers.tiny import TINY

BATCHES = 6
# src/train.py runs: 4 epochs (one per progressive stage) of 3 optimizer steps.
MAX_EPOCHS = 4
STEPS_PER_EPOCH = 3
TOTAL_STEPS = MAX_EPOCHS * STEPS_PER_EPOCH


# A tiny model whose loss can be made non-finite at chosen steps -------------------------------------------
class TinyModule(L.LightningModule):
    def __init__(self, bad_steps: tuple[int, ...] = (), bad_value: float = float("nan")) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)
        self.bad_steps = set(bad_steps)
        self.bad_value = bad_value
        self.trained_steps: list[int] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.layer(x), y)
        self.trained_steps.append(self.global_step)
        if self.global_step in self.bad_steps:
            loss = loss * self.bad_value
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.1)


def tiny_loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(BATCHES * 4, 4, generator=generator), torch.randint(0, 2, (BATCHES * 4,))
    )
    return DataLoader(data, batch_size=4)


def tiny_trainer(tmp_path: Path, callbacks: list, **overrides) -> L.Trainer:
    options = dict(
        default_root_dir=tmp_path,
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=True,
        plugins=[AtomicCheckpointIO()],
    )
    options.update(overrides)
    return L.Trainer(callbacks=callbacks, **options)


class ParameterLog(L.Callback):
    """Copies of the weights after every optimizer step."""

    def __init__(self) -> None:
        self.after_step: dict[int, torch.Tensor] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after_step[trainer.global_step] = pl_module.layer.weight.detach().clone()


# Atomic checkpoint files ----------------------------------------------------------------------------------
def test_save_atomically_replaces_the_file_whole(tmp_path) -> None:
    path = tmp_path / "last.ckpt"
    save_atomically({"step": 1, "w": torch.ones(3)}, path)
    save_atomically({"step": 2, "w": torch.full((3,), 2.0)}, path)
    content = read_checkpoint(path)
    assert content["step"] == 2 and torch.equal(content["w"], torch.full((3,), 2.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"], "temporary files left behind"


def test_a_crash_inside_the_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    path = tmp_path / "last.ckpt"
    save_atomically({"step": 1, "w": torch.ones(1000)}, path)
    before = path.read_bytes()
    real_save = torch.save

    def crash_half_way(content, file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a checkpoint")  # some bytes reach the file, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        save_atomically({"step": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert read_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.subprocess
@pytest.mark.timeout(120)
def test_kill_9_while_saving_leaves_the_previous_checkpoint_intact(tmp_path) -> None:
    """A real SIGKILL in the middle of writing a checkpoint (the write blocks half way until killed)."""
    path = tmp_path / "last.ckpt"
    save_atomically({"step": 1, "w": torch.ones(1000)}, path)
    before = path.read_bytes()
    marker = tmp_path / "writing"
    script = textwrap.dedent(
        f"""
        import time, torch
        from pathlib import Path
        from effnetv2.checkpoint import AtomicCheckpointIO

        def slow_save(content, file, *args, **kwargs):
            file.write(b"PK\\x03\\x04" + bytes(100_000))
            file.flush()
            Path({str(marker)!r}).write_text("half written")
            time.sleep(300)

        torch.save = slow_save
        AtomicCheckpointIO().save_checkpoint({{"step": 2}}, {str(path)!r})
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert process.poll() is None, "the writer exited before it was killed"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.05)
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert path.read_bytes() == before, "last.ckpt changed although the new one was never completed"
    assert read_checkpoint(path)["step"] == 1
    leftovers = [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    assert leftovers, "expected the killed writer's temporary file"
    save_atomically({"step": 3}, path)  # the next save cleans up after the killed one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "writing"]


def test_checkpoint_io_in_a_trainer_writes_and_resumes(tmp_path) -> None:
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, every_n_train_steps=2)
    trainer = tiny_trainer(tmp_path, [checkpoint])
    trainer.fit(TinyModule(), tiny_loader())
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == BATCHES
    resumed = tiny_trainer(tmp_path, [], max_epochs=2)
    module = TinyModule()
    resumed.fit(module, tiny_loader(), ckpt_path=last)
    assert module.trained_steps == list(range(BATCHES, 2 * BATCHES))


class RecordingCheckpointIO(AtomicCheckpointIO):
    def __init__(self) -> None:
        super().__init__()
        self.saved_steps: list[int] = []

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        self.saved_steps.append(checkpoint["global_step"])
        super().save_checkpoint(checkpoint, path, storage_options)


def test_last_checkpoint_every_n_steps_every_epoch_and_at_the_end(tmp_path) -> None:
    io = RecordingCheckpointIO()
    last = LastCheckpoint(tmp_path / "checkpoints", every_n_steps=4)
    trainer = tiny_trainer(tmp_path, [last], max_epochs=2, enable_checkpointing=False, plugins=[io])
    trainer.fit(TinyModule(), tiny_loader())
    # steps 4, 8, 12 (12 = 2 x BATCHES) and the end of each epoch (6, 12): never older than the weights
    assert io.saved_steps == [4, 6, 8, 12, 12]
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 2 * BATCHES
    stopped = RecordingCheckpointIO()
    trainer = tiny_trainer(
        tmp_path,
        [LastCheckpoint(tmp_path / "stopped", every_n_steps=4)],
        max_steps=5,
        enable_checkpointing=False,
        plugins=[stopped],
    )
    trainer.fit(TinyModule(), tiny_loader())
    assert stopped.saved_steps == [4, 5], "training that stops mid-epoch must still leave its final state"


def test_truncated_checkpoint_gives_a_clear_error(tmp_path) -> None:
    path = tmp_path / "last.ckpt"
    save_atomically({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated or not a torch checkpoint"):
        read_checkpoint(path)


# NaN / inf losses -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_non_finite_loss_stops_naming_the_step_before_the_weights_change(tmp_path, bad_value) -> None:
    weights = ParameterLog()
    module = TinyModule(bad_steps=(3,), bad_value=bad_value)
    guard = NonFiniteLossGuard("stop", check_every_n_steps=1)  # read the flag before every step
    trainer = tiny_trainer(tmp_path, [guard, weights], enable_checkpointing=False)
    with pytest.raises(NonFiniteLossError, match=r"global step 3 \(epoch 0, batch 3\)") as error:
        trainer.fit(module, tiny_loader())
    assert str(bad_value) in str(error.value) and "faults.on_nan=skip" in str(error.value)
    assert trainer.global_step == 3
    assert torch.isfinite(module.layer.weight).all()
    assert torch.equal(module.layer.weight, weights.after_step[3])


def test_non_finite_loss_read_on_a_cadence_never_reaches_a_checkpoint(tmp_path) -> None:
    """The default reads the flag every faults.check_every_n_steps steps (no host-device sync per step):
    a NaN at step 1 updates the weights, but the check before last.ckpt is written (step 2) stops first."""
    module = TinyModule(bad_steps=(1,))
    last = LastCheckpoint(tmp_path / "checkpoints", every_n_steps=2)
    guard = NonFiniteLossGuard("stop", check_every_n_steps=4)
    trainer = tiny_trainer(tmp_path, [guard, last], enable_checkpointing=False)
    with pytest.raises(
        NonFiniteLossError, match=r"nan at global step 1 .*found at global step 2: .*check_every_n_steps=4"
    ):
        trainer.fit(module, tiny_loader())
    assert trainer.global_step == 2
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists(), "a checkpoint with NaN weights was written"


def test_non_finite_loss_cadence_stops_at_the_next_check(tmp_path) -> None:
    module = TinyModule(bad_steps=(1,))
    trainer = tiny_trainer(
        tmp_path, [NonFiniteLossGuard("stop", check_every_n_steps=3)], enable_checkpointing=False
    )
    with pytest.raises(NonFiniteLossError, match=r"nan at global step 1 \(epoch 0; found at global step 2"):
        trainer.fit(module, tiny_loader())
    assert trainer.global_step == 2, "stopped before the third step's update"


def test_non_finite_loss_skip_leaves_weights_and_optimizer_state_untouched(tmp_path) -> None:
    weights = ParameterLog()
    guard = NonFiniteLossGuard("skip")
    module = TinyModule(bad_steps=(2, 4))
    trainer = tiny_trainer(tmp_path, [guard, weights], enable_checkpointing=False)
    trainer.fit(module, tiny_loader())
    assert trainer.global_step == BATCHES, "skipped steps still count, so schedules stay aligned"
    assert guard.skipped_steps == 2
    assert torch.equal(weights.after_step[3], weights.after_step[2])  # step 2 (-> global_step 3) skipped
    assert not torch.equal(weights.after_step[4], weights.after_step[3])
    assert torch.equal(weights.after_step[5], weights.after_step[4])
    assert torch.isfinite(module.layer.weight).all()
    assert trainer.optimizers[0].state[module.layer.weight]["step"] == BATCHES - 2


def test_skipping_stops_when_training_diverged(tmp_path) -> None:
    module = TinyModule(bad_steps=tuple(range(1, BATCHES)))
    trainer = tiny_trainer(
        tmp_path, [NonFiniteLossGuard("skip", max_consecutive_skips=3)], enable_checkpointing=False
    )
    with pytest.raises(NonFiniteLossError, match="3 skipped steps in a row"):
        trainer.fit(module, tiny_loader())


def test_unknown_nan_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="faults.on_nan='ignore'.*stop, skip"):
        NonFiniteLossGuard("ignore")


# Signals, in process --------------------------------------------------------------------------------------
class SignalAtStep(L.Callback):
    def __init__(self, signum: int, step: int) -> None:
        self.signum, self.step = signum, step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step == self.step:  # mid-step: the handler must wait for the step to finish
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_at_the_step_boundary_and_stops(tmp_path, signum) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, every_n_train_steps=100)
    trainer = tiny_trainer(tmp_path, [CheckpointOnSignal(), SignalAtStep(signum, 2), checkpoint])
    module = TinyModule()
    with pytest.raises(
        TrainingInterrupted, match=rf"{signal.Signals(signum).name} at global step 3 .*last.ckpt"
    ) as error:
        trainer.fit(module, tiny_loader())
    assert error.value.exit_code == 128 + signum
    saved = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == 3 and module.trained_steps == [0, 1, 2]
    assert torch.equal(saved["state_dict"]["layer.weight"], module.layer.weight)
    assert {s: signal.getsignal(s) for s in before} == before, "signal handlers not restored"
    resumed = TinyModule()
    tiny_trainer(tmp_path, [], max_epochs=1).fit(
        resumed, tiny_loader(), ckpt_path=tmp_path / "checkpoints" / "last.ckpt"
    )
    assert resumed.trained_steps == [3, 4, 5]


# src/train.py killed or signalled during an epoch, then resumed ---------------------------------------------
def progressive_run(run_dir: Path, probe_dir: Path, *overrides: str) -> list[str]:
    return [
        *TINY,
        f"trainer.max_epochs={MAX_EPOCHS}",
        f"trainer.limit_train_batches={STEPS_PER_EPOCH}",
        "test=false",
        f"hydra.run.dir={run_dir}",
        "+callbacks.probe._target_=helpers.probes.StepRecorder",
        f"+callbacks.probe.outdir={probe_dir}",
        *overrides,
    ]


def expected_stages(tmp_path: Path) -> dict[int, tuple[int, float]]:
    """Epoch -> (train image size, dropout) of the default progressive schedule for MAX_EPOCHS epochs."""
    cfg = compose_config("train", [*TINY, f"trainer.max_epochs={MAX_EPOCHS}"], tmp_path / "compose")
    schedule = instantiate(cfg.schedule)
    stages = {}
    for epoch in range(MAX_EPOCHS):
        values = schedule.stage_values(schedule.stage_of_epoch(epoch, MAX_EPOCHS))
        stages[epoch] = (values.image_size, values.dropout)
    assert len(set(stages.values())) == MAX_EPOCHS, "each epoch should be its own stage"
    return stages


def resume_and_check(tmp_path: Path, run_dir: Path, first: list[dict], saved_step: int) -> None:
    """Resume with resume=auto and check the steps and stages of the two runs together."""
    probe = tmp_path / "probe_resumed"
    result = run_train(*progressive_run(run_dir, probe), "resume=auto")
    assert result.returncode == 0, result.stderr[-4000:]
    assert read_records(probe / "fits_rank0.jsonl")[0]["start_step"] == saved_step
    second = read_records(probe / "steps_rank0.jsonl")
    assert [r["step"] for r in second] == list(range(saved_step + 1, TOTAL_STEPS + 1))
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == TOTAL_STEPS
    steps = {r["step"]: r for r in first if r["step"] <= saved_step} | {r["step"]: r for r in second}
    assert sorted(steps) == list(range(1, TOTAL_STEPS + 1)), "an optimizer step is missing or repeated"
    assert [steps[s]["epoch"] for s in sorted(steps)] == [
        e for e in range(MAX_EPOCHS) for _ in range(STEPS_PER_EPOCH)
    ]
    stages = expected_stages(tmp_path)
    assert [(r["image_size"], r["dropout"]) for r in steps.values()] == [
        stages[r["epoch"]] for r in steps.values()
    ]


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_kill_9_during_an_epoch_then_resume_finishes_the_same_steps_and_stages(tmp_path) -> None:
    """Killed (SIGKILL, whole process group) after step 9, the last batch of epoch 2; last.ckpt is written
    every 2 steps, so the newest is step 8, mid-epoch: step 9 is lost and redone, nothing else."""
    run_dir, probe, log = tmp_path / "run", tmp_path / "probe", tmp_path / "killed.log"
    overrides = progressive_run(
        run_dir, probe, "faults.checkpoint_every_n_steps=2", "+callbacks.probe.pause_at_step=9"
    )
    process = start_train(*overrides, log=log)
    wait_for(probe / "paused", process, log)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    first = read_records(probe / "steps_rank0.jsonl")
    assert [r["step"] for r in first] == list(range(1, 10))
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 8
    resume_and_check(tmp_path, run_dir, first, saved_step=8)


@pytest.mark.subprocess
@pytest.mark.timeout(600)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_writes_a_checkpoint_then_resume_finishes_the_same_steps_and_stages(tmp_path, signum) -> None:
    """The signal arrives after step 4 (epoch 1, batch 0) was checked; step checkpoints are off (every 100
    steps), so the checkpoint after epoch 0 is the one the signal writes after step 5. Nothing is lost."""
    run_dir, probe, log = tmp_path / "run", tmp_path / "probe", tmp_path / "signalled.log"
    overrides = progressive_run(
        run_dir, probe, "faults.checkpoint_every_n_steps=100", "+callbacks.probe.pause_at_step=4"
    )
    process = start_train(*overrides, log=log)
    wait_for(probe / "paused", process, log)
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)  # Ctrl-C in a terminal reaches the whole process group
    else:
        process.send_signal(signum)  # `kill <pid>`, a scheduler pre-empting the job
    (probe / "release").touch()
    process.wait(timeout=120)
    output = log.read_text()
    assert process.returncode == 128 + signum, output[-4000:]
    name = signal.Signals(signum).name
    assert f"error: training stopped by {name} at global step 5 (epoch 1)" in output
    assert "Traceback" not in output
    first = read_records(probe / "steps_rank0.jsonl")
    assert [r["step"] for r in first] == [1, 2, 3, 4, 5]
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 5
    resume_and_check(tmp_path, run_dir, first, saved_step=5)


WORKER_SCRIPT = """
import signal, sys, time
from pathlib import Path
import torch
from torch.utils.data import DataLoader, Dataset
from effnetv2.worker_signals import ignore_interrupts_in_worker

class Slow(Dataset):
    def __len__(self):
        return 40
    def __getitem__(self, index):
        time.sleep(0.1)
        return torch.tensor(index)

received = []
signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))  # the main process carries on
init = (lambda worker_id: ignore_interrupts_in_worker()) if sys.argv[2] == "ignore" else None
batches = iter(DataLoader(Slow(), batch_size=2, num_workers=1, worker_init_fn=init, persistent_workers=True))
next(batches)
Path(sys.argv[1]).write_text("ready")
while not received:
    time.sleep(0.05)
print("fetched", sum(1 for _ in batches), "more batches after SIGTERM", flush=True)
"""


@pytest.mark.subprocess
@pytest.mark.timeout(180)
@pytest.mark.parametrize("workers", ["ignore", "default"])
def test_dataloader_workers_survive_a_process_group_sigterm(tmp_path, workers) -> None:
    """SLURM signals every process of the job: with ignore_interrupts_in_worker the workers keep serving
    batches while the main process finishes its step; with torch's default they die and the main process
    fails. (The default case shows the test can fail.)"""
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, str(ready), workers],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    if workers == "ignore":
        assert process.returncode == 0, stderr[-3000:]
        assert "fetched 19 more batches after SIGTERM" in stdout
    else:
        assert process.returncode != 0 and "killed by signal: Terminated" in stderr


class ValidatedModule(TinyModule):
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", nn.functional.cross_entropy(self.layer(x), y))


class SignalDuringValidation(L.Callback):
    def on_validation_start(self, trainer, pl_module):
        os.kill(os.getpid(), signal.SIGTERM)


def test_signal_during_validation_stops_at_the_end_of_the_epoch(tmp_path) -> None:
    """No extra training step after the epoch's validation: last.ckpt is the end-of-epoch state."""
    last = LastCheckpoint(tmp_path / "checkpoints", every_n_steps=None)
    callbacks = [last, CheckpointOnSignal(), SignalDuringValidation()]
    trainer = tiny_trainer(tmp_path, callbacks, max_epochs=3, num_sanity_val_steps=0)
    module = ValidatedModule()
    with pytest.raises(TrainingInterrupted, match=rf"SIGTERM at global step {BATCHES} \(epoch 0\)"):
        trainer.fit(module, tiny_loader(), tiny_loader())
    assert module.trained_steps == list(range(BATCHES))
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == BATCHES
    resumed = ValidatedModule()
    tiny_trainer(tmp_path, [], max_epochs=2).fit(resumed, tiny_loader(), tiny_loader(), ckpt_path=last.path)
    assert resumed.trained_steps == list(range(BATCHES, 2 * BATCHES))


@pytest.mark.parametrize(
    ("sanity_steps", "expected"),
    [
        (None, "error: stopped by SIGTERM; run the same command again"),
        (2, "error: stopped by SIGTERM; run the same command again"),
        (1, "error: training stopped by SIGTERM at global step 1 (epoch 0); checkpoint: "),
    ],
    ids=["lightning_exit", "in_sanity_check", "before_training_then_first_step"],
)
def test_sigterm_outside_training_steps_exits_with_status_143(
    tmp_path, capsys, sanity_steps, expected
) -> None:
    """Lightning stops on SIGTERM outside training steps (its sanity check stops before its last batch)
    with SystemExit(), whose status 0 would read as success: entry points make it an error line and
    128 + SIGTERM. A SIGTERM that Lightning saw before training began (here: during the last sanity
    batch) is honoured after the first training step, with a checkpoint."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from effnetv2.cli import exit_on_user_error

    def main() -> None:
        if sanity_steps is None:
            raise SIGTERMException
        callbacks = [CheckpointOnSignal(), SignalDuringValidation()]
        trainer = tiny_trainer(tmp_path, callbacks, max_epochs=1, num_sanity_val_steps=sanity_steps)
        trainer.fit(ValidatedModule(), tiny_loader(), tiny_loader())

    with pytest.raises(SystemExit) as stop:
        exit_on_user_error(main)()
    assert stop.value.code == 128 + signal.SIGTERM
    assert expected in capsys.readouterr().err


@pytest.mark.subprocess
@pytest.mark.timeout(300)
@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_nan_loss_through_train_py(tmp_path, policy) -> None:
    """A learning rate of 1e30 makes the second step's loss NaN: faults.on_nan from conf/train.yaml."""
    overrides = [*TINY, "trainer.max_epochs=1", "schedule=fixed", "test=false", "optimizer.lr=1e30"]
    overrides += [
        f"faults.on_nan={policy}",
        "faults.max_consecutive_nan_skips=2",
        f"hydra.run.dir={tmp_path}",
    ]
    result = run_train(*overrides)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-4000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith("error: the training loss is nan at global step")
    if policy == "stop":
        # read at the epoch's end (faults.check_every_n_steps=20 > 3 steps), before any checkpoint
        assert "global step 1 (epoch 0; found at global step 3" in line and "faults.on_nan=skip" in line
        assert not (tmp_path / "checkpoints" / "last.ckpt").exists()
    else:
        assert "global step 2 (epoch 0, batch 2), 2 skipped steps in a row" in line


# 16-bit mixed precision with loss scaling ------------------------------------------------------------------
class OverflowingModule(TinyModule):
    """RMSpropTF (foreach); at `overflow_steps` the loss is finite but huge, so the scaled loss overflows."""

    def __init__(self, overflow_steps: tuple[int, ...] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.overflow_steps = set(overflow_steps)

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * 1e35 if self.global_step in self.overflow_steps else loss

    def configure_optimizers(self):
        return RMSpropTF(self.parameters(), lr=0.01, foreach=True)


def fp16_with_loss_scaling() -> MixedPrecision:
    """Lightning turns `precision="16-mixed"` on a CPU into bf16; its plugin with a GradScaler runs the
    same scaled-loss path (scale, unscale, skip on overflow, update) as on a GPU."""
    return MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0**16))


def test_fp16_loss_scale_overflow_is_skipped_by_the_scaler_not_a_divergence(tmp_path) -> None:
    weights = ParameterLog()
    module = OverflowingModule(overflow_steps=(2,))
    guard = NonFiniteLossGuard("stop", check_every_n_steps=1)
    trainer = tiny_trainer(
        tmp_path, [guard, weights], enable_checkpointing=False, plugins=[fp16_with_loss_scaling()]
    )
    trainer.fit(module, tiny_loader())
    assert trainer.global_step == BATCHES
    assert torch.equal(weights.after_step[3], weights.after_step[2]), "the scaler skips the overflowed step"
    assert not torch.equal(weights.after_step[4], weights.after_step[3]), "and trains on after it"
    assert trainer.precision_plugin.scaler.get_scale() < 2.0**16
    assert torch.isfinite(module.layer.weight).all()


def test_fp16_nan_loss_still_stops(tmp_path) -> None:
    module = OverflowingModule(bad_steps=(3,))
    guard = NonFiniteLossGuard("stop", check_every_n_steps=1)
    trainer = tiny_trainer(tmp_path, [guard], enable_checkpointing=False, plugins=[fp16_with_loss_scaling()])
    with pytest.raises(NonFiniteLossError, match=r"nan at global step 3 \(epoch 0, batch 3\)"):
        trainer.fit(module, tiny_loader())
