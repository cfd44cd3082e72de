"""Join the out-of-fold predictions of a K-fold multirun into a CV score and one OOF file.

python src/train.py -m experiment=finetune data.num_folds=5 data.fold=0,1,2,3,4 ...
python src/oof.py run_dir=outputs/train/multiruns/<time>
"""

from effnetv2.cli import exit_on_user_error, set_environment_defaults

set_environment_defaults()

import json  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from effnetv2.inference.oof import collect_out_of_fold, cv_scores, write_predictions  # noqa: E402


@hydra.main(version_base="1.3", config_path="../conf", config_name="oof")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    oof, files = collect_out_of_fold(cfg.run_dir)
    scores = cv_scores(oof)
    write_predictions(cfg.output_csv, oof)
    with open(cfg.output_json, "w") as file:
        json.dump({**scores, "files": [str(path) for path in files]}, file, indent=2)
    for fold, accuracy in scores["fold_accuracy"].items():
        print(f"fold {fold}: top-1 {accuracy:.4f}")
    folds = f"{len(scores['folds'])} of {scores['num_folds']} folds"
    score = f"top-1 {scores['accuracy']:.4f}, log loss {scores['log_loss']:.4f}"
    print(f"CV ({folds}, {scores['samples']} samples): {score}")
    print(f"OOF probabilities: {cfg.output_csv}\nscores: {cfg.output_json}")
    return scores["accuracy"]


if __name__ == "__main__":
    main()
