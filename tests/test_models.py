"""EfficientNetV2 architecture and behaviour: sizes, train-mode gradients, runtime regularisation setters,
feature outputs, memory formats, summary, configs. Weight import and peer equivalence: test_model_weights.py.
"""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from effnetv2.errors import ConfigError
from effnetv2.models import EfficientNetV2, create_model, format_summary, list_models, model_summary
from effnetv2.models.blocks import FusedMBConv, MBConv, StochasticDepth, tf_same_padding
from effnetv2.models.factory import DEFAULT_OVERRIDES
from effnetv2.models.variants import VARIANTS

torch.set_num_threads(2)

# Exact parameter counts with 1000 classes (identical in timm and torchvision; docs/models.md).
PARAMETER_COUNTS = {
    "v2_b0": 7_139_704,
    "v2_b1": 8_141_052,
    "v2_b2": 10_096_086,
    "v2_b3": 14_358_406,
    "v2_s": 21_458_488,
    "v2_m": 54_139_356,
    "v2_l": 118_515_272,
    "v2_xl": 208_119_808,
}
OFFICIAL_DROPOUT = {
    "v2_b0": 0.2,
    "v2_b1": 0.2,
    "v2_b2": 0.3,
    "v2_b3": 0.3,
    "v2_s": 0.2,
    "v2_m": 0.3,
    "v2_l": 0.4,
    "v2_xl": 0.4,
}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_list_models_names_all_variants() -> None:
    assert list_models() == ["v2_b0", "v2_b1", "v2_b2", "v2_b3", "v2_s", "v2_m", "v2_l", "v2_xl"]


@pytest.mark.parametrize("name", list(PARAMETER_COUNTS))
def test_parameter_count_matches_reference(name: str) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        model = create_model(name)
    assert count_parameters(model) == PARAMETER_COUNTS[name]


def test_base_variants_scale_the_base_table() -> None:
    """B3 = base x (width 1.2, depth 1.4): channels int(c * 1.2 + 4) // 8 * 8, layers ceil(n * 1.4)."""
    b3 = VARIANTS["v2_b3"]
    assert b3.stem_channels == 40
    assert [s.out_channels for s in b3.stages] == [16, 40, 56, 112, 136, 232]
    assert [s.layers for s in b3.stages] == [2, 3, 3, 5, 7, 12]
    assert b3.head_channels == 1536
    b0 = VARIANTS["v2_b0"]
    assert [s.out_channels for s in b0.stages] == [16, 32, 48, 96, 112, 192]
    assert [s.layers for s in b0.stages] == [1, 2, 2, 3, 5, 8]


def test_blocks_follow_the_table() -> None:
    model = create_model("v2_s")
    stages = list(model.stages)
    assert [len(stage) for stage in stages] == [2, 4, 4, 6, 9, 15]
    assert all(isinstance(block, FusedMBConv) for stage in stages[:3] for block in stage)
    assert all(isinstance(block, MBConv) and block.se is not None for stage in stages[3:] for block in stage)
    first = stages[0][0]
    assert first.project is None and first.has_residual  # e = 1: a single 3x3 conv with residual
    se = stages[3][1].se  # MBConv 128 -> 128, expansion 4: squeeze width from the block input
    assert (se.reduce.in_channels, se.reduce.out_channels) == (512, 32)
    assert not stages[1][0].has_residual and stages[1][1].has_residual


def test_unknown_model_and_options_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="v2_b0"):
        create_model("v2_q")
    with pytest.raises(ConfigError, match="dropout_rate"):
        create_model("v2_b0", dropout_rate=0.1)
    with pytest.raises(ConfigError, match="padding"):
        create_model("v2_b0", padding="valid")
    with pytest.raises(ConfigError, match="drop_path_rate"):
        create_model("v2_b0", drop_path_rate=1.5)


def test_default_classifier_dropout_is_the_official_value() -> None:
    assert create_model("v2_b2").dropout_rate == 0.3
    assert create_model("v2_b2", drop_rate=0.1).dropout_rate == 0.1


@pytest.mark.parametrize("size", [32, 64, 128, 97])
def test_train_step_b0_gives_finite_gradients(size: int) -> None:
    torch.manual_seed(0)
    model = create_model("v2_b0", num_classes=10).train()
    images = torch.randn(2, 3, size, size)
    logits = model(images)
    assert logits.shape == (2, 10)
    nn.functional.cross_entropy(logits, torch.tensor([1, 7])).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    assert any(param.grad.abs().sum() > 0 for param in model.parameters())


def test_train_step_s_gives_finite_gradients() -> None:
    torch.manual_seed(0)
    model = create_model("v2_s", num_classes=5, padding="same").train()
    nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([0, 4])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def capture_classifier_input(model: EfficientNetV2) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.classifier.register_forward_hook(lambda module, args, output: seen.append(args[0].detach()))
    return seen


