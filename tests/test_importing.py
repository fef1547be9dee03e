"""``imagerec import``: Keras 2 / Teachable Machine files become files that carry their labels and preprocessing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import imagerec
from imagerec.cli import run_app
from imagerec.core.errors import UsageError
from imagerec.importing import import_model

FIXTURES = Path(__file__).parent / "fixtures" / "keras2"


@pytest.mark.slow
def test_the_real_teachable_machine_h5_becomes_a_keras_file_with_the_same_scores(models_dir, photos_dir, tmp_path):
    folder = models_dir / "teachable-machine"
    if not (folder / "water_bottles_keras_model.h5").is_file():
        pytest.skip("the Teachable Machine export is not in ../shared/models")
    reference = json.loads((folder / "water_bottles_reference.json").read_text())
    output = import_model(folder / "water_bottles_keras_model.h5", tmp_path / "water.keras")
    recognizer = imagerec.load(output)  # no label file, no option: the file carries them
    assert recognizer.labels == ["5 Galoon", "500ML"]
    for photo, expected in reference["scores"].items():
        scores = recognizer.configure(refine_margin=1.0).predict_proba(photos_dir.parent / photo)[0]
        np.testing.assert_allclose(scores, expected, atol=1e-3, err_msg=photo)


@pytest.mark.slow
def test_an_imported_h5_exports_to_onnx(tmp_path):
    output = import_model(FIXTURES / "tm_keras_model.h5", tmp_path / "tm.keras")
    from imagerec.export import export

    result = export(output, "onnx")
    assert result.check.ok
    assert imagerec.load(result.path).labels == ["Class 1", "Class 2"]


def test_a_tflite_export_carries_its_labels_and_preprocessing(tmp_path, capsys):
    output = tmp_path / "bottles.tflite"
    assert run_app(["import", str(FIXTURES / "tm_model_unquant.tflite"), "-o", str(output)]) == 0
    recognizer = imagerec.load(output)
    assert recognizer.labels == ["Class 1", "Class 2"]
    assert (recognizer.preprocessing.normalization, recognizer.preprocessing.resample) == ("tf", "lanczos")
    reference = np.load(FIXTURES / "reference.npz")
    np.testing.assert_allclose(recognizer.predict_proba(reference["pixels"]), reference["tm_model_unquant"], atol=1e-5)


def test_a_float_tflite_without_metadata_is_imported_with_the_normalisation_given(tmp_path):
    output = import_model(FIXTURES / "float_classifier.tflite", tmp_path / "f.tflite", normalization="tf",
                          labels=["in", "out"])
    assert imagerec.load(output).preprocessing.normalization == "tf"


def test_the_output_suffix_must_fit_the_source(tmp_path):
    with pytest.raises(UsageError, match=r"\.keras"):
        import_model(FIXTURES / "tm_keras_model.h5", tmp_path / "tm.imagerec")
    assert not (tmp_path / "tm.imagerec").exists()
