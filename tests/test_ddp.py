"""DDP with 2 CPU processes (gloo) through `src/train.py trainer=ddp_cpu`, with the torch and FFCV loaders
and the default callbacks (progress bar and stage report included: rank-0-only code must never start a
collective) and the progressive callback: each rank trains on a disjoint shard, validation metrics are
reduced over both ranks, every stage change happens on both ranks at the same step, and only rank 0 writes
logs and checkpoints. Probe callbacks (tests/helpers.probes.py) record what each rank saw. A hung rank becomes
an error naming the rank and the step within the process-group timeout, and SIGTERM ends a job whose
ranks wait in a collective."""

from __future__ import annotations

import csv
import os
import re
import signal
import time
from pathlib import Path

import pytest

from effnetv2.checkpoint import read_checkpoint
from helpers.environment import require_module
from helpers.probes import read_records
from helpers.runs import run_train, start_train, wait_for
from helpers.tiny import TINY

pytest_plugins = ["fixtures_data"]

MAX_EPOCHS = 4  # the default progressive schedule has 4 stages: one per epoch
BATCH_SIZE = 4
TRAIN_BATCHES = 2


def ddp_run(run_dir: Path, probe_dir: Path, *overrides: str) -> list[str]:
    return [
        *TINY,
        "trainer=ddp_cpu",
        f"trainer.max_epochs={MAX_EPOCHS}",
        "schedule.image_size=[16,40]",  # four distinct sizes in multiples of 8: a new stage every epoch
        f"trainer.limit_train_batches={TRAIN_BATCHES}",
        "trainer.limit_val_batches=1",
        f"data.batch_size={BATCH_SIZE}",
        "test=false",
        "faults.checkpoint_every_n_steps=3",
        f"hydra.run.dir={run_dir}",
        "+callbacks.shards._target_=helpers.probes.ShardRecorder",
        f"+callbacks.shards.outdir={probe_dir}",
        "+callbacks.steps._target_=helpers.probes.StepRecorder",
        f"+callbacks.steps.outdir={probe_dir}",
        *overrides,
    ]


def logged_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "csv" / "metrics.csv").open() as file:
        return list(csv.DictReader(file))


def check_ddp_run(run_dir: Path, probe: Path, train_size: int, per_rank: int, sampler_kind: str) -> None:
    """`per_rank`: samples each rank draws per epoch: half the training set (torch: all of it is drawn),
    less the incomplete last batch FFCV drops. `train_size`: indices run from 0 to train_size - 1."""
    shards = [read_records(probe / f"shards_rank{rank}.jsonl") for rank in (0, 1)]
    assert [len(s) for s in shards] == [MAX_EPOCHS, MAX_EPOCHS]
    for epoch in range(MAX_EPOCHS):
        first, second = (set(shards[rank][epoch]["indices"]) for rank in (0, 1))
        assert shards[0][epoch]["kind"] == shards[1][epoch]["kind"] == sampler_kind
        assert len(first) == len(second) == per_rank
        assert not first & second, f"epoch {epoch}: ranks share samples"
        assert first | second <= set(range(train_size))
    assert shards[0][0]["indices"] != shards[0][1]["indices"], "the shard order does not change per epoch"
    for rank in (0, 1):
        trained = read_records(probe / f"trained_rank{rank}.jsonl")
        assert [t["samples"] for t in trained] == [TRAIN_BATCHES * BATCH_SIZE] * MAX_EPOCHS

    # Stage changes: the same values at the same steps on both ranks, a new stage every epoch.
    steps = [read_records(probe / f"steps_rank{rank}.jsonl") for rank in (0, 1)]
    assert len(steps[0]) == MAX_EPOCHS * TRAIN_BATCHES
    assert steps[0] == steps[1]
    sizes = [next(r["image_size"] for r in steps[0] if r["epoch"] == e) for e in range(MAX_EPOCHS)]
    assert sizes == sorted(sizes) and len(set(sizes)) == MAX_EPOCHS

    # Metrics reduced across ranks: val/acc logged by rank 0 = correct / total over both ranks' shards.
    val = [read_records(probe / f"val_rank{rank}.jsonl") for rank in (0, 1)]
    logged = [row for row in logged_rows(run_dir) if row.get("val/acc")]
    assert len(logged) == MAX_EPOCHS, "one val row per epoch: a single writer"
    for epoch, row in enumerate(logged):
        correct = val[0][epoch]["correct"] + val[1][epoch]["correct"]
        total = val[0][epoch]["total"] + val[1][epoch]["total"]
        assert val[0][epoch]["total"] == val[1][epoch]["total"] > 0
        assert float(row["val/acc"]) == pytest.approx(correct / total)

    # Only rank 0 writes checkpoints and the run folder.
    assert read_records(probe / "ckpt_writes_rank0.jsonl"), "rank 0 wrote no checkpoint"
    assert not read_records(probe / "ckpt_writes_rank1.jsonl"), "rank 1 wrote a checkpoint"
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == MAX_EPOCHS * TRAIN_BATCHES
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")], (
        "temporary files left"
    )
    assert (run_dir / "train.log").read_text().count("params (") == 1, "the model summary is logged per rank"
    assert (run_dir / "class_map.json").is_file()


