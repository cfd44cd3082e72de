"""W&B: offline without credentials, one run per Hydra multirun job, names/groups/tags from model,
schedule and data, and the logged keys a dashboard needs (read back from the offline run files)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from google.protobuf.message import DecodeError
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import OmegaConf
from wandb.proto import wandb_internal_pb2

from effnetv2.errors import ConfigError
from effnetv2.training.loggers import (
    finish_wandb,
    prepare_logger_configs,
    resolve_wandb_mode,
    resume_wandb_run,
    wandb_run_config,
)
from effnetv2.training.pipeline import build_module
from helpers.configs import compose_config
from helpers.environment import train_env
from helpers.paths import ROOT
from helpers.runs import run_train
from helpers.tiny import TINY

# The .wandb file is a LevelDB-style log: a 7-byte file header, then 32 KiB blocks of chunks, each with
# a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last), each record a protobuf.
BLOCK_SIZE, CHUNK_HEADER, FILE_HEADER = 32768, 7, 7


def read_wandb_records(path: Path) -> list[wandb_internal_pb2.Record]:
    raw = path.read_bytes()
    assert raw[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, pos = [], b"", FILE_HEADER
    while pos + CHUNK_HEADER <= len(raw):
        left_in_block = BLOCK_SIZE - pos % BLOCK_SIZE
        if left_in_block < CHUNK_HEADER:
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + CHUNK_HEADER])
        if kind == 0:  # zero padding up to the block end
            pos += left_in_block
            continue
        data = raw[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        pending = data if kind in (1, 2) else pending + data
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def finished_run_records(path: Path, timeout_s: float = 60.0) -> list[wandb_internal_pb2.Record]:
    """The records of a run finished in this process: `wandb.finish()` returns before W&B's service
    has flushed the file (under load the test read it empty), so wait for the run's `exit` record."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            records = read_wandb_records(path)
        except DecodeError:  # read while a record was half written
            records = []
        if (records and records[-1].WhichOneof("record_type") == "exit") or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def summarize_run(run_dir: Path) -> dict:
    """Name, group, tags, config keys/values and logged history keys of one offline run folder."""
    (wandb_file,) = run_dir.glob("run-*.wandb")
    summary: dict = {"config": {}, "history": set()}
    for record in read_wandb_records(wandb_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            summary.update(id=run.run_id, name=run.display_name, group=run.run_group, tags=list(run.tags))
        elif kind == "config":
            summary["config"].update({item.key: item.value_json for item in record.config.update})
        elif kind == "history":
            summary["history"].update(item.key or "/".join(item.nested_key) for item in record.history.item)
    return summary


# Mode and config ------------------------------------------------------------------------------------
@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    return monkeypatch


def test_auto_mode_is_offline_without_credentials_and_online_with(no_credentials) -> None:
    assert resolve_wandb_mode("auto") == "offline"
    no_credentials.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    no_credentials.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("auto") == "disabled"


def test_online_without_credentials_falls_back_to_offline(no_credentials, caplog) -> None:
    assert resolve_wandb_mode("online") == "offline"
    assert "needs credentials" in caplog.text
    with pytest.raises(ConfigError, match="choose one of auto, online, offline, disabled"):
        resolve_wandb_mode("cloud")


def test_best_checkpoint_is_uploaded_only_online(no_credentials, tmp_path) -> None:
    """log_model uploads the best (alias "best") and last checkpoints; Lightning refuses it offline."""
    logger_cfg = OmegaConf.create({"wandb": {"mode": "auto", "log_model": True, "save_dir": str(tmp_path)}})
    offline = prepare_logger_configs(logger_cfg)
    assert (offline.wandb.mode, offline.wandb.offline, offline.wandb.log_model) == ("offline", True, False)
    no_credentials.setenv("WANDB_API_KEY", "x" * 40)
    online = prepare_logger_configs(logger_cfg)
    assert (online.wandb.mode, online.wandb.offline, online.wandb.log_model) == ("online", False, True)


def test_run_config_is_flat_with_group_choices() -> None:
    resolved = {"optimizer": {"lr": 0.002, "betas": [0.9, 0.999]}, "seed": 1, "callbacks": {}}
    choices = {"optimizer": "adamw", "schedule": "fixed", "experiment": None, "hydra/launcher": "basic"}
    flat = wandb_run_config(resolved, choices)
    assert flat == {
        "optimizer.lr": 0.002,
        "optimizer.betas": [0.9, 0.999],
        "seed": 1,
        "callbacks": {},
        "optimizer": "adamw",
        "schedule": "fixed",
    }


# A 2x2 multirun ------------------------------------------------------------------------------------------
TINY_MULTIRUN = [
    *TINY,
    "data.batch_size=16",
    "trainer.max_epochs=4",  # progressive: one epoch per stage
    "trainer.limit_train_batches=1",
    "torch_threads=2",
]
LOGGED_KEYS = [
    "train/loss_step",
    "train/loss_epoch",
    "train/images_per_sec",
    "train/image_size",
    "val/acc",
    "val/acc_top5",
    "test/acc",
    "test/acc_top5",
    "lr-AdamW/decay",
    "progressive/stage",
    "progressive/transition",
    "progressive/schedule",
    "train/augmented_images",
    "test/confusion_matrix",
    "test/confusion_matrix_image",
]


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_multirun_jobs_are_separate_named_and_grouped_offline_runs(tmp_path) -> None:
    sweep_dir = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    env.update(NO_ALBUMENTATIONS_UPDATE="1", HOME=str(tmp_path), WANDB_SILENT="true")
    command = [sys.executable, "src/train.py", "-m", "model=v2_b0,v2_b1", "schedule=fixed,progressive"]
    command += ["logger=wandb", *TINY_MULTIRUN, f"hydra.sweep.dir={sweep_dir}"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=580)
    assert result.returncode == 0, result.stderr[-4000:]

    runs = {}
    for job in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()):
        (run_dir,) = (job / "wandb").glob("offline-run-*")  # exactly one run per job
        runs[job.name] = summarize_run(run_dir)
    assert len(runs) == 4
    assert len({run["id"] for run in runs.values()}) == 4

    expected = {(m, s) for m in ("v2_b0", "v2_b1") for s in ("fixed", "progressive")}
    seen = set()
    for run in runs.values():
        model, schedule, data = run["name"].split("-")
        seen.add((model, schedule))
        assert data == "fashion_mnist"
        assert run["group"] == schedule
        assert run["tags"] == [model, schedule, data]
        assert run["config"]["model.name"] == f'"{model}"' and run["config"]["schedule"] == f'"{schedule}"'
        assert "optimizer.lr" in run["config"] and "data.subset" in run["config"]
        logged = run["history"] | {key.rsplit("/", 1)[0] for key in run["history"]}  # media: <key>/<field>
        missing = [key for key in LOGGED_KEYS if key not in logged]
        assert not missing, f"{run['name']}: not logged: {missing}"
    assert seen == expected


