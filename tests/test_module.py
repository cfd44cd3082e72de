"""ClassificationModule: loss, metrics, EMA, memory format, compile, trainer switches, and a smoke run of
every model and every schedule."""

from __future__ import annotations

import csv
import json

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint

from effnetv2.data.mixup import MixupCutmix
from effnetv2.training.callbacks.ema import EMAWeightAveraging
from effnetv2.training.callbacks.progress_bar import StageProgressBar
from effnetv2.training.callbacks.progressive import ProgressiveLearning
from effnetv2.training.module import ClassificationModule
from effnetv2.training.pipeline import build_module, train
from helpers.paths import CONF_DIR
from helpers.tiny import TINY

B0 = {"_target_": "effnetv2.models.create_model", "name": "v2_b0", "drop_rate": 0.0, "drop_path_rate": 0.0}
ADAMW = {"_target_": "torch.optim.AdamW", "lr": 1e-3, "weight_decay": 0.05}
COSINE = {"name": "cosine", "warmup_epochs": 0}
ONE_EPOCH = [*TINY, "trainer.max_epochs=1", "schedule=fixed"]  # one epoch: one stage


def make_module(**kwargs) -> ClassificationModule:
    options = dict(model=B0, optimizer=ADAMW, lr_scheduler=COSINE, num_classes=10, in_chans=1)
    return ClassificationModule(**{**options, **kwargs})


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


# Loss ------------------------------------------------------------------------------------------------
def test_loss_is_cross_entropy_with_label_smoothing() -> None:
    torch.manual_seed(0)
    module = make_module(label_smoothing=0.1).eval()  # eval: no dropout, BN running stats
    images, targets = torch.randn(4, 1, 32, 32), torch.tensor([0, 3, 3, 9])
    loss = module.training_step((images, targets), 0)
    expected = F.cross_entropy(module(images), targets, label_smoothing=0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixup_and_cutmix_train_on_soft_targets(mixup: float, cutmix: float) -> None:
    torch.manual_seed(0)
    module = make_module(label_smoothing=0.1).eval()
    module.mixup = MixupCutmix(10, mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=0.1, seed=3)
    reference = MixupCutmix(10, mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=0.1, seed=3)
    images, targets = torch.randn(4, 1, 32, 32), torch.tensor([0, 3, 5, 9])
    loss = module.training_step((images, targets), 0)
    mixed, soft = reference(images, targets)
    assert ((soft > 0.0101).sum(dim=1) == 2).all()  # every row mixes its class with its partner's
    expected = -(soft * module(mixed).log_softmax(dim=-1)).sum(dim=-1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_stage_setters_reach_mixup_and_model() -> None:
    module = make_module()
    module.set_mixup_alpha(0.3)
    module.set_cutmix_alpha(0.7)
    module.set_dropout(0.25)
    module.set_drop_path_rate(0.1)
    assert (module.mixup.mixup_alpha, module.mixup.cutmix_alpha) == (0.3, 0.7)
    assert module.model.dropout_rate == 0.25 and module.model.drop_path_rate == 0.1


# Metrics -------------------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_test_metrics_agree_with_the_confusion_matrix(compose_train, tmp_path) -> None:
    out = tmp_path / "run"
    metrics = train(compose_train([*ONE_EPOCH, "trainer.limit_test_batches=3"], output_dir=out))
    with open(out / "confusion_matrix.csv") as file:
        rows = list(csv.reader(file))
    names = rows[0][1:]
    matrix = torch.tensor([[int(v) for v in row[1:]] for row in rows[1:]])
    assert [row[0] for row in rows[1:]] == names and len(names) == 10
    assert int(matrix.sum()) == 3 * 8  # three test batches of TINY's batch size
    assert metrics["test/acc"] == pytest.approx(matrix.trace().item() / matrix.sum().item())
    for i, name in enumerate(names):
        if matrix[i].sum() > 0:
            assert metrics[f"test/acc_class/{name}"] == pytest.approx((matrix[i, i] / matrix[i].sum()).item())
    assert metrics["test/acc"] <= metrics["test/acc_top5"] <= 1.0
    assert torch.equal(torch.load(out / "confusion_matrix.pt"), matrix)
    assert (out / "confusion_matrix.png").stat().st_size > 0


# EMA -----------------------------------------------------------------------------------------------
class RecordWeights(L.Callback):
    """The classifier weight after every optimizer step, and the one validation computes with."""

    def __init__(self) -> None:
        self.after_step: list[torch.Tensor] = []
        self.in_validation: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.after_step.append(pl_module.model.classifier.weight.detach().clone())

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.in_validation.append(pl_module.model.classifier.weight.detach().clone())


def expected_ema(weights: list[torch.Tensor], decay: float) -> torch.Tensor:
    """torch.optim.swa_utils.AveragedModel with an EMA: the first update copies, then decays."""
    ema = weights[0]
    for weight in weights[1:]:
        ema = decay * ema + (1 - decay) * weight
    return ema


@pytest.mark.timeout(300)
def test_ema_weights_are_validated_checkpointed_and_tested(compose_train, tmp_path) -> None:
    cfg = compose_train([*ONE_EPOCH, "trainer.limit_train_batches=3", "callbacks=ema"])
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    recorder = RecordWeights()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/acc", mode="max", save_last=True)
    callbacks = [
        ProgressiveLearning(instantiate(cfg.schedule)),
        EMAWeightAveraging(decay=0.5, warmup=False),  # the fixed-decay formula of expected_ema
        recorder,
        checkpoint,
    ]
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=3, limit_val_batches=1, limit_test_batches=1,
        num_sanity_val_steps=0, callbacks=callbacks, logger=False, enable_progress_bar=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)

    ema = expected_ema(recorder.after_step, decay=0.5)
    raw = recorder.after_step[-1]
    assert not torch.allclose(ema, raw)
    assert torch.allclose(recorder.in_validation[0], ema, atol=1e-6)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert torch.allclose(saved["state_dict"]["model.classifier.weight"], ema, atol=1e-6)
    assert torch.allclose(saved["current_model_state"]["model.classifier.weight"], raw, atol=1e-6)

    trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint.best_model_path)
    assert torch.allclose(module.model.classifier.weight, ema, atol=1e-6)


