"""Predict images with trained checkpoints (fold ensembles, test-time augmentation) and write a
Kaggle submission CSV.

    python src/predict.py checkpoints=[run/checkpoints/last.ckpt] input.folder=data/test
    python src/predict.py 'checkpoints=[outputs/train/multiruns/<time>/*/checkpoints/epoch*.ckpt]' \
        input.csv=comp/sample_submission.csv input.image_dir=comp/test tta.hflip=true 'tta.sizes=[224,256]'
"""

from effnetv2.cli import exit_on_user_error, set_environment_defaults

set_environment_defaults()

import logging  # noqa: E402

import hydra  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from effnetv2.errors import ConfigError  # noqa: E402
from effnetv2.inference.checkpoint import expand_checkpoint_paths, load_classifier  # noqa: E402
from effnetv2.inference.inputs import PredictionInputs, csv_inputs, folder_inputs  # noqa: E402
from effnetv2.inference.predictor import predict_probabilities  # noqa: E402
from effnetv2.inference.submission import write_submission  # noqa: E402

log = logging.getLogger("predict")


def prediction_inputs(cfg: DictConfig) -> PredictionInputs:
    if bool(cfg.input.folder) == bool(cfg.input.csv):
        raise ConfigError("set exactly one of input.folder=<image folder> or input.csv=<CSV of ids>")
    if cfg.input.folder:
        return folder_inputs(cfg.input.folder, strip_extension=cfg.input.strip_extension)
    return csv_inputs(cfg.input.csv, cfg.input.image_dir, cfg.input.id_column, cfg.input.extension)


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    if cfg.torch_threads:
        torch.set_num_threads(int(cfg.torch_threads))
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    patterns = [cfg.checkpoints] if isinstance(cfg.checkpoints, str) else list(cfg.checkpoints)
    classifiers = [load_classifier(path, device) for path in expand_checkpoint_paths(patterns)]
    inputs = prediction_inputs(cfg)
    sizes = list(cfg.tta.sizes) if cfg.tta.sizes else None
    log.info(
        "%d images, %d checkpoint(s), sizes %s, hflip %s",
        len(inputs.ids),
        len(classifiers),
        sizes or sorted({c.preprocessing.eval_size for c in classifiers}),
        cfg.tta.hflip,
    )
    probabilities = predict_probabilities(
        classifiers,
        inputs.samples,
        sizes=sizes,
        hflip=cfg.tta.hflip,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        device=device,
        progress=cfg.progress,
    )
    path = write_submission(
        cfg.output.path,
        inputs.ids,
        probabilities,
        classifiers[0].class_names,
        format=cfg.output.format,
        id_column=cfg.output.id_column,
        label_column=cfg.output.label_column,
    )
    log.info("wrote %s (%d rows, format %s)", path, len(inputs.ids), cfg.output.format)
    print(path)


if __name__ == "__main__":
    main()