@pytest.mark.timeout(300)
def test_online_runs_log_the_best_checkpoint_as_a_model_artifact(
    compose_train, no_credentials, tmp_path
) -> None:
    """The online code path (`log_model: true`), recorded into a local run instead of uploaded: W&B's
    offline mode stores the artifact records that an online run would send."""
    no_credentials.setenv("WANDB_API_KEY", "x" * 40)
    cfg = compose_train([*TINY, "schedule=fixed", "trainer.max_epochs=2", "logger=wandb"])
    online = prepare_logger_configs(cfg.logger).wandb
    assert online.mode == "online" and online.log_model is True
    settings = {k: v for k, v in online.items() if k not in ("_target_", "mode", "save_dir")}
    logger = WandbLogger(**settings, mode="offline", save_dir=str(tmp_path))  # recorded, not uploaded
    datamodule = instantiate(cfg.data)
    checkpoint = instantiate(cfg.callbacks.model_checkpoint, dirpath=str(tmp_path / "checkpoints"))
    assert isinstance(checkpoint, ModelCheckpoint)
    trainer = instantiate(cfg.trainer, callbacks=[checkpoint], logger=logger, enable_progress_bar=False)
    try:
        trainer.fit(build_module(cfg, datamodule), datamodule=datamodule)
    finally:
        finish_wandb()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (wandb_file,) = run_dir.glob("run-*.wandb")
    records = finished_run_records(wandb_file)
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    models = [a for a in artifacts if a.type == "model"]
    assert models, f"no model artifact logged: {[r.WhichOneof('record_type') for r in records]}"
    best = [a for a in models if "best" in a.aliases]
    assert len(best) == 1
    assert Path(checkpoint.best_model_path).name in best[0].metadata