@pytest.mark.subprocess
@pytest.mark.timeout(600)
@pytest.mark.parametrize("workers", [0, 1])
def test_ddp_torch_loader_with_progressive_learning(tmp_path, workers) -> None:
    run_dir, probe = tmp_path / "run", tmp_path / "probe"
    # 80 samples, 10% validation: 72 train samples, 36 per rank, 4 validation samples per rank.
    overrides = ddp_run(run_dir, probe, "data.subset=80", f"data.num_workers={workers}")
    result = run_train(*overrides, timeout=540)
    assert result.returncode == 0, result.stderr[-5000:]
    check_ddp_run(run_dir, probe, train_size=72, per_rank=36, sampler_kind="DistributedSampler")


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_ddp_ffcv_loader_with_progressive_learning(tmp_path, colour_folder) -> None:
    require_module("ffcv", "the ffcv extra")
    run_dir, probe = tmp_path / "run", tmp_path / "probe"
    # 320 generated images (indices 0-319 in the beton), 10% validation: 288 train samples, 144 per rank,
    # 36 whole batches of 4 (FFCV's drop_last drops nothing).
    overrides = [
        "data=image_folder",
        f"data.root={colour_folder}",
        "data.loader=ffcv",
        f"data.beton_dir={tmp_path / 'betons'}",
        "data.subset=null",
        "data.num_workers=2",  # the data config's: RandAugment in 2 worker processes per rank
        "data.image_size=32",
        "data.eval_size=32",
    ]
    result = run_train(*ddp_run(run_dir, probe, *overrides), timeout=540)
    assert result.returncode == 0, result.stderr[-5000:]
    check_ddp_run(run_dir, probe, train_size=320, per_rank=144, sampler_kind="ffcv Random distributed")


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_ddp_sigterm_to_rank_0_saves_once_and_stops_every_rank(tmp_path) -> None:
    """`kill <pid>` of the launching process only: both ranks agree, save one checkpoint, stop together."""
    run_dir, probe, log = tmp_path / "run", tmp_path / "probe", tmp_path / "ddp.log"
    overrides = ddp_run(run_dir, probe, "data.subset=80", "faults.checkpoint_every_n_steps=100")
    process = start_train(*overrides, "+callbacks.steps.pause_at_step=3", log=log)
    wait_for(probe / "paused", process, log)
    process.send_signal(signal.SIGTERM)
    (probe / "release").touch()
    process.wait(timeout=240)
    output = log.read_text()
    assert process.returncode == 128 + signal.SIGTERM, output[-5000:]
    assert "training stopped by SIGTERM at global step 4 (epoch 1)" in output
    steps = [read_records(probe / f"steps_rank{rank}.jsonl") for rank in (0, 1)]
    assert [r["step"] for r in steps[0]] == [r["step"] for r in steps[1]] == [1, 2, 3, 4]
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 4
    writes = read_records(probe / "ckpt_writes_rank0.jsonl")
    assert writes[-1]["path"].endswith("last.ckpt") and not read_records(probe / "ckpt_writes_rank1.jsonl")
    deadline = time.monotonic() + 60
    while group_alive(process.pid):  # rank 1 runs in the same process group
        assert time.monotonic() < deadline, "a rank is still running after rank 0 stopped"
        time.sleep(0.2)


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_ddp_sigterm_to_every_process_with_loader_workers(tmp_path) -> None:
    """SLURM's way: SIGTERM to every process of the job, DataLoader workers included. The workers keep
    serving (`ignore_interrupts_in_worker`), both ranks finish the step, save once and stop."""
    run_dir, probe, log = tmp_path / "run", tmp_path / "probe", tmp_path / "ddp.log"
    overrides = ddp_run(
        run_dir, probe, "data.subset=80", "data.num_workers=1", "faults.checkpoint_every_n_steps=100"
    )
    overrides += ["+callbacks.steps.pause_at_step=3"]
    process = start_train(*overrides, log=log)
    wait_for(probe / "paused", process, log)
    os.killpg(process.pid, signal.SIGTERM)
    (probe / "release").touch()
    process.wait(timeout=240)
    output = log.read_text()
    assert process.returncode == 128 + signal.SIGTERM, output[-5000:]
    assert "Traceback" not in output and "killed by signal" not in output
    assert output.count("error: training stopped by SIGTERM at global step 4 (epoch 1)") == 2  # both ranks
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 4
    assert not read_records(probe / "ckpt_writes_rank1.jsonl")
    deadline = time.monotonic() + 60
    while group_alive(process.pid):  # ranks and workers
        assert time.monotonic() < deadline, "a process is still running after the ranks stopped"
        time.sleep(0.2)


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_ddp_hung_rank_is_an_error_naming_the_rank_and_step(tmp_path) -> None:
    """Rank 1 stalls after step 2; rank 0 waits in the next gradient all-reduce until the process-group
    timeout and fails with one line naming itself and the step, and the job ends."""
    run_dir, probe, log = tmp_path / "run", tmp_path / "probe", tmp_path / "ddp.log"
    overrides = ddp_run(run_dir, probe, "data.subset=80", "trainer.strategy.timeout_s=30")
    overrides += ["+callbacks.stall._target_=helpers.probes.StallRank", f"+callbacks.stall.outdir={probe}"]
    process = start_train(*overrides, log=log)
    process.wait(timeout=400)
    output = log.read_text()
    assert process.returncode not in (0, None), output[-5000:]
    assert re.search(
        r"error: rank 0 of 2 waited 30 s for the other ranks in a collective at global step 2 ", output
    ), output[-5000:]
    deadline = time.monotonic() + 60
    while group_alive(process.pid):
        assert time.monotonic() < deadline, "a rank is still running after the timeout"
        time.sleep(0.2)


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_ddp_sigterm_ends_a_job_waiting_in_a_collective(tmp_path) -> None:
    """Rank 1 stalls, rank 0 waits in a collective (timeout far away): a SIGTERM to the job ends every
    process within the grace time, saying why, instead of being ignored by the blocked main thread."""
    run_dir, probe, log = tmp_path / "run", tmp_path / "probe", tmp_path / "ddp.log"
    overrides = ddp_run(run_dir, probe, "data.subset=80", "faults.signal_grace_s=5")
    overrides += ["+callbacks.stall._target_=helpers.probes.StallRank", f"+callbacks.stall.outdir={probe}"]
    process = start_train(*overrides, log=log)
    wait_for(probe / "stalled", process, log)
    time.sleep(3)  # rank 0 reaches the next collective and blocks there
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=120)
    output = log.read_text()
    assert process.returncode == 128 + signal.SIGTERM, output[-5000:]
    assert "rank 0: SIGTERM received, but training made no step for 5 s (stuck at global step 2" in output
    deadline = time.monotonic() + 60
    while group_alive(process.pid):
        assert time.monotonic() < deadline, "a process is still running after SIGTERM"
        time.sleep(0.2)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