def test_set_dropout_changes_the_classifier_input_in_train_mode() -> None:
    torch.manual_seed(0)
    # a non-zero classifier, so dropout shows in the logits
    model = create_model("v2_b0", num_classes=10, drop_path_rate=0.0, classifier_init="uniform").train()
    seen = capture_classifier_input(model)
    images = torch.randn(2, 3, 32, 32)

    model.set_dropout(0.0)
    assert model.dropout_rate == 0.0
    first, second = model(images), model(images)
    torch.testing.assert_close(first, second)
    assert (seen[-1] == 0).float().mean() < 0.05

    model.set_dropout(0.9)
    assert model.dropout_rate == 0.9
    first, second = model(images), model(images)
    assert not torch.allclose(first, second)
    assert (seen[-1] == 0).float().mean() > 0.7

    model.eval()  # no dropout in eval whatever the rate
    torch.testing.assert_close(model(images), model(images))
    with pytest.raises(ConfigError):
        model.set_dropout(1.0)


def test_set_drop_path_rate_spreads_rates_and_drops_branches() -> None:
    torch.manual_seed(0)
    # a non-zero classifier, so dropped branches show in the logits
    model = create_model("v2_b0", num_classes=10, drop_rate=0.0, classifier_init="uniform").train()
    blocks = list(model.blocks())

    model.set_drop_path_rate(0.0)
    assert model.drop_path_rate == 0.0
    # rate 0 keeps each StochasticDepth at p=0 (a no-op), so torch.compile keeps its graph
    assert all(
        isinstance(b.drop_path, StochasticDepth) and b.drop_path.p == 0 for b in blocks if b.has_residual
    )
    images = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(model(images), model(images))

    model.set_drop_path_rate(0.9)
    last = blocks[-1]
    assert isinstance(last.drop_path, StochasticDepth)
    assert last.drop_path.p == pytest.approx(0.9 * (len(blocks) - 1) / len(blocks))
    assert blocks[0].drop_path is None  # 32 -> 16 channels: no residual, nothing to drop
    assert not torch.allclose(model(images), model(images))

    # Per sample, the block's output is either the shortcut alone or shortcut + branch / survival.
    features = torch.randn(8, last.project.conv.out_channels, 2, 2)
    kept_drop_path = last.drop_path
    last.drop_path = nn.Identity()
    branch = last(features) - features
    last.drop_path = kept_drop_path
    survival = 1.0 - kept_drop_path.p
    outcomes = set()
    for _ in range(10):
        out = last(features)
        for i in range(len(features)):
            if torch.allclose(out[i], features[i]):
                outcomes.add("dropped")
            else:
                torch.testing.assert_close(out[i], features[i] + branch[i] / survival, rtol=1e-4, atol=1e-4)
                outcomes.add("kept")
    assert outcomes == {"dropped", "kept"}


def test_forward_stages_and_features_shapes() -> None:
    model = create_model("v2_b0").eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        stages = model.forward_stages(images)
        features = model.forward_features(images)
    assert [tuple(f.shape[1:]) for f in stages] == [
        (16, 32, 32),
        (32, 16, 16),
        (48, 8, 8),
        (96, 4, 4),
        (112, 4, 4),
        (192, 2, 2),
    ]
    assert features.shape == (2, model.num_features) == (2, 1280)
    with torch.no_grad():
        torch.testing.assert_close(model.head(stages[-1]).mean((2, 3)), features)
        torch.testing.assert_close(model.classifier(features), model(images))
    with torch.device("meta"):
        assert len(create_model("v2_m").forward_stages(torch.empty(1, 3, 64, 64))) == 7


def test_reset_classifier_changes_only_the_classifier() -> None:
    model = create_model("v2_b0")
    stem = model.stem.conv.weight.clone()
    model.reset_classifier(7)
    assert model.num_classes == 7 and model.classifier.weight.shape == (7, 1280)
    torch.testing.assert_close(model.stem.conv.weight, stem)


def test_classifier_init_zero_starts_every_class_equal_and_uniform_is_official() -> None:
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    zero = create_model("v2_b0", num_classes=10, classifier_init="zero").eval()
    logits = zero(images)
    torch.testing.assert_close(logits, torch.zeros_like(logits))
    zero.reset_classifier(4)  # fine-tuning keeps the model's rule
    assert not zero.classifier.weight.any()
    uniform = create_model("v2_b0", num_classes=10, classifier_init="uniform")
    bound = 1 / 10**0.5
    assert uniform.classifier.weight.abs().max() <= bound and uniform.classifier.weight.std() > bound / 3
    with pytest.raises(ConfigError, match="classifier_init"):
        create_model("v2_b0", classifier_init="normal")