# One W&B run per training run ------------------------------------------------------------------------
def offline_parts(run_dir: Path) -> list[dict]:
    """Each offline run folder under `<run dir>/wandb/`, oldest first: its run id and the
    `trainer/global_step` of each training step it logged (`train/loss_step`)."""
    parts = []
    for folder in (run_dir / "wandb").glob("offline-run-*"):
        (wandb_file,) = folder.glob("run-*.wandb")
        part: dict = {"trained": []}
        for record in read_wandb_records(wandb_file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                part.update(id=record.run.run_id, start=record.run.start_time.ToNanoseconds())
            elif kind == "history":
                items = {
                    item.key or "/".join(item.nested_key): item.value_json for item in record.history.item
                }
                if "train/loss_step" in items:
                    part["trained"].append(int(float(items["trainer/global_step"])))
        parts.append(part)
    return sorted(parts, key=lambda part: part["start"])


def test_a_resume_logs_to_the_wandb_run_of_its_checkpoint_and_a_configured_id_wins(tmp_path) -> None:
    beside = tmp_path / "run" / "checkpoints" / "last.ckpt"  # <run>/wandb_run_id beside <run>/checkpoints
    beside.parent.mkdir(parents=True)
    torch.save({"wandb_run_id": "inckpt"}, beside)
    (tmp_path / "run" / "wandb_run_id").write_text("besideit\n")
    moved = tmp_path / "moved.ckpt"  # out of its run folder: only the id in the checkpoint is left
    torch.save({"wandb_run_id": "inckpt"}, moved)
    old = tmp_path / "old.ckpt"  # written before run ids were kept
    torch.save({"state_dict": {}}, old)

    def run_id(ckpt_path: Path | None, configured: str | None = None) -> str | None:
        logger_cfg = OmegaConf.create({"wandb": {"mode": "offline", "id": configured}})
        resume_wandb_run(logger_cfg, str(ckpt_path) if ckpt_path else None)
        return logger_cfg.wandb.id

    assert run_id(beside) == "besideit"
    assert run_id(moved) == "inckpt"
    assert run_id(old) is None and run_id(None) is None  # wandb.init makes a new run
    assert run_id(beside, configured="mine") == "mine"


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_resumed_training_continues_its_wandb_run(tmp_path) -> None:
    """A first run (2 epochs), its `resume=auto` (to 4 epochs) and a `ckpt_path=` resume from another folder
    (to 5 epochs, with the first folder's wandb_run_id removed, so the id comes from the checkpoint) log to
    one W&B run id, and each part's training steps continue the previous part's."""
    first, other = tmp_path / "first", tmp_path / "other"
    common = [*TINY, "schedule=fixed", "logger=wandb"]
    last = first / "checkpoints" / "last.ckpt"
    runs = [
        [*common, "trainer.max_epochs=2", f"hydra.run.dir={first}", "resume=auto"],
        [*common, "trainer.max_epochs=4", f"hydra.run.dir={first}", "resume=auto"],
        [*common, "trainer.max_epochs=5", f"hydra.run.dir={other}", f"ckpt_path={last}"],
    ]
    for i, overrides in enumerate(runs):
        if i == 2:
            (first / "wandb_run_id").unlink()
        result = run_train(*overrides, env=train_env(HOME=str(tmp_path)))
        assert result.returncode == 0, result.stderr[-4000:]

    parts = offline_parts(first) + offline_parts(other)
    run_id = (other / "wandb_run_id").read_text().strip()
    assert [part["id"] for part in parts] == [run_id] * 3
    # 3 optimizer steps per epoch, logged at the global step before each: epochs 0-1, 2-3 and 4
    assert [part["trained"] for part in parts] == [list(range(6)), list(range(6, 12)), list(range(12, 15))]


def history_rows(run_dir: Path) -> list[dict]:
    """The offline run's history, one dict (key -> value) per logged row."""
    (wandb_file,) = run_dir.glob("run-*.wandb")
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for record in read_wandb_records(wandb_file)
        if record.WhichOneof("record_type") == "history"
    ]


SCHEDULE_KEYS = ("stage", "image_size", "randaug_magnitude", "mixup_alpha", "dropout", "drop_path_rate")


@pytest.mark.subprocess
@pytest.mark.timeout(300)
def test_wandb_history_holds_every_progressive_value_per_epoch(tmp_path) -> None:
    """Every stage differs in every value: each epoch's `progressive/*` row must be its own stage's."""
    run_dir = tmp_path / "run"
    overrides = [
        *TINY,
        "logger=wandb",
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=1",
        "schedule.num_stages=4",
        "schedule.image_size=[16,40]",
        "schedule.randaug_magnitude=[2,14]",
        "schedule.mixup_alpha=[0.0,0.6]",
        "schedule.dropout=[0.1,0.4]",
        "schedule.drop_path_rate=[0.0,0.3]",
    ]
    result = run_train(*overrides, f"hydra.run.dir={run_dir}", env=train_env(HOME=str(tmp_path)))
    assert result.returncode == 0, result.stderr[-4000:]
    schedule = instantiate(compose_config("train", overrides, tmp_path / "composed").schedule)
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    rows = [row for row in history_rows(offline_run) if "progressive/stage" in row]
    assert [row["epoch"] for row in rows] == [0, 1, 2, 3]
    for row in rows:
        expected = schedule.values_at_epoch(row["epoch"], 4)
        assert expected.stage == row["epoch"]  # one stage per epoch: every value changes every epoch
        for key in SCHEDULE_KEYS:
            assert row[f"progressive/{key}"] == pytest.approx(getattr(expected, key)), (key, row)
