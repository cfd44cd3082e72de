"""Export a checkpoint to ONNX and TorchScript at a chosen image size and check that each export
reproduces the PyTorch logits (onnxruntime for ONNX).

    python src/export.py checkpoint=run/checkpoints/last.ckpt image_size=224
    python src/export.py checkpoint=... formats=[onnx] output_dir=deploy/
"""

from effnetv2.cli import exit_on_user_error, set_environment_defaults

set_environment_defaults()

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from effnetv2.errors import CheckpointError  # noqa: E402
from effnetv2.inference.checkpoint import load_classifier  # noqa: E402
from effnetv2.inference.export import example_images, export, max_logit_difference  # noqa: E402

log = logging.getLogger("export")


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    if cfg.torch_threads:
        torch.set_num_threads(int(cfg.torch_threads))
    checkpoint = Path(cfg.checkpoint)
    classifier = load_classifier(checkpoint)
    size = int(cfg.image_size or classifier.preprocessing.eval_size)
    paths = export(classifier, size, list(cfg.formats), Path(cfg.output_dir), checkpoint.stem, cfg.opset)
    images = example_images(classifier, size, batch=cfg.check_batch, seed=1)
    failed = []
    for fmt in cfg.formats:
        difference = max_logit_difference(classifier, fmt, paths[fmt], images)
        verdict = "OK" if difference <= cfg.tolerance else "FAILED"
        tolerance = f"tolerance {cfg.tolerance:.0e}"
        print(f"{fmt} parity at {size}px: max |logit difference| = {difference:.2e} ({tolerance}) {verdict}")
        if difference > cfg.tolerance:
            failed.append(fmt)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if failed:
        raise CheckpointError(
            f"the {', '.join(failed)} export does not reproduce {checkpoint} within {cfg.tolerance}"
        )


if __name__ == "__main__":
    main()
