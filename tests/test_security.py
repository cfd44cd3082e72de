"""Weights and checkpoints from users are read with `weights_only=True` (or safetensors): a pickle whose
`__reduce__` would run code is refused everywhere a file is loaded, and the code never runs. The payload
writes a marker file; every test checks that the marker does not exist afterwards."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from effnetv2.checkpoint import AtomicCheckpointIO, read_checkpoint
from effnetv2.errors import CheckpointError
from effnetv2.models import create_model
from helpers.environment import train_env
from helpers.runs import run_train
from helpers.tiny import TINY


class Payload:
    """Unpickling this calls exec(): the classic malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def malicious_file(path: Path, marker: Path, content: dict | None = None) -> Path:
    torch.save({**(content or {}), "payload": Payload(marker)}, path)
    return path


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, f"exit {result.returncode}:\n{result.stderr[-4000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    return line


def test_the_payload_runs_when_unpickled_unsafely(tmp_path) -> None:
    """Proves the files below are really malicious: plain unpickling runs the code."""
    marker = tmp_path / "marker"
    path = malicious_file(tmp_path / "evil.ckpt", marker)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


def test_create_model_refuses_malicious_pretrained_weights(tmp_path) -> None:
    marker = tmp_path / "marker"
    weights = create_model("v2_b0", num_classes=10).state_dict()
    path = malicious_file(tmp_path / "weights.pth", marker, {"state_dict": weights})
    with pytest.raises(CheckpointError, match="refused to load .*could run code"):
        create_model("v2_b0", num_classes=10, pretrained=path)
    assert not marker.exists()


def test_checkpoint_io_refuses_even_when_asked_for_unsafe_loading(tmp_path) -> None:
    marker = tmp_path / "marker"
    path = malicious_file(tmp_path / "last.ckpt", marker, {"state_dict": {}, "global_step": 3})
    with pytest.raises(CheckpointError, match=r"refused to load .*Python object \(.*exec\)"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    with pytest.raises(CheckpointError, match="refused to load"):
        read_checkpoint(path)
    assert not marker.exists()


class TinyModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(
    "plugins", [[AtomicCheckpointIO()], []], ids=["our_checkpoint_io", "lightning_default"]
)
def test_trainer_fit_ckpt_path_refuses_a_malicious_checkpoint(tmp_path, plugins) -> None:
    """With our plugin: CheckpointError. Lightning 2.6 alone passes weights_only=None to torch.load, which
    torch >= 2.6 treats as True: refused too, as a raw UnpicklingError."""
    marker = tmp_path / "marker"
    path = malicious_file(tmp_path / "last.ckpt", marker, {"state_dict": TinyModule().state_dict()})
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=plugins,
    )
    loader = DataLoader(TensorDataset(torch.randn(4, 2), torch.tensor([0, 1, 0, 1])), batch_size=2)
    expected = CheckpointError if plugins else pickle.UnpicklingError
    with pytest.raises(expected):
        trainer.fit(TinyModule(), loader, ckpt_path=path)
    assert not marker.exists()


@pytest.mark.subprocess
def test_train_py_refuses_malicious_checkpoints_to_resume_from(tmp_path) -> None:
    """ckpt_path= and resume=auto, with torch's escape hatch TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 set: our
    loaders ask for weights_only=True explicitly, which that variable cannot override."""
    env = train_env(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    marker = tmp_path / "marker"
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    malicious_file(run_dir / "checkpoints" / "last.ckpt", marker, {"state_dict": {}})
    steps = [*TINY, "trainer.max_epochs=1", "schedule=fixed", "trainer.limit_train_batches=1", "test=false"]
    for resume in (f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "resume=auto"):
        line = error_line(run_train(*steps, resume, f"hydra.run.dir={run_dir}", env=env))
        assert "refused to load" in line and "last.ckpt" in line and "could run code" in line
        assert not marker.exists()


@pytest.mark.subprocess
def test_eval_and_predict_refuse_a_malicious_checkpoint(tmp_path) -> None:
    env = train_env(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    marker = tmp_path / "marker"
    path = malicious_file(tmp_path / "evil.ckpt", marker, {"state_dict": {}, "hyper_parameters": {}})
    line = error_line(
        run_train(f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'eval'}", script="src/eval.py", env=env)
    )
    assert "evil.ckpt" in line
    (tmp_path / "images").mkdir()
    overrides = [
        f"checkpoints=[{path}]",
        f"input.folder={tmp_path / 'images'}",
        f"hydra.run.dir={tmp_path / 'p'}",
    ]
    line = error_line(run_train(*overrides, script="src/predict.py", env=env))
    assert "evil.ckpt" in line
    assert not marker.exists()
