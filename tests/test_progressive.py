"""The progressive-learning schedule (pure) and its presets in conf/schedule/, checked against the
paper's Table 6 and the official code's per-stage values."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from effnetv2.config import register_resolvers, scaled_size
from effnetv2.errors import ConfigError
from effnetv2.training.progressive import ProgressiveSchedule

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def load_schedule(
    name: str,
    image_size: int = 28,
    eval_size: int = 32,
    magnitude: float = 6,
    drop_rate: float = 0.3,
    drop_path_rate: float = 0.2,
) -> ProgressiveSchedule:
    """Compose conf/schedule/<name>.yaml the way train.py does, with stand-in data and model configs."""
    register_resolvers()
    stand_ins = {
        "data.image_size": image_size,
        "data.eval_size": eval_size,
        "data.randaug_magnitude": magnitude,
        "model.drop_rate": drop_rate,
        "model.drop_path_rate": drop_path_rate,
    }
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        overrides = [f"+schedule={name}", *(f"+{key}={value}" for key, value in stand_ins.items())]
        cfg = compose(overrides=overrides)
    return instantiate(cfg.schedule)


def make(**overrides) -> ProgressiveSchedule:
    values = dict(
        num_stages=4, image_size=[16, 64], randaug_magnitude=[2, 8], mixup_alpha=[0, 0.3], dropout=[0.1, 0.4]
    )
    values.update(overrides)
    return ProgressiveSchedule(**values)


# Paper Table 6 (first stage / last stage) -----------------------------------------------------------
TABLE_6 = {
    "paper_s": dict(size=(128, 300), randaug=(5, 15), mixup=(0, 0), dropout=(0.1, 0.3), eval_size=384),
    "paper_m": dict(size=(128, 380), randaug=(5, 20), mixup=(0, 0.2), dropout=(0.1, 0.4), eval_size=480),
    "paper_l": dict(size=(128, 380), randaug=(5, 25), mixup=(0, 0.4), dropout=(0.1, 0.5), eval_size=480),
}


@pytest.mark.parametrize("name", sorted(TABLE_6))
def test_paper_presets_match_table_6(name):
    expected = TABLE_6[name]
    schedule = load_schedule(name)
    first, last = schedule.stage_values(0), schedule.stage_values(3)
    assert schedule.num_stages == 4
    assert (first.image_size, last.image_size) == expected["size"]
    assert (first.randaug_magnitude, last.randaug_magnitude) == pytest.approx(expected["randaug"])
    assert (first.mixup_alpha, last.mixup_alpha) == pytest.approx(expected["mixup"])
    assert (first.dropout, last.dropout) == pytest.approx(expected["dropout"])
    assert schedule.final_eval_size == expected["eval_size"]
    # Algorithm 1: linear in the stage index, intermediate sizes on the multiple-of-8 grid.
    s0, s1 = expected["size"]
    for stage in (1, 2):
        values = schedule.stage_values(stage)
        assert values.image_size % 8 == 0
        assert abs(values.image_size - (s0 + (s1 - s0) * stage / 3)) <= 4
        r0, r1 = expected["randaug"]
        assert values.randaug_magnitude == pytest.approx(r0 + (r1 - r0) * stage / 3)
        d0, d1 = expected["dropout"]
        assert values.dropout == pytest.approx(d0 + (d1 - d0) * stage / 3)


def test_paper_s_intermediate_sizes():
    schedule = load_schedule("paper_s")
    # 128 + 172 * i / 3 = 128, 185.3, 242.7, 300, rounded to multiples of 8 between the ends.
    assert [schedule.stage_size(i) for i in range(4)] == [128, 184, 240, 300]


# Official code (google/automl efficientnetv2/main.py) -------------------------------------------------
OFFICIAL = {
    "official_s": dict(sizes=[171, 214, 257, 300], randaug=(5, 10), mixup=0.0, dropout=0.2, eval_size=384),
    "official_m": dict(sizes=[192, 256, 320, 384], randaug=(5, 15), mixup=0.2, dropout=0.3, eval_size=480),
    "official_l": dict(sizes=[192, 256, 320, 384], randaug=(5, 20), mixup=0.5, dropout=0.4, eval_size=480),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_presets_match_the_official_code(name):
    expected = OFFICIAL[name]
    schedule = load_schedule(name)
    stages = [schedule.stage_values(i) for i in range(4)]
    assert [v.image_size for v in stages] == expected["sizes"]
    r0, r1 = expected["randaug"]
    assert [v.randaug_magnitude for v in stages] == pytest.approx([r0 + (r1 - r0) * i / 3 for i in range(4)])
    mixups = [expected["mixup"] * i / 3 for i in range(4)]  # linspace(0, mixup, 4), CutMix the same
    assert [v.mixup_alpha for v in stages] == pytest.approx(mixups)
    assert [v.cutmix_alpha for v in stages] == pytest.approx(mixups)
    assert [v.dropout for v in stages] == pytest.approx([expected["dropout"]] * 4)
    assert schedule.final_eval_size == expected["eval_size"]


def test_official_rule_never_trains_at_the_base_size():
    schedule = make(interpolation="official", image_size=[128, 384], size_multiple=1)
    assert schedule.stage_size(0) == 192
    assert schedule.stage_values(0).randaug_magnitude == 2  # regularizers still start at `first`


# Generic presets scaled to the data ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("native", "first"), [(20, 20), (28, 28), (32, 32), (48, 32), (64, 32), (96, 48), (224, 112)]
)
def test_progressive_preset_scales_with_the_data(native, first):
    schedule = load_schedule("progressive", image_size=native, eval_size=native + 8)
    sizes = [schedule.stage_size(i) for i in range(schedule.num_stages)]
    assert sizes[0] == first and sizes[-1] == native  # half the native size, at least 32 px
    assert sizes == sorted(sizes)
    assert schedule.final_eval_size == native + 8


def test_progressive_preset_ends_at_the_data_and_model_regularization():
    schedule = load_schedule("progressive", magnitude=7, drop_rate=0.4)
    first, last = schedule.stage_values(0), schedule.stage_values(3)
    assert (first.randaug_magnitude, last.randaug_magnitude) == (0, 7)
    assert (first.dropout, last.dropout) == pytest.approx((0.1, 0.4))
    assert (first.drop_path_rate, last.drop_path_rate) == pytest.approx((0.0, 0.2))  # the model's value
    assert schedule.stage_values(1).randaug_magnitude == pytest.approx(7 / 3)


def test_fixed_preset_is_one_stage_at_the_last_values():
    progressive, fixed = load_schedule("progressive", image_size=64), load_schedule("fixed", image_size=64)
    assert fixed.num_stages == 1
    assert fixed.stage_values(0).randaug_magnitude == 6  # the data config's own magnitude
    assert fixed.stage_values(0).dropout == pytest.approx(0.3)  # the model config's own dropout
    last = progressive.stage_values(progressive.num_stages - 1)
    for epoch in range(10):
        values = fixed.values_at_epoch(epoch, 10)
        assert values.image_size == 64
        assert (values.randaug_magnitude, values.mixup_alpha, values.dropout) == (
            last.randaug_magnitude,
            last.mixup_alpha,
            last.dropout,
        )


def test_resize_only_grows_sizes_with_regularization_fixed_at_the_last_values():
    progressive = load_schedule("progressive", image_size=64)
    resize_only = load_schedule("resize_only", image_size=64)
    last = progressive.stage_values(3)
    for stage in range(4):
        values = resize_only.stage_values(stage)
        assert values.image_size == progressive.stage_size(stage)
        assert (values.randaug_magnitude, values.mixup_alpha, values.dropout) == (
            last.randaug_magnitude,
            last.mixup_alpha,
            last.dropout,
        )
    assert resize_only.stage_size(0) < resize_only.stage_size(3)


# Epochs -> stages -------------------------------------------------------------------------------------
def test_paper_run_splits_350_epochs_into_four_stages_of_about_87():
    schedule = make()
    lengths = [len(schedule.stage_epochs(stage, 350)) for stage in range(4)]
    assert lengths == [88, 87, 88, 87]
    assert [schedule.stage_of_epoch(e, 350) for e in (0, 87, 88, 174, 175, 262, 263, 349)] == [
        0, 0, 1, 1, 2, 2, 3, 3,
    ]  # fmt: skip


@pytest.mark.parametrize("num_stages", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("max_epochs", [5, 6, 7, 10, 13])
def test_every_epoch_belongs_to_exactly_one_nonempty_stage(num_stages, max_epochs):
    schedule = make(num_stages=num_stages)
    stages = [schedule.stage_of_epoch(epoch, max_epochs) for epoch in range(max_epochs)]
    assert stages == sorted(stages)
    assert set(stages) == set(range(num_stages))
    lengths = [stages.count(stage) for stage in range(num_stages)]
    assert max(lengths) - min(lengths) <= 1
    for stage in range(num_stages):
        assert list(schedule.stage_epochs(stage, max_epochs)) == [
            e for e, s in enumerate(stages) if s == stage
        ]


def test_epochs_past_max_epochs_stay_in_the_last_stage():
    assert make().stage_of_epoch(25, 8) == 3


def test_too_few_epochs_for_the_stages_is_a_config_error():
    with pytest.raises(ConfigError, match="trainer.max_epochs=3"):
        make(num_stages=4).stage_of_epoch(0, 3)


def test_values_at_epoch_follow_the_stage():
    schedule = make()
    assert schedule.values_at_epoch(0, 8) == schedule.stage_values(0)
    assert schedule.values_at_epoch(5, 8) == schedule.stage_values(2)
    assert schedule.values_at_epoch(7, 8).image_size == 64


# Rounding, validation, reporting -----------------------------------------------------------------------
def test_sizes_between_the_ends_are_rounded_to_the_multiple():
    schedule = make(image_size=[30, 90], size_multiple=8, num_stages=5)
    sizes = [schedule.stage_size(i) for i in range(5)]
    assert sizes[0] == 30 and sizes[-1] == 90  # ends exactly as configured
    assert all(size % 8 == 0 for size in sizes[1:-1])
    assert sizes == [30, 48, 64, 72, 90]  # 45 -> 48, 60 -> 64, 75 -> 72
    exact = make(image_size=[30, 90], size_multiple=1, num_stages=5)
    assert [exact.stage_size(i) for i in range(5)] == [30, 45, 60, 75, 90]


def test_rounded_stage_sizes_stay_between_the_ends():
    """Ends that are not multiples: rounding 20 -> 24 px made stages larger than the last (fixed bug)."""
    sizes = [make(image_size=[20, 20], size_multiple=8).stage_size(i) for i in range(4)]
    assert sizes == [20, 20, 20, 20]
    sizes = [make(image_size=[21, 27], size_multiple=8).stage_size(i) for i in range(4)]
    assert sizes == sorted(sizes) and min(sizes) >= 21 and max(sizes) <= 27


def test_scaled_size_resolver_rounds_to_the_multiple():
    assert scaled_size(28, 0.5, 4) == 16  # 14 -> 16 (halves round up)
    assert scaled_size(300, 0.6) == 184  # 180 = 22.5 * 8 -> 23 * 8
    assert scaled_size(64, 0.6, 8) == 40  # 38.4 -> 40
    assert scaled_size(10, 0.1, 4) == 4  # never below the multiple
    assert scaled_size(32, 0.5, 4, 24) == 24  # the floor wins over 16
    assert scaled_size(64, 0.5, 4, 24) == 32  # the floor does not bind
    assert scaled_size(20, 0.5, 4, 24) == 20  # never above the size itself


@pytest.mark.parametrize(
    ("override", "key"),
    [
        (dict(num_stages=0), "schedule.num_stages"),
        (dict(num_stages=2.5), "schedule.num_stages"),
        (dict(interpolation="cosine"), "schedule.interpolation"),
        (dict(image_size=[0, 64]), "schedule.image_size"),
        (dict(image_size=[16.5, 64]), "schedule.image_size"),
        (dict(image_size=[64]), "schedule.image_size"),
        (dict(randaug_magnitude=[-1, 5]), "schedule.randaug_magnitude"),
        (dict(mixup_alpha="strong"), "schedule.mixup_alpha"),
        (dict(dropout=[0.1, 1.0]), "schedule.dropout"),
        (dict(drop_path_rate=[0.0, 1.5]), "schedule.drop_path_rate"),
        (dict(cutmix_alpha=[-0.1, 1.0]), "schedule.cutmix_alpha"),
        (dict(size_multiple=0), "schedule.size_multiple"),
        (dict(eval_size=0), "schedule.eval_size"),
    ],
)
def test_invalid_values_raise_config_errors_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make(**override)


def test_unknown_stage_is_rejected():
    with pytest.raises(ValueError, match="stage"):
        make().stage_values(4)


def test_optional_regularizers_are_none_unless_configured():
    assert make().stage_values(1).cutmix_alpha is None
    assert make().stage_values(1).drop_path_rate is None
    scheduled = make(cutmix_alpha=[0, 0.9], drop_path_rate=[0.0, 0.3])
    assert scheduled.stage_values(1).cutmix_alpha == pytest.approx(0.3)
    assert scheduled.stage_values(3).drop_path_rate == pytest.approx(0.3)


def test_describe_lists_every_stage_with_its_epochs():
    text = make(cutmix_alpha=[0, 0.9]).describe(10)
    lines = text.splitlines()
    assert "4 stage(s) over 10 epochs" in lines[0]
    assert "cutmix_alpha" in lines[1]
    assert lines[2].split()[:3] == ["0", "0-2", "16"]
    assert lines[5].split()[:3] == ["3", "8-9", "64"]


def test_describe_says_when_only_the_regularization_grows():
    assert "image size fixed" not in make().describe(10).splitlines()[0]
    title = make(image_size=[32, 32]).describe(5).splitlines()[0]
    assert title.endswith("image size fixed at 32 px, only the regularization grows")
    assert "image size fixed" not in make(num_stages=1, image_size=[32, 32]).describe(5)


def test_to_dict_round_trips():
    schedule = make(cutmix_alpha=[0, 0.5], eval_size=80)
    assert ProgressiveSchedule(**schedule.to_dict()) == schedule
