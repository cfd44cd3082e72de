"""Weight import: equivalence with timm and torchvision (random-initialised peers, no download), our own
plain and Lightning checkpoints, class-count and input-channel adaptation, and the errors for bad files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from effnetv2.errors import CheckpointError
from effnetv2.models import EfficientNetV2, create_model

torch.set_num_threads(2)

SIZES = (64, 97)  # even: TF "same" pads asymmetrically at stride 2; odd: it pads symmetrically
TF_OPTIONS = {"padding": "same", "bn_eps": 1e-3}


def randomise_batchnorm(model: nn.Module, size: int = 64, seed: int = 0) -> nn.Module:
    """Random BN affine parameters and data-derived running statistics, so a mapping error shows.

    The statistics come from one train-mode pass over random images (what training would store),
    then each layer's variances are floored at their mean: with the 2x2 maps of the last stages
    some channels have almost no variance, and dividing by it would make a random network chaotic
    (float32 rounding amplified beyond any tolerance) instead of well-conditioned like a trained one.
    """
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.copy_(torch.rand(norm.weight.shape, generator=generator) + 0.5)
            norm.bias.copy_(torch.randn(norm.bias.shape, generator=generator) * 0.1)
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average: after one pass, the batch statistics
        model.train()
        model(torch.randn(8, 3, size, size, generator=generator))
        for norm in norms:
            norm.running_var.clamp_(min=norm.running_var.mean().item())
            norm.momentum = 0.1
    return model.eval()


def timm_peer(name: str) -> Callable[[], nn.Module]:
    return lambda: timm.create_model(name, pretrained=False)


def torchvision_peer(name: str) -> Callable[[], nn.Module]:
    # stochastic depth off so the calibration pass sees every block, as evaluation does
    return lambda: getattr(torchvision.models, name)(weights=None, stochastic_depth_prob=0.0)


def save_state_dict(model: nn.Module, path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    else:
        torch.save(model.state_dict(), path)
    return path


def assert_equivalent(ours: nn.Module, peer: nn.Module) -> None:
    """Eval logits agree to 1e-4 at both sizes, and depend on the input (so the check can fail)."""
    ours.eval()
    peer.eval()
    for size in SIZES:
        images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            expected, actual = peer(images), ours(images)
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4)
        assert (expected[0] - expected[1]).abs().max() > 1e-3  # 10x the tolerance


def case(library: str, peer: str, name: str, options: dict, suffix: str, slow: bool = False):
    """One equivalence case; the id reads like `timm-tf_efficientnetv2_b0`."""
    build = timm_peer(peer) if library == "timm" else torchvision_peer(peer)
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(build, name, options, suffix, id=f"{library}-{peer}", marks=marks)


TIMM_OPTIONS = {"bn_eps": 1e-5}  # timm's plain (non-tf_) models: symmetric padding, eps 1e-5
TORCHVISION_OPTIONS = {"bn_eps": 1e-3}
EQUIVALENCE_CASES = [
    case("timm", "efficientnetv2_s", "v2_s", TIMM_OPTIONS, ".pth"),
    case("timm", "efficientnetv2_m", "v2_m", TIMM_OPTIONS, ".bin"),
    case("timm", "tf_efficientnetv2_s", "v2_s", TF_OPTIONS, ".pth"),
    case("timm", "tf_efficientnetv2_b0", "v2_b0", TF_OPTIONS, ".safetensors"),
    case("timm", "tf_efficientnetv2_b1", "v2_b1", TF_OPTIONS, ".pt"),
    case("timm", "tf_efficientnetv2_b2", "v2_b2", TF_OPTIONS, ".pth"),
    case("timm", "tf_efficientnetv2_b3", "v2_b3", TF_OPTIONS, ".pth"),
    case("torchvision", "efficientnet_v2_s", "v2_s", TORCHVISION_OPTIONS, ".pth"),
    case("timm", "efficientnetv2_l", "v2_l", TIMM_OPTIONS, ".pth", slow=True),
    case("timm", "tf_efficientnetv2_xl", "v2_xl", TF_OPTIONS, ".safetensors", slow=True),
    case("torchvision", "efficientnet_v2_m", "v2_m", TORCHVISION_OPTIONS, ".pth", slow=True),
    case("torchvision", "efficientnet_v2_l", "v2_l", TORCHVISION_OPTIONS, ".pth", slow=True),
]


@pytest.mark.parametrize(("build_peer", "name", "options", "suffix"), EQUIVALENCE_CASES)
def test_peer_weights_give_the_same_logits(
    build_peer: Callable[[], nn.Module], name: str, options: dict, suffix: str, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    peer = randomise_batchnorm(build_peer())
    path = save_state_dict(peer, tmp_path / f"peer{suffix}")
    untouched = create_model(name, **options).eval()
    with torch.no_grad():
        images = torch.randn(2, 3, SIZES[0], SIZES[0])
        assert (untouched(images) - peer(images)).abs().max() > 1e-2  # the load below must do the work
    del untouched
    assert_equivalent(create_model(name, pretrained=path, **options), peer)


def test_own_plain_and_lightning_checkpoints_round_trip(tmp_path: Path) -> None:
    source = randomise_batchnorm(create_model("v2_b0", num_classes=10))
    state = source.state_dict()
    plain = save_state_dict(source, tmp_path / "plain.pth")
    lightning = tmp_path / "last.ckpt"
    torch.save(
        {
            "epoch": 3,
            "pytorch-lightning_version": "2.6.6",
            "state_dict": {f"model.{key}": value for key, value in state.items()},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}],
        },
        lightning,
    )
    compiled = tmp_path / "compiled.pt"  # keys of a torch.compile'd model inside a LightningModule
    torch.save({f"model._orig_mod.{key}": value for key, value in state.items()}, compiled)
    for path in (plain, lightning, compiled):
        loaded = create_model("v2_b0", num_classes=10, pretrained=path)
        for key, value in loaded.state_dict().items():
            torch.testing.assert_close(value, state[key], msg=f"{path.name}: {key}")


def test_real_lightning_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    lightning = pytest.importorskip("lightning")

    class Wrapper(lightning.LightningModule):
        def __init__(self, name: str, num_classes: int) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.model = create_model(name, num_classes=num_classes)

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            images, targets = batch
            return nn.functional.cross_entropy(self.model(images), targets)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.TensorDataset(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    module = Wrapper("v2_b0", 4)
    trainer = lightning.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    path = tmp_path / "trained.ckpt"
    trainer.save_checkpoint(path)
    loaded = create_model("v2_b0", num_classes=4, pretrained=path)
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, module.model.state_dict()[key], msg=key)


def test_other_num_classes_reinitialises_only_the_classifier(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = randomise_batchnorm(create_model("v2_b0"))
    path = save_state_dict(source, tmp_path / "imagenet.pth")
    with caplog.at_level(logging.WARNING):
        model = create_model("v2_b0", num_classes=10, pretrained=path).eval()
    assert "classifier re-initialised" in caplog.text
    assert model.classifier.weight.shape == (10, 1280)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(images), source.forward_features(images))


def test_one_channel_stem_equals_rgb_model_on_replicated_grey(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rgb = randomise_batchnorm(create_model("v2_b0", num_classes=10))
    path = save_state_dict(rgb, tmp_path / "rgb.pth")
    with caplog.at_level(logging.WARNING):
        grey = create_model("v2_b0", num_classes=10, in_chans=1, pretrained=path).eval()
    assert "from 3 to 1 input channels" in caplog.text
    images = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(grey(images), rgb(images.expand(-1, 3, -1, -1)), rtol=0, atol=1e-4)


def test_four_channel_stem_repeats_and_rescales(tmp_path: Path) -> None:
    rgb = create_model("v2_b0")
    path = save_state_dict(rgb, tmp_path / "rgb.pth")
    four = create_model("v2_b0", in_chans=4, pretrained=path)
    weight = rgb.stem.conv.weight
    expected = torch.cat([weight, weight[:, :1]], dim=1) * 3 / 4
    torch.testing.assert_close(four.stem.conv.weight, expected)


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(CheckpointError, match="not found") as error:
        create_model("v2_b0", pretrained=missing)
    assert str(missing) in str(error.value)


@pytest.mark.parametrize("damage", ["truncated", "not_torch"])
def test_unreadable_weights_file_is_named_with_the_fix(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "weights.pth"
    torch.save(create_model("v2_b0").state_dict(), path)
    path.write_bytes(path.read_bytes()[:5000] if damage == "truncated" else b"plain text, not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read .*pretrained=null") as error:
        create_model("v2_b0", pretrained=path)
    assert str(path) in str(error.value)


class RunsCodeWhenUnpickled:
    """A pickle payload that would create a file if anything unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def test_pickle_with_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    state = create_model("v2_b0").state_dict()
    torch.save({"state_dict": state, "payload": RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(CheckpointError, match="refused") as error:
        create_model("v2_b0", pretrained=path)
    assert str(path) in str(error.value)
    assert not marker.exists()


def test_checkpoint_of_another_variant_lists_the_mismatches(tmp_path: Path) -> None:
    path = save_state_dict(create_model("v2_b0"), tmp_path / "b0.pth")
    with pytest.raises(CheckpointError) as error:
        create_model("v2_b2", pretrained=path)
    message = str(error.value)
    assert str(path) in message and "v2_b2" in message
    assert "missing stages.0.1.fused.conv.weight" in message  # B2 has 2 blocks in stage 0, B0 one
    listed = [line for line in message.splitlines() if line.startswith("  ") and "more" not in line]
    assert len(listed) == 10
    assert "... and" in message and "more" in message


def test_timm_checkpoint_into_another_variant_is_refused(tmp_path: Path) -> None:
    path = save_state_dict(timm.create_model("tf_efficientnetv2_b0", pretrained=False), tmp_path / "b0.pth")
    with pytest.raises(CheckpointError, match="timm layout"):
        create_model("v2_b1", pretrained=path)


def test_unrecognised_layout_and_suffix_are_refused(tmp_path: Path) -> None:
    odd = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, odd)
    with pytest.raises(CheckpointError, match="unrecognised weights layout"):
        create_model("v2_b0", pretrained=odd)
    text = tmp_path / "weights.txt"
    text.write_text("not weights")
    with pytest.raises(CheckpointError, match="unsupported weights file type"):
        create_model("v2_b0", pretrained=text)


def test_pretrained_accepts_a_string_path(tmp_path: Path) -> None:
    source = create_model("v2_b0")
    path = save_state_dict(source, tmp_path / "b0.pth")
    loaded = create_model("v2_b0", pretrained=str(path))
    assert isinstance(loaded, EfficientNetV2)
    torch.testing.assert_close(loaded.head.conv.weight, source.head.conv.weight)
