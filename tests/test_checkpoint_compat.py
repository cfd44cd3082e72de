"""Checkpoints written before a class moved still load for eval, predict, export and resume.

A checkpoint stores the configs it was built from, `_target_` paths included (the model, data and
optimizer configs in `hyper_parameters`); Lightning keys callback state by the class's qualified name,
which holds no module path. A fresh checkpoint's stored targets are rewritten to the paths of the
layout before the restructure (below) and loaded every way a checkpoint is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import get_object

from effnetv2.checkpoint import read_checkpoint, read_training_checkpoint
from effnetv2.inference.checkpoint import load_classifier
from effnetv2.inference.export import export_torchscript, torchscript_logits
from effnetv2.target_aliases import TARGET_ALIASES, with_current_targets
from effnetv2.training.evaluation import run_eval
from effnetv2.training.pipeline import instantiate_group, train
from helpers.configs import compose_config
from helpers.tiny import TINY

RUN = [*TINY, "trainer.max_epochs=1", "schedule=fixed", "optimizer=rmsprop_tf"]
# Where each `_target_` a checkpoint stores pointed before the restructure (hyper_parameters key ->
# path). A target stored in a new place fails `test_the_old_paths_cover_every_stored_target`.
OLD_TARGETS = {
    "model": "effnetv2.models.create_model",
    "data": "effnetv2.data.datamodule.ImageDataModule",
    "optimizer": "effnetv2.training.optim.RMSpropTF",
}
# The data source is a Hydra-built node now; before, `data.source` held the source's kind name.
OLD_SOURCE = "fashion_mnist"


def stored_targets(config: Any, where: str = "") -> dict[str, str]:
    """`{location: _target_}` of every `_target_` in a nested config."""
    found = {}
    if isinstance(config, dict):
        if isinstance(config.get("_target_"), str):
            found[where] = config["_target_"]
        for key, value in config.items():
            found.update(stored_targets(value, f"{where}.{key}" if where else str(key)))
    return found


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(run folder, its last.ckpt, the same checkpoint with the old targets) of one tiny run."""
    run_dir = tmp_path_factory.mktemp("compat") / "run"
    train(compose_config("train", RUN, run_dir))
    fresh = run_dir / "checkpoints" / "last.ckpt"
    content = torch.load(fresh, map_location="cpu", weights_only=True)
    for key, old in OLD_TARGETS.items():
        content["hyper_parameters"][key]["_target_"] = old
    content["hyper_parameters"]["data"]["source"] = OLD_SOURCE
    old = run_dir.parent / "old_targets.ckpt"
    torch.save(content, old)
    return run_dir, fresh, old


def test_the_old_paths_cover_every_stored_target(checkpoints) -> None:
    _, fresh, old = checkpoints
    raw = torch.load(fresh, map_location="cpu", weights_only=True)
    assert set(stored_targets(raw["hyper_parameters"])) == {*OLD_TARGETS, "data.source"}
    rewritten = torch.load(old, map_location="cpu", weights_only=True)
    assert stored_targets(rewritten["hyper_parameters"]) == OLD_TARGETS
    # read through the checkpoint module, every stored target names a class or function that exists
    for target in stored_targets(read_checkpoint(old)["hyper_parameters"]).values():
        assert callable(get_object(target)), target


def test_predict_and_export_load_a_checkpoint_with_the_old_targets(checkpoints, tmp_path) -> None:
    _, fresh, old = checkpoints
    images = torch.rand(2, 1, 32, 32)
    new_classifier, old_classifier = load_classifier(fresh), load_classifier(old)
    assert old_classifier.class_names == new_classifier.class_names
    with torch.no_grad():
        assert torch.equal(old_classifier.model(images), new_classifier.model(images))
    path = export_torchscript(old_classifier, 32, tmp_path / "model.pt")
    expected = new_classifier.model(images).detach().numpy()
    assert torchscript_logits(path, images) == pytest.approx(expected, abs=1e-4)


def test_eval_loads_a_checkpoint_with_the_old_targets(checkpoints, tmp_path) -> None:
    _, fresh, old = checkpoints
    results = {}
    for name, path in (("fresh", fresh), ("old", old)):
        overrides = [f"ckpt_path={path}", "eval.limit_batches=1", "eval.num_workers=0"]
        run_eval(compose_config("eval", overrides, tmp_path / name))
        results[name] = json.loads((tmp_path / name / "eval.json").read_text())
    assert results["old"] == results["fresh"]


def test_training_resumes_from_a_checkpoint_with_the_old_targets(checkpoints, tmp_path) -> None:
    _, _, old = checkpoints
    out = tmp_path / "resumed"
    train(compose_config("train", [*RUN, "trainer.max_epochs=2", f"ckpt_path={old}"], out))
    resumed = read_training_checkpoint(out / "checkpoints" / "last.ckpt")
    assert resumed["epoch"] == 1 and resumed["global_step"] == 6  # two epochs of three steps (TINY)


def test_old_callback_targets_in_a_config_still_instantiate(compose_train) -> None:
    """Users' own configs name callbacks by `_target_` too (docs/finetune.md shows one)."""
    cfg = compose_train([])
    old_names = {
        "progressive": "effnetv2.training.callbacks.ProgressiveLearning",
        "last_checkpoint": "effnetv2.training.faults.LastCheckpoint",
        "nonfinite_loss": "effnetv2.training.faults.NonFiniteLossGuard",
    }
    for key, target in old_names.items():
        cfg.callbacks[key]._target_ = target
    names = {type(callback).__name__ for callback in instantiate_group(cfg.callbacks)}
    assert {"ProgressiveLearning", "LastCheckpoint", "NonFiniteLossGuard"} <= names


def test_every_alias_names_an_existing_class() -> None:
    for old, new in TARGET_ALIASES.items():
        assert old.rsplit(".", 1)[1] == new.rsplit(".", 1)[1]
        assert isinstance(get_object(new), type), new
    stored = {"model": {"_target_": "effnetv2.training.faults.LastCheckpoint", "every": [1]}}
    assert with_current_targets(stored) == {
        "model": {"_target_": "effnetv2.training.callbacks.checkpoints.LastCheckpoint", "every": [1]}
    }
