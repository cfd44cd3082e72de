"""Sweeps: the Optuna sweeper config runs trials, and the W&B sweep YAML yields commands that src/train.py
accepts, built exactly as the W&B agent builds them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from wandb.sdk.launch.sweeps import utils as sweep_utils

from helpers.paths import ROOT
from helpers.tiny import TINY

SWEEP_FILE = ROOT / "sweeps" / "wandb_sweep.yaml"
SWEEP_RUN = [
    *TINY,
    "data.batch_size=16",
    "trainer.max_epochs=4",  # holds every schedule.num_stages the search tries
    "trainer.limit_train_batches=1",
    "torch_threads=2",
]


def run(command: list[str], tmp_path: Path, timeout: int = 500) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    bin_dir = str(Path(sys.executable).parent)  # the agent runs `python`: this environment's
    env.update(
        NO_ALBUMENTATIONS_UPDATE="1",
        WANDB_MODE="offline",
        HOME=str(tmp_path),
        PATH=f"{bin_dir}:{env['PATH']}",
    )
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# Optuna ------------------------------------------------------------------------------------------------
@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_optuna_search_runs_trials_and_reports_the_best(tmp_path) -> None:
    sweep_dir = tmp_path / "optuna"
    command = [sys.executable, "src/train.py", "hparams_search=optuna", "hydra.sweeper.n_trials=2"]
    command += [*SWEEP_RUN, f"hydra.sweep.dir={sweep_dir}"]
    result = run(command, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {
        "optimizer.lr",
        "optimizer.weight_decay",
        "module.label_smoothing",
        "lr_scheduler.warmup_epochs",
        "schedule.num_stages",
    }
    trials = sorted(p.name for p in sweep_dir.iterdir() if (p / "metrics.json").is_file())
    assert trials == ["0", "1"]
    objectives = [json.loads((sweep_dir / t / "metrics.json").read_text())["val/acc"] for t in trials]
    assert best["best_value"] == pytest.approx(max(objectives))  # the best trial's val/acc, as returned
    first = yaml.safe_load((sweep_dir / "0" / ".hydra" / "overrides.yaml").read_text())
    assert any(o.startswith("optimizer.lr=") for o in first)  # the trial got a sampled value


# W&B sweep ---------------------------------------------------------------------------------------------
def sample_values(spec: dict, pick: int) -> object:
    """One value per parameter, as the sweep controller might choose: the first/last of `values`, or
    the lower/upper end of a distribution."""
    if "values" in spec:
        return spec["values"][pick]
    return (spec["min"], spec["max"])[pick]


def agent_command(sweep: dict, params: dict) -> list[str]:
    """What `wandb agent` executes for one run (wandb/wandb_agent.py, Agent._command_run)."""
    command = sweep_utils.create_sweep_command(list(sweep["command"]))
    sweep_vars = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    sweep_vars.update(interpreter=["python"], program=[sweep["program"]], env=["/usr/bin/env"])
    argv = []
    for part in map(str, command):
        if part.startswith("${") and part.endswith("}"):
            argv += sweep_vars.get(part[2:-1]) or []
        else:
            argv.append(part)
    return argv


def test_wandb_sweep_file_drives_src_train() -> None:
    sweep = yaml.safe_load(SWEEP_FILE.read_text())
    assert (ROOT / sweep["program"]).is_file()
    assert sweep["metric"] == {"name": "val/acc", "goal": "maximize"}
    assert "${args_no_hyphens}" in sweep["command"]


@pytest.mark.subprocess
@pytest.mark.timeout(300)
@pytest.mark.parametrize("pick", [0, -1])
def test_wandb_sweep_commands_compose(tmp_path, pick: int) -> None:
    sweep = yaml.safe_load(SWEEP_FILE.read_text())
    params = {name: sample_values(spec, pick) for name, spec in sweep["parameters"].items()}
    argv = agent_command(sweep, params)
    assert argv[:3] == ["/usr/bin/env", "python", "src/train.py"]
    result = run([*argv, "--cfg", "job", "--resolve"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    cfg = yaml.safe_load(result.stdout)
    assert cfg["optimizer"]["lr"] == pytest.approx(params["optimizer.lr"])
    assert cfg["optimizer"]["weight_decay"] == pytest.approx(params["optimizer.weight_decay"])
    assert cfg["module"]["label_smoothing"] == params["module.label_smoothing"]
    expected_optimizer = {"adamw": "torch.optim.AdamW", "rmsprop_tf": "effnetv2.training.optim.RMSpropTF"}
    assert cfg["optimizer"]["_target_"] == expected_optimizer[params["optimizer"]]
    assert cfg["schedule"]["num_stages"] == (1 if params["schedule"] == "fixed" else 4)
    assert "wandb" in cfg["logger"]


@pytest.mark.subprocess
@pytest.mark.timeout(300)
def test_wandb_sweep_command_trains(tmp_path) -> None:
    sweep = yaml.safe_load(SWEEP_FILE.read_text())
    params = {name: sample_values(spec, 0) for name, spec in sweep["parameters"].items()}
    run_dir = tmp_path / "run"
    result = run([*agent_command(sweep, params), *SWEEP_RUN, f"hydra.run.dir={run_dir}"], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (run_dir / "metrics.json").is_file()
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