# Memory format and compile ---------------------------------------------------------------------------
def test_channels_last_gives_the_same_outputs() -> None:
    torch.manual_seed(0)
    plain = make_module().eval()
    fast = make_module(channels_last=True).eval()
    fast.load_state_dict(plain.state_dict())
    conv = next(m for m in fast.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fast(images), plain(images), atol=1e-5)


def test_compile_switch_compiles_in_place_and_keeps_checkpoint_keys() -> None:
    compiled, plain = make_module(compile=True), make_module()
    assert compiled.model._compiled_call_impl is not None
    assert plain.model._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(plain.state_dict())  # loads with or without compile


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_compiled_model_trains_and_matches_eager() -> None:
    torch.manual_seed(0)
    eager = make_module().eval()
    compiled = make_module(compile=True).eval()
    compiled.load_state_dict(eager.state_dict())
    images = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(compiled(images), eager(images), atol=1e-4)


def test_learning_rate_scales_with_batch_accumulation_and_devices(compose_train, tmp_path) -> None:
    overrides = [*ONE_EPOCH, "trainer.limit_train_batches=2", "trainer.accumulate_grad_batches=2"]
    overrides += ["trainer.gradient_clip_val=0.5", "trainer.precision=bf16-mixed", "optimizer=adamw"]
    out = tmp_path / "run"
    cfg = compose_train(overrides, output_dir=out)
    train(cfg)
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 1  # 2 batches, one optimizer step per 2
    groups = saved["optimizer_states"][0]["param_groups"]
    for group in groups:
        assert group["initial_lr"] == pytest.approx(cfg.optimizer.lr * cfg.data.batch_size * 2 / 256)
    assert {g["name"]: g["weight_decay"] for g in groups} == {
        "decay": cfg.optimizer.weight_decay,
        "no_decay": 0,
    }


# Progress bar --------------------------------------------------------------------------------------
def test_progress_bar_shows_stage_and_image_size(compose_train, tmp_path) -> None:
    cfg = compose_train([*ONE_EPOCH, "trainer.max_epochs=2", "schedule.num_stages=2"])
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    bar = StageProgressBar()
    progressive = ProgressiveLearning(instantiate(cfg.schedule))
    trainer = L.Trainer(
        max_epochs=2, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0, logger=False,
        callbacks=[progressive, bar], enable_checkpointing=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    items = bar.get_metrics(trainer, module)
    assert items["stage"] == "2/2"
    assert items["size"] == progressive.applied.image_size == 32
    assert "train/image_size" not in items


# Every model and every schedule ------------------------------------------------------------------------
FAST = ["debug=fast", "data.batch_size=2", "logger=csv"]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("schedule", options("schedule"))
def test_fast_dev_run_of_every_schedule(compose_train, schedule: str) -> None:
    """At the schedule's own sizes (paper presets: 128-192 px train, 384-480 px eval)."""
    metrics = train(compose_train([*FAST, "model=v2_b0", f"schedule={schedule}"]))
    correct = metrics["test/acc"] * 2  # fast_dev_run tests one batch of 2
    assert (
        correct == pytest.approx(round(correct), abs=1e-4) and metrics["test/acc"] <= metrics["test/acc_top5"]
    )
    first_size = instantiate(compose_train([f"schedule={schedule}"]).schedule).stage_size(0)
    assert metrics["train/image_size"] == first_size


LARGE = ("v2_l", "v2_xl")  # 118M / 208M parameters: minutes on two cores even at 16 px


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "model", [pytest.param(m, marks=pytest.mark.slow) if m in LARGE else m for m in options("model")]
)
def test_fast_dev_run_of_every_model(compose_train, tmp_path, model: str) -> None:
    """Every variant builds, trains one step, validates and tests (16 px, batch 2: large ones too)."""
    out = tmp_path / "run"
    overrides = [*FAST, f"model={model}", "schedule=progressive", "schedule.image_size=[16,32]"]
    metrics = train(compose_train(overrides, output_dir=out))
    assert metrics["train/image_size"] == 16
    assert json.loads((out / "metrics.json").read_text())["test/acc"] == pytest.approx(metrics["test/acc"])
