"""Teachable Machine exports: the real keras_model.h5 gives TensorFlow's scores; the .tflite exports load with their labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import imagerec
from imagerec.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "keras2"


@pytest.fixture(scope="module")
def water_bottles(models_dir: Path) -> Path:
    folder = models_dir / "teachable-machine"
    if not (folder / "water_bottles_keras_model.h5").is_file():
        pytest.skip("the Teachable Machine export is not in ../shared/models")
    return folder


@pytest.mark.slow
def test_the_real_export_gives_the_scores_tensorflow_gives(water_bottles: Path, photos_dir: Path):
    reference = json.loads((water_bottles / "water_bottles_reference.json").read_text())
    recognizer = imagerec.load(water_bottles / "water_bottles_keras_model.h5")
    assert recognizer.labels == ["5 Galoon", "500ML"]  # from the labels file beside it
    for photo, expected in reference["scores"].items():
        path = photos_dir.parent / photo
        scores = recognizer.predict_proba(path)[0]
        np.testing.assert_allclose(scores, expected, atol=1e-3, err_msg=photo)
        assert recognizer.predict(path, top_k=1)[0][0].label == recognizer.labels[int(np.argmax(expected))]


@pytest.mark.slow
def test_predict_on_the_command_line_with_labels_given(water_bottles: Path, photos_dir: Path, tmp_path: Path):
    from typer.testing import CliRunner

    model = tmp_path / "keras_model.h5"  # the name Teachable Machine gives it, no labels beside
    shutil.copy(water_bottles / "water_bottles_keras_model.h5", model)
    result = CliRunner().invoke(app, ["predict", "--model", str(model), "--labels",
                                      str(water_bottles / "water_bottles_labels.txt"), "--json",
                                      str(photos_dir / "parrot.jpg")])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout.splitlines()[0])
    assert answer["predictions"][0]["label"] == "5 Galoon"
    assert answer["predictions"][0]["score"] == pytest.approx(0.997382, abs=1e-3)


@pytest.mark.slow
def test_a_small_export_laid_out_as_teachable_machine_does_loads_with_its_preprocessing():
    reference = np.load(FIXTURES / "reference.npz")
    recognizer = imagerec.load(FIXTURES / "tm_keras_model.h5")
    assert recognizer.labels == ["Class 1", "Class 2"]
    assert (recognizer.preprocessing.normalization, recognizer.preprocessing.resample) == ("tf", "lanczos")
    np.testing.assert_allclose(recognizer.predict_proba(reference["pixels"]), reference["tm_keras_model"], atol=1e-5)


@pytest.mark.parametrize("name, key, normalization", [
    ("tm_model_unquant.tflite", "tm_model_unquant", "tf"),
    ("tm_model.tflite", "tm_model", "uint8"),
])
def test_the_tflite_exports_load_with_their_labels_and_preprocessing(name, key, normalization):
    reference = np.load(FIXTURES / "reference.npz")
    recognizer = imagerec.load(FIXTURES / name)
    assert recognizer.labels == ["Class 1", "Class 2"]
    assert (recognizer.preprocessing.normalization, recognizer.preprocessing.resample) == (normalization, "lanczos")
    np.testing.assert_allclose(recognizer.predict_proba(reference["pixels"]), reference[key], atol=1e-5)


def test_an_export_renamed_without_labels_beside_is_an_ordinary_tflite(tmp_path: Path):
    path = tmp_path / "model.tflite"
    shutil.copy(FIXTURES / "tm_model.tflite", path)
    assert imagerec.load(path).labels == ["class_0", "class_1"]
    shutil.copy(FIXTURES / "tm_labels.txt", tmp_path / "labels.txt")
    assert imagerec.load(path).labels == ["Class 1", "Class 2"]
