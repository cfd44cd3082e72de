"""Every option of every config group composes, and the composed config instantiates what it names."""

from __future__ import annotations

import itertools

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from helpers.paths import CONF_DIR

GROUPS = [
    "model",
    "data",
    "schedule",
    "optimizer",
    "lr_scheduler",
    "trainer",
    "logger",
    "callbacks",
    "experiment",
    "hparams_search",
    "debug",
]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g in GROUPS for o in options(g)], ids=lambda v: str(v)
)
def test_every_group_option_composes(compose_train, group: str, option: str) -> None:
    cfg = compose_train([f"{group}={option}"])
    assert cfg.model.name.startswith("v2_")
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"


def test_every_group_has_options() -> None:
    for group in GROUPS:
        if group not in ("experiment", "hparams_search", "debug"):
            assert options(group), f"conf/{group}/ has no options"


def test_every_model_composes_with_every_schedule(compose_train) -> None:
    for model, schedule in itertools.product(options("model"), options("schedule")):
        cfg = compose_train([f"model={model}", f"schedule={schedule}"])
        assert cfg.model.name == model
        schedule_obj = instantiate(cfg.schedule)
        assert schedule_obj.num_stages >= 1


def test_unknown_option_lists_the_valid_ones(compose_train) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_train(["model=nope"])
    assert "v2_b0" in str(error.value)


def test_unknown_key_is_rejected(compose_train) -> None:
    with pytest.raises(ConfigCompositionException):
        compose_train(["data.batch_sise=8"])
