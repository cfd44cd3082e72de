"""Sweeps survive a bad job: in a multirun (-m), a job stopped by a user error is reported in
<job dir>/error.txt and the job log, the sweep goes on, and it ends with one summary line and exit
status 1."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from effnetv2.multirun import JobFailure, ReportFailedJobs
from helpers.runs import run_train
from helpers.tiny import TINY

pytest_plugins = ["fixtures_data"]

# A few steps on the images of tiny_folder resized to 16x16 (12 images, no test split).
IMAGE_FOLDER = [*TINY, "data=image_folder", "data.subset=null", "data.image_size=16", "data.eval_size=16"]


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.subprocess
@pytest.mark.timeout(300)
def test_a_job_with_a_user_error_does_not_end_the_sweep(tiny_folder: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    roots = f"data.root={tmp_path / 'missing'},{tiny_folder}"
    overrides = [*IMAGE_FOLDER, "trainer.max_epochs=1", "schedule=fixed", "trainer.limit_train_batches=1"]
    result = run_train("-m", *overrides, roots, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 1, result.stderr[-4000:]
    assert error_lines(result) == [f"error: 1 of 2 jobs failed: see {sweep_dir / '0' / 'error.txt'}"]

    failed, trained = sweep_dir / "0", sweep_dir / "1"
    error = (failed / "error.txt").read_text()
    assert f"{tmp_path / 'missing' / 'train'} does not exist" in error and "data.root=" in error
    assert error.strip() in (failed / "train.log").read_text()  # logged in the job's log too
    assert not (failed / "metrics.json").exists()
    assert "val/acc" in json.loads((trained / "metrics.json").read_text())
    assert not (trained / "error.txt").exists()


@pytest.mark.subprocess
@pytest.mark.timeout(300)
@pytest.mark.parametrize("user_error", [True, False], ids=["user_error", "other_exception"])
def test_optuna_study_goes_on_after_a_failed_trial(
    tiny_folder: Path, tmp_path: Path, user_error: bool
) -> None:
    """The first trial fails (a probe callback raises), the second still runs and the study reports its
    best trial: a user error ends its trial only, another exception too with conf/hparams_search/optuna.yaml's
    max_failure_rate (error.txt then holds its traceback)."""
    sweep_dir = tmp_path / "optuna"
    overrides = [
        *IMAGE_FOLDER,
        f"data.root={tiny_folder}",
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=1",
    ]
    overrides += ["+callbacks.fail_first._target_=helpers.probes.FailFirstJob"]
    overrides += [f"+callbacks.fail_first.marker={tmp_path / 'failed_once'}"]
    overrides += [f"+callbacks.fail_first.user_error={str(user_error).lower()}"]
    command = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *overrides]
    result = run_train(*command, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 1, result.stderr[-4000:]
    assert error_lines(result) == [f"error: 1 of 2 jobs failed: see {sweep_dir / '0' / 'error.txt'}"]
    error = (sweep_dir / "0" / "error.txt").read_text()
    assert ("" if user_error else "RuntimeError: ") + "FailFirstJob stopped the first job" in error
    assert (sweep_dir / "1" / "metrics.json").is_file()
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert 0.0 <= best["best_value"] <= 1.0


def test_summary_names_every_failed_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The summary counts user errors (a returned JobFailure) and other exceptions (a failed job, its
    traceback in error.txt); several failed jobs are named by one shell pattern."""
    report = ReportFailedJobs()
    returns = {
        "0": JobReturn(status=JobStatus.COMPLETED, _return_value=JobFailure("data.root is required")),
        "1": JobReturn(status=JobStatus.COMPLETED, _return_value=0.5),
        "2": JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("CUDA out of memory")),
    }
    for name, job_return in returns.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "error.txt").write_text("from an earlier sweep")
        config = OmegaConf.create(
            {"hydra": {"mode": RunMode.MULTIRUN, "runtime": {"output_dir": str(tmp_path / name)}}}
        )
        report.on_job_start(config)
        report.on_job_end(config, job_return)
    with pytest.raises(SystemExit) as stop:
        report.on_multirun_end(config)
    assert stop.value.code == 1
    assert capsys.readouterr().err == f"error: 2 of 3 jobs failed: see {tmp_path}/{{0,2}}/error.txt\n"
    assert (tmp_path / "0" / "error.txt").read_text() == "data.root is required\n"
    assert not (tmp_path / "1" / "error.txt").exists()
    assert "RuntimeError: CUDA out of memory" in (tmp_path / "2" / "error.txt").read_text()