def test_conv_init_uses_tf_fan_out_so_depthwise_kernels_are_not_shrunk() -> None:
    """Official (TF) and timm: std = sqrt(2 / (k * k * out_channels / groups)); a depthwise kernel's
    fan-out is k * k, so its std is about 0.47 for 3x3 whatever the channel count."""
    torch.manual_seed(0)
    model = create_model("v2_s", num_classes=10)
    depthwise = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == 1]
    assert depthwise and dense
    for conv in depthwise + dense:
        kh, kw = conv.kernel_size
        expected = (2.0 / (kh * kw * conv.out_channels / conv.groups)) ** 0.5
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.15), conv
    assert depthwise[-1].weight.std().item() > 0.4  # torch's kaiming fan_out gave 0.03 here (1536 ch)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_channels_last_output_equals_contiguous(mode: str) -> None:
    torch.manual_seed(0)
    model = create_model("v2_b0", num_classes=10, drop_path_rate=0.0, drop_rate=0.0)
    model.train(mode == "train")
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(images)
        model = model.to(memory_format=torch.channels_last)
        actual = model(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_eval_bn_folding_matches_unfolded_batchnorm() -> None:
    """Eval folds BN into the conv; it must equal conv -> BN with the same running statistics."""
    torch.manual_seed(0)
    model = create_model("v2_b0", num_classes=10).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    unit = model.stages[3][0].expand
    x = torch.randn(2, unit.conv.in_channels, 8, 8)
    with torch.no_grad():
        expected = nn.functional.silu(unit.bn(unit.conv(x)))
        torch.testing.assert_close(unit(x), expected, rtol=1e-5, atol=1e-5)


def test_tf_same_padding_amounts() -> None:
    assert tf_same_padding(64, 3, 2) == (0, 1)  # even size, stride 2: the extra pixel goes after
    assert tf_same_padding(97, 3, 2) == (1, 1)
    assert tf_same_padding(64, 3, 1) == (1, 1)
    assert tf_same_padding(64, 1, 1) == (0, 0)


def test_same_padding_output_sizes_match_tensorflow() -> None:
    model = create_model("v2_b0", padding="same").eval()
    with torch.no_grad():
        for size in (64, 97):
            stages = model.forward_stages(torch.randn(1, 3, size, size))
            expected, sizes = size, []
            for stride in (2, 1, 2, 2, 2, 1, 2):  # stem, then stage strides
                expected = -(-expected // stride)
                sizes.append(expected)
            assert [f.shape[-1] for f in stages] == sizes[1:]


def test_model_summary_counts_params_and_flops_without_side_effects() -> None:
    model = create_model("v2_b0", num_classes=10).train()
    running_mean = model.stem.bn.running_mean.clone()
    small, large = model_summary(model, 64), model_summary(model, 128)
    assert model.training
    torch.testing.assert_close(model.stem.bn.running_mean, running_mean)
    assert small["params"] == small["trainable_params"] == count_parameters(model)
    assert small["image_size"] == 64 and large["image_size"] == 128
    assert 3.5 < large["flops"] / small["flops"] < 4.5  # convolutions scale with the pixel count
    line = format_summary(large, "v2_b0")
    assert line.startswith("v2_b0: ") and "M params" in line and "GFLOPs" in line and "128 px" in line


def test_model_summary_flops_of_b0_at_224() -> None:
    """Paper: B0 has 0.72 GFLOPs (multiply-adds) at 224 px; flop_counter counts 2 per multiply-add."""
    flops = model_summary(create_model("v2_b0"), 224)["flops"]
    assert 0.68e9 < flops / 2 < 0.76e9


@pytest.mark.parametrize("name", list(PARAMETER_COUNTS))
def test_hydra_config_instantiates_the_variant(compose_train, name: str) -> None:
    cfg = compose_train([f"model={name}"]).model
    assert cfg.name == name and cfg.pretrained is None
    assert cfg.drop_rate == OFFICIAL_DROPOUT[name] == VARIANTS[name].drop_rate
    assert (cfg.drop_path_rate, cfg.bn_eps, cfg.bn_momentum, cfg.padding) == (0.2, 1e-3, 0.1, "symmetric")
    # conf/model/base/efficientnetv2.yaml and create_model's defaults are the same values
    options = {key: cfg[key] for key in cfg if key not in ("_target_", "name", "pretrained", "drop_rate")}
    assert options == {k: v for k, v in DEFAULT_OVERRIDES.items() if k not in ("in_chans", "drop_rate")}
    assert options["classifier_init"] == "zero"  # what training runs have always used
    with torch.device("meta"):
        model = instantiate(cfg, num_classes=10, in_chans=1)
    assert isinstance(model, EfficientNetV2) and model.variant.name == name
    assert model.num_classes == 10 and model.stem.conv.in_channels == 1
    assert model.dropout_rate == OFFICIAL_DROPOUT[name]


@pytest.mark.slow
@pytest.mark.parametrize("padding", ["symmetric", "same"])
def test_torch_compile_traces_without_graph_breaks(padding: str) -> None:
    """Dynamo captures eval and train (forward + backward) as single graphs; aot_eager skips C++ codegen."""
    torch.manual_seed(0)
    model = create_model("v2_b0", num_classes=10, padding=padding)
    images = torch.randn(2, 3, 64, 64)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(images), model(images), rtol=1e-4, atol=1e-4)
    model.train()
    nn.functional.cross_entropy(compiled(images), torch.tensor([3, 5])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.slow
@pytest.mark.timeout(1800)  # inductor compiles C++ kernels: minutes on two busy cores
def test_torch_compile_inductor_matches_eager() -> None:
    torch.manual_seed(0)
    model = create_model("v2_b0", num_classes=10).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(images)
        torch.testing.assert_close(torch.compile(model)(images), expected, rtol=1e-4, atol=1e-4)
