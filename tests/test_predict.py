"""Prediction: test-time augmentation and fold ensembles average the right views, inputs keep their
order and ids, submissions are valid Kaggle files, and mistakes in the inputs fail clearly."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from effnetv2.errors import ConfigError, DataError
from effnetv2.inference.checkpoint import expand_checkpoint_paths, load_classifier
from effnetv2.inference.inputs import csv_inputs, folder_inputs
from effnetv2.inference.predictor import predict_probabilities
from effnetv2.inference.submission import write_submission
from helpers.paths import ROOT

pytest_plugins = ["fixtures_data", "fixtures_inference"]


def read_rows(path) -> list[list[str]]:
    with open(path, newline="") as file:
        return list(csv.reader(file))


def test_loaded_checkpoint_keeps_classes_and_preprocessing(make_checkpoint) -> None:
    classifier = load_classifier(make_checkpoint("xy", ("x", "y"), eval_size=40))
    assert classifier.class_names == ["x", "y"]
    assert classifier.preprocessing.eval_size == 40
    assert classifier.preprocessing.mean == (0.5, 0.5, 0.5)
    assert not classifier.model.training


def test_tta_and_ensemble_average_every_view(make_checkpoint, square_images) -> None:
    """Two checkpoints x two sizes x (image, mirror image) = the mean of eight single predictions."""
    classifiers = [load_classifier(make_checkpoint(f"fold{i}", seed=i)) for i in range(2)]
    images = folder_inputs(square_images / "images").samples
    flipped = folder_inputs(square_images / "flipped").samples
    combined = predict_probabilities(classifiers, images, sizes=[32, 40], hflip=True, progress=False)
    singles = [
        predict_probabilities([classifier], samples, sizes=[size], progress=False)
        for classifier in classifiers
        for size in (32, 40)
        for samples in (images, flipped)
    ]
    assert combined.shape == (5, 3)
    np.testing.assert_allclose(combined.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(combined, np.mean(singles, axis=0), atol=1e-5)
    assert np.abs(singles[0] - singles[1]).max() > 1e-3, "flipping must change the prediction for this check"
    assert np.abs(singles[0] - singles[4]).max() > 1e-3, "the two checkpoints must differ for this check"


def test_each_checkpoint_predicts_at_its_own_eval_size_by_default(make_checkpoint, square_images) -> None:
    small = load_classifier(make_checkpoint("small", eval_size=32))
    large = load_classifier(make_checkpoint("large", eval_size=48))
    images = folder_inputs(square_images / "images").samples
    default = predict_probabilities([small, large], images, progress=False)
    expected = (
        predict_probabilities([small], images, sizes=[32], progress=False)
        + predict_probabilities([large], images, sizes=[48], progress=False)
    ) / 2
    np.testing.assert_allclose(default, expected, atol=1e-6)


def test_ensemble_of_different_classes_is_refused(make_checkpoint, square_images) -> None:
    a = load_classifier(make_checkpoint("cat_dog", ("cat", "dog")))
    b = load_classifier(make_checkpoint("dog_cat", ("dog", "cat")))
    with pytest.raises(ConfigError, match="disagree on the classes"):
        predict_probabilities([a, b], folder_inputs(square_images / "images").samples, progress=False)


def test_csv_inputs_keep_row_order_and_name_missing_images(square_images) -> None:
    (square_images / "sample.csv").write_text("id,label\nimg3,x\nimg0,x\nimg4.png,x\n")
    inputs = csv_inputs(square_images / "sample.csv", square_images / "images", extension=".png")
    assert inputs.ids == ["img3", "img0", "img4.png"]
    assert [p.name for p in inputs.samples.paths] == ["img3.png", "img0.png", "img4.png"]
    (square_images / "broken.csv").write_text("id\nimg1\nnot_there\n")
    with pytest.raises(DataError, match="not_there.png"):
        csv_inputs(square_images / "broken.csv", square_images / "images", extension=".png")
    with pytest.raises(ConfigError, match="no column 'image'"):
        csv_inputs(square_images / "sample.csv", square_images / "images", id_column="image")


def test_folder_ids_are_relative_paths(square_images) -> None:
    assert folder_inputs(square_images / "images").ids[:2] == ["img0.png", "img1.png"]
    assert folder_inputs(square_images / "images", strip_extension=True).ids[0] == "img0"


def test_submission_formats(tmp_path) -> None:
    probabilities = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]])
    labels = write_submission(tmp_path / "l.csv", ["b", "a"], probabilities, ["cat", "dog", "frog"])
    assert read_rows(labels) == [["id", "label"], ["b", "dog"], ["a", "cat"]]
    probs = write_submission(
        tmp_path / "p.csv",
        ["b", "a"],
        probabilities,
        ["cat", "dog", "frog"],
        format="probabilities",
        id_column="image",
    )
    rows = read_rows(probs)
    assert rows[0] == ["image", "cat", "dog", "frog"]
    np.testing.assert_allclose(np.array(rows[1:])[:, 1:].astype(float), probabilities)
    with pytest.raises(ConfigError, match="output.format"):
        write_submission(tmp_path / "x.csv", ["a"], probabilities[:1], ["cat", "dog", "frog"], format="top3")


@pytest.mark.subprocess
@pytest.mark.timeout(300)
def test_predict_cli_writes_a_submission_for_every_csv_id(make_checkpoint, square_images, tmp_path) -> None:
    checkpoints = [make_checkpoint(f"fold{i}", seed=i) for i in range(2)]
    (square_images / "sample_submission.csv").write_text(
        "id,label\n" + "".join(f"img{i},?\n" for i in (4, 2, 0, 1, 3))
    )
    output = tmp_path / "submission.csv"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "src/predict.py",
            f"checkpoints=[{checkpoints[0].parent}/fold*.ckpt]",
            f"input.csv={square_images / 'sample_submission.csv'}",
            f"input.image_dir={square_images / 'images'}",
            "input.extension=.png",
            "tta.hflip=true",
            "tta.sizes=[32,40]",
            "output.format=probabilities",
            f"output.path={output}",
            "num_workers=0",
            "progress=false",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_rows(output)
    assert rows[0] == ["id", "cat", "dog", "frog"]
    assert [row[0] for row in rows[1:]] == ["img4", "img2", "img0", "img1", "img3"]
    np.testing.assert_allclose(np.array(rows[1:])[:, 1:].astype(float).sum(axis=1), 1.0, atol=1e-4)


def test_checkpoint_patterns_expand_in_order_and_must_match(make_checkpoint, tmp_path) -> None:
    fold0, fold1 = make_checkpoint("fold0", seed=0), make_checkpoint("fold1", seed=1)
    assert expand_checkpoint_paths([f"{fold0.parent}/fold*.ckpt", str(fold0)]) == [fold0, fold1, fold0]
    with pytest.raises(ConfigError, match="matches no file"):
        expand_checkpoint_paths([f"{tmp_path}/nothing*.ckpt"])
