"""Evaluate a checkpoint on val and/or test at one or several image sizes and print a table.

    python src/eval.py ckpt_path=outputs/train/runs/<time>/checkpoints/last.ckpt
    python src/eval.py ckpt_path=<ckpt> eval.sizes=[32,40,48] eval.splits=[val,test]
    python src/eval.py ckpt_path=<ckpt> data=cifar10 data.root=/my/cifar10   # other data, same classes

The model, classes, data and eval size come from the checkpoint itself.
"""

from effnetv2.cli import exit_on_user_error, set_environment_defaults

set_environment_defaults()

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from effnetv2.config import register_resolvers  # noqa: E402
from effnetv2.training.evaluation import run_eval  # noqa: E402

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    run_eval(cfg)


if __name__ == "__main__":
    main()
