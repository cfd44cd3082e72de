"""Write the .beton files the FFCV loader reads (data.loader=ffcv), one per split of a data set.

    python src/prepare_data.py                       # Fashion-MNIST
    python src/prepare_data.py data=cifar10          # any conf/data config, any overrides
    python src/prepare_data.py overwrite=false       # keep betons written from the same data and settings

Unreadable images fail with their names, or with data.on_bad_image=skip are skipped and counted.
"""

from effnetv2.cli import exit_on_user_error, set_environment_defaults

set_environment_defaults()

import logging  # noqa: E402

import hydra  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from effnetv2.config import register_resolvers  # noqa: E402

register_resolvers()
log = logging.getLogger("effnetv2.prepare_data")


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare_data")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    datamodule = instantiate(cfg.data, loader="ffcv")
    written = datamodule.write_betons(overwrite=cfg.overwrite)
    for split, beton in written.items():
        log.info("%s: %s", split, beton)
    if not written:
        log.info("all betons of %s are up to date (overwrite=true rewrites them)", datamodule.name)


if __name__ == "__main__":
    main()
