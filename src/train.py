"""Train EfficientNetV2, then test the best checkpoint.

python src/train.py                                   # default: v2_b0, progressive, Fashion-MNIST
python src/train.py model=v2_m schedule=progressive   # any model x schedule x data x logger
python src/train.py --help                            # config groups and their options
"""

from effnetv2.cli import exit_on_user_error, set_environment_defaults

set_environment_defaults()

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from effnetv2.config import register_resolvers  # noqa: E402
from effnetv2.training.pipeline import train  # noqa: E402

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get("val/acc")  # the objective Hydra sweepers (Optuna) optimise


if __name__ == "__main__":
    main()
