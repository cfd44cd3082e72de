"""Optuna sweeps and TensorBoard install without the dev tools: `pip install -e .[sweep]` / `.[loggers]`."""

from __future__ import annotations

import re

import tomllib

from helpers.paths import ROOT


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9_.-]+", spec).group(0).lower() for spec in requirements}


def test_sweep_and_loggers_extras_exist_and_dev_keeps_them() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert requirement_names(extras["sweep"]) == {"hydra-optuna-sweeper"}  # hparams_search=optuna
    assert requirement_names(extras["loggers"]) == {"tensorboard"}  # logger=tensorboard / many
    assert requirement_names(extras["sweep"] + extras["loggers"]) <= requirement_names(extras["dev"])
