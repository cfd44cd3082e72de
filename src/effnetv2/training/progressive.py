"""The progressive-learning schedule of the paper (Algorithm 1), as a pure object.

Training of `max_epochs` epochs is split into `num_stages` stages. Each stage trains with its own image
size and regularization strength, both interpolated linearly between a first and a last value: small
images with weak regularization early, large images with strong regularization late. This module only
computes the values; `effnetv2.training.callbacks.progressive.ProgressiveLearning` applies them to the
data and the model during training.

Two interpolation rules are supported, because the paper and the official code differ:

- `paper`: stage i of M uses `first + (last - first) * i / (M - 1)` for every value, so stage 0 uses
  the first values and the last stage the last ones.
- `official` (google/automl `efficientnetv2/main.py`): the image size is
  `first + (last - first) * (i + 1) / M`, so stage 0 is already above `first` (official M: 192, 256,
  320, 384 from 128 -> 384); the regularizers follow `linspace(first, last, M)` as in the paper.

One stage (`num_stages: 1`) means training at the last values throughout: the `fixed` baseline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from effnetv2.config import round_to_multiple
from effnetv2.errors import ConfigError

INTERPOLATIONS = ("paper", "official")


@dataclass(frozen=True)
class StageValues:
    """What one stage trains with. `cutmix_alpha` / `drop_path_rate` are None when not scheduled."""

    stage: int
    image_size: int
    randaug_magnitude: float
    mixup_alpha: float
    dropout: float
    cutmix_alpha: float | None = None
    drop_path_rate: float | None = None


def _pair(name: str, value: Any, optional: bool = False) -> tuple[float, float] | None:
    """A `[first, last]` config value as a tuple of floats (accepts lists and OmegaConf ListConfigs)."""
    if value is None and optional:
        return None
    try:
        first, last = (float(v) for v in value)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"schedule.{name}={value!r} must be a [first, last] pair of numbers, e.g. {name}: [0.1, 0.3]"
        ) from error
    return first, last


@dataclass(frozen=True)
class ProgressiveSchedule:
    """Maps an epoch to its stage and the stage to its values (image size, RandAugment magnitude,
    mixup alpha, dropout, and CutMix alpha / drop-path rate when configured).

    Epochs are split into stages as evenly as possible: `stage = epoch * num_stages // max_epochs`,
    so with 350 epochs and 4 stages the stages last 88, 87, 88 and 87 epochs. Epochs past
    `max_epochs` stay in the last stage. The first and last sizes are used exactly as given; sizes
    in between are rounded to a multiple of `size_multiple` (8 keeps shapes friendly to hardware;
    use 1 to keep the exact interpolated sizes). `adapt_regularization=False` keeps every
    regularizer at its last value while the size still grows: the paper's resize-only ablation.
    `randaug_policy` names the RandAugment variant the schedule's magnitudes are meant for ("official"
    for the paper_*/official_* presets); the data config takes it from here.
    """

    num_stages: int
    image_size: tuple[int, int]
    randaug_magnitude: tuple[float, float]
    mixup_alpha: tuple[float, float]
    dropout: tuple[float, float]
    cutmix_alpha: tuple[float, float] | None = None
    drop_path_rate: tuple[float, float] | None = None
    eval_size: int | None = None
    size_multiple: int = 8
    interpolation: str = "paper"
    adapt_regularization: bool = True
    randaug_policy: str = "increasing"  # read by the data config (data.randaug_policy); see RandAugment

    def __post_init__(self) -> None:
        if not isinstance(self.num_stages, int) or isinstance(self.num_stages, bool) or self.num_stages < 1:
            raise ConfigError(f"schedule.num_stages={self.num_stages!r} must be an integer >= 1")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"schedule.interpolation={self.interpolation!r} is unknown; use one of {list(INTERPOLATIONS)}"
            )
        if not isinstance(self.size_multiple, int) or self.size_multiple < 1:
            raise ConfigError(f"schedule.size_multiple={self.size_multiple!r} must be an integer >= 1")
        for name in ("image_size", "randaug_magnitude", "mixup_alpha", "dropout"):
            object.__setattr__(self, name, _pair(name, getattr(self, name)))
        for name in ("cutmix_alpha", "drop_path_rate"):
            object.__setattr__(self, name, _pair(name, getattr(self, name), optional=True))
        self._check_ranges()
        object.__setattr__(self, "image_size", tuple(int(size) for size in self.image_size))

    def _check_ranges(self) -> None:
        for size in self.image_size:
            if size < 1 or size != int(size):
                raise ConfigError(f"schedule.image_size={list(self.image_size)} must hold positive integers")
        if self.eval_size is not None and (not isinstance(self.eval_size, int) or self.eval_size < 1):
            raise ConfigError(f"schedule.eval_size={self.eval_size!r} must be a positive integer or null")
        for name in ("randaug_magnitude", "mixup_alpha", "cutmix_alpha"):
            pair = getattr(self, name)
            if pair is not None and min(pair) < 0:
                raise ConfigError(f"schedule.{name}={list(pair)} must not be negative")
        for name in ("dropout", "drop_path_rate"):
            pair = getattr(self, name)
            if pair is not None and not all(0.0 <= p < 1.0 for p in pair):
                raise ConfigError(f"schedule.{name}={list(pair)} must lie in [0, 1)")

    # Epochs -> stages ------------------------------------------------------------------------------
    def check_epochs(self, max_epochs: int | None) -> int:
        """`max_epochs` as an int, or a ConfigError when it cannot hold one epoch per stage."""
        if max_epochs is None or max_epochs < self.num_stages:
            raise ConfigError(
                f"trainer.max_epochs={max_epochs} cannot hold schedule.num_stages={self.num_stages} stages: "
                f"set trainer.max_epochs >= {self.num_stages} or lower schedule.num_stages"
            )
        return int(max_epochs)

    def stage_of_epoch(self, epoch: int, max_epochs: int) -> int:
        max_epochs = self.check_epochs(max_epochs)
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        return min(epoch * self.num_stages // max_epochs, self.num_stages - 1)

    def stage_epochs(self, stage: int, max_epochs: int) -> range:
        """The epochs that stage `stage` trains (the inverse of `stage_of_epoch`)."""
        max_epochs = self.check_epochs(max_epochs)
        self._check_stage(stage)
        first = -(-stage * max_epochs // self.num_stages)
        end = -(-(stage + 1) * max_epochs // self.num_stages)
        return range(first, end)

    # Stages -> values ------------------------------------------------------------------------------
    def _check_stage(self, stage: int) -> None:
        if not 0 <= stage < self.num_stages:
            raise ValueError(f"stage must be in [0, {self.num_stages - 1}], got {stage}")

    def _paper_fraction(self, stage: int) -> float:
        return 1.0 if self.num_stages == 1 else stage / (self.num_stages - 1)

    def _size_fraction(self, stage: int) -> float:
        if self.interpolation == "official":
            return (stage + 1) / self.num_stages
        return self._paper_fraction(stage)

    def _regularizer_fraction(self, stage: int) -> float:
        return self._paper_fraction(stage) if self.adapt_regularization else 1.0

    def stage_size(self, stage: int) -> int:
        self._check_stage(stage)
        first, last = self.image_size
        fraction = self._size_fraction(stage)
        if fraction == 0.0:
            return first
        if fraction == 1.0:
            return last
        rounded = round_to_multiple(first + (last - first) * fraction, self.size_multiple)
        return min(max(rounded, min(first, last)), max(first, last))  # rounding never leaves [first, last]

    def stage_values(self, stage: int) -> StageValues:
        self._check_stage(stage)
        fraction = self._regularizer_fraction(stage)

        def at(pair: tuple[float, float] | None) -> float | None:
            return None if pair is None else pair[0] + (pair[1] - pair[0]) * fraction

        return StageValues(
            stage=stage,
            image_size=self.stage_size(stage),
            randaug_magnitude=at(self.randaug_magnitude),
            mixup_alpha=at(self.mixup_alpha),
            dropout=at(self.dropout),
            cutmix_alpha=at(self.cutmix_alpha),
            drop_path_rate=at(self.drop_path_rate),
        )

    def values_at_epoch(self, epoch: int, max_epochs: int) -> StageValues:
        return self.stage_values(self.stage_of_epoch(epoch, max_epochs))

    @property
    def final_eval_size(self) -> int:
        """The size to evaluate at: `eval_size`, or the last stage's training size when unset."""
        return self.eval_size if self.eval_size is not None else self.stage_size(self.num_stages - 1)

    # Reporting ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples) for checkpoints and logs."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    def describe(self, max_epochs: int) -> str:
        """A table of the stages for the training log."""
        rows = [self.stage_values(stage) for stage in range(self.num_stages)]
        optional = [name for name in ("cutmix_alpha", "drop_path_rate") if getattr(self, name) is not None]
        header = ["stage", "epochs", "image_size", "randaug", "mixup", "dropout", *optional]
        table = [header]
        for row in rows:
            epochs = self.stage_epochs(row.stage, max_epochs)
            values = asdict(row)
            table.append(
                [
                    str(row.stage),
                    f"{epochs.start}-{epochs.stop - 1}",
                    str(row.image_size),
                    f"{row.randaug_magnitude:g}",
                    f"{row.mixup_alpha:g}",
                    f"{row.dropout:g}",
                    *(f"{values[name]:g}" for name in optional),
                ]
            )
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in table]
        regularization = "adaptive" if self.adapt_regularization else "fixed at the last values"
        title = (
            f"Progressive learning: {self.num_stages} stage(s) over {max_epochs} epochs, "
            f"{self.interpolation} interpolation, regularization {regularization}, "
            f"eval size {self.final_eval_size}"
        )
        if self.num_stages > 1 and rows[0].image_size == rows[-1].image_size:
            # e.g. `progressive` on 32 px data: its 32 px floor leaves only the regularization to grow
            title += f"; image size fixed at {rows[0].image_size} px, only the regularization grows"
        return "\n".join([title, *lines])
