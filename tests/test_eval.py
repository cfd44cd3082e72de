"""src/eval.py: a checkpoint alone rebuilds model and data, reproduces the run's test top-1, and evaluates
at several sizes and splits."""

from __future__ import annotations

import json
import subprocess

import lightning as L
import pytest
import torch

from effnetv2.checkpoint import read_training_checkpoint as load_checkpoint
from effnetv2.errors import CheckpointError
from effnetv2.training.evaluation import datamodule_for, evaluate, module_from_checkpoint
from effnetv2.training.pipeline import train
from helpers.configs import compose_config
from helpers.runs import run_train
from helpers.tiny import TINY

RUN = [*TINY, "trainer.max_epochs=1", "schedule=fixed", "trainer.limit_test_batches=3"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple:
    """One tiny run (EMA on, so the checkpoint holds averaged weights) shared by the tests below."""
    out = tmp_path_factory.mktemp("eval") / "run"
    metrics = train(compose_config("train", [*RUN, "callbacks=ema", "callbacks.ema.decay=0.5"], out))
    best = next(p for p in (out / "checkpoints").glob("epoch*.ckpt"))
    return out, best, metrics


def run_eval_cli(*args: str) -> subprocess.CompletedProcess:
    return run_train(*args, script="src/eval.py")


def test_checkpoint_describes_model_data_and_eval_size(trained_run) -> None:
    _, best, _ = trained_run
    checkpoint = load_checkpoint(best)  # weights_only=True
    hparams = checkpoint["hyper_parameters"]
    assert hparams["model"]["name"] == "v2_b0" and hparams["num_classes"] == 10 and hparams["in_chans"] == 1
    assert hparams["data"]["source"]["_target_"].endswith("FashionMNIST") and hparams["data"]["subset"] == 64
    assert len(hparams["class_names"]) == 10
    assert checkpoint["eval_size"] == 32


@pytest.mark.subprocess
def test_eval_reproduces_the_runs_test_top1(trained_run, tmp_path) -> None:
    out, best, metrics = trained_run
    result = run_eval_cli(
        f"ckpt_path={best}", "eval.limit_batches=3", "eval.num_workers=0", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads((tmp_path / "eval.json").read_text())
    assert (row["split"], row["size"], row["images"]) == ("test", 32, 24)
    assert row["top1"] == pytest.approx(metrics["test/acc"], abs=1e-3)
    assert row["top5"] == pytest.approx(metrics["test/acc_top5"], abs=1e-3)
    assert row["loss"] == pytest.approx(metrics["test/loss"], abs=1e-3)
    assert "top-1" in result.stdout and f"{row['top1']:.4f}" in result.stdout  # the printed table


def test_eval_at_several_sizes_and_splits(trained_run) -> None:
    _, best, _ = trained_run
    checkpoint = load_checkpoint(best)
    module = module_from_checkpoint(checkpoint)
    datamodule = datamodule_for(checkpoint, None, num_workers=0)
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, limit_test_batches=1, enable_model_summary=False
    )
    results = evaluate(module, datamodule, [24, 40], ["val", "test"], trainer)
    assert [(r.split, r.size) for r in results] == [("val", 24), ("test", 24), ("val", 40), ("test", 40)]
    for result in results:  # recomputed here from the model's outputs on the same images
        datamodule.set_eval_size(result.size)
        loader = datamodule.val_dataloader() if result.split == "val" else datamodule.test_dataloader()
        images, labels = next(iter(loader))  # val: all of it; test: the one batch evaluate() saw
        with torch.no_grad():  # uint8 batches are normalised on the device, as in evaluate()
            top5 = module.eval()(datamodule.normalize(images)).topk(5, dim=1).indices
        assert result.top1 == pytest.approx((top5[:, 0] == labels).float().mean().item(), abs=1e-6)
        assert result.top5 == pytest.approx((top5 == labels[:, None]).any(1).float().mean().item(), abs=1e-6)
    assert {r.images for r in results if r.split == "test"} == {8}  # one batch (limit_test_batches=1)
    assert {r.images for r in results if r.split == "val"} == {6}  # all of val: 10% of the 64 samples
    assert results[0].loss != results[2].loss  # the size really changed what the model saw


def test_eval_uses_the_averaged_weights(trained_run) -> None:
    _, best, _ = trained_run
    checkpoint = load_checkpoint(best)
    module = module_from_checkpoint(checkpoint)
    weight = module.model.classifier.weight
    assert torch.equal(weight, checkpoint["state_dict"]["model.classifier.weight"])
    assert not torch.equal(weight, checkpoint["current_model_state"]["model.classifier.weight"])


@pytest.mark.subprocess
def test_missing_or_foreign_checkpoints_are_clear_errors(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    foreign = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_checkpoint(foreign)
    result = run_eval_cli(f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'out'}")
    assert result.returncode == 1
    assert "error: checkpoint" in result.stderr and "does not exist" in result.stderr
