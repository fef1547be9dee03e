"""Float-input TFLite classifiers: normalisation from TFLite metadata, else from an option, else a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import imagerec
from imagerec.core.errors import ModelFileError, UsageError

FIXTURES = Path(__file__).parent / "fixtures" / "keras2"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / "reference.npz"))


def test_normalisation_and_labels_come_from_the_tflite_metadata(reference):
    recognizer = imagerec.load(FIXTURES / "float_classifier_metadata.tflite")
    assert recognizer.preprocessing.normalization == "tf"  # mean 127.5, std 127.5 in the metadata
    assert recognizer.labels == ["indoor", "outdoor"]  # the label file packed in the model
    np.testing.assert_allclose(recognizer.predict_proba(reference["pixels"]), reference["tm_model_unquant"], atol=1e-5)


def test_without_metadata_the_normalisation_is_an_option(reference):
    recognizer = imagerec.load(FIXTURES / "float_classifier.tflite", normalization="tf", labels=["a", "b"])
    np.testing.assert_allclose(recognizer.predict_proba(reference["pixels"]), reference["tm_model_unquant"], atol=1e-5)
    other = imagerec.load(FIXTURES / "float_classifier.tflite", normalization="unit")
    assert not np.allclose(other.predict_proba(reference["pixels"]), reference["tm_model_unquant"], atol=1e-3)


def test_without_metadata_or_option_the_error_says_what_is_missing():
    with pytest.raises(ModelFileError, match="normali[sz]ation") as caught:
        imagerec.load(FIXTURES / "float_classifier.tflite")
    assert "\n" not in str(caught.value)


def test_an_unknown_normalisation_name_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown normalization"):
        imagerec.load(FIXTURES / "float_classifier.tflite", normalization="imagenet")


def test_the_option_overrides_the_metadata(reference):
    recognizer = imagerec.load(FIXTURES / "float_classifier_metadata.tflite", normalization="unit")
    assert recognizer.preprocessing.normalization == "unit"


def test_the_command_line_takes_the_normalisation(photos_dir: Path, capsys):
    import json

    from typer.testing import CliRunner

    from imagerec.cli import app, run_app

    args = ["predict", "--model", str(FIXTURES / "float_classifier.tflite"), "--json", str(photos_dir / "parrot.jpg")]
    assert run_app(args) == 1
    assert "--normalization" in capsys.readouterr().err
    result = CliRunner().invoke(app, [*args, "--normalization", "tf"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["predictions"][0]["label"] in ("class_0", "class_1")
