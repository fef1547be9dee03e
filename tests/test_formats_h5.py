"""Keras 2 ``.h5`` files (tests/fixtures/keras2, written by TensorFlow's Keras 2) load and answer as Keras 2 did."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import imagerec
from imagerec.core.errors import ModelFileError

FIXTURES = Path(__file__).parent / "fixtures" / "keras2"
pytestmark = pytest.mark.slow  # each test rebuilds a network in Keras and exports it to ONNX once


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / "reference.npz"))


def test_a_course_h5_answers_as_keras_2_with_the_labels_stored_in_it(reference):
    recognizer = imagerec.load(FIXTURES / "course_cnn.h5")
    assert recognizer.labels == ["cat", "dog", "hot dog"]
    assert recognizer.preprocessing.normalization == "unit"
    np.testing.assert_allclose(recognizer.predict_proba(reference["pixels"]), reference["course_cnn"], atol=1e-5)


def test_labels_given_replace_the_stored_ones(reference):
    recognizer = imagerec.load(FIXTURES / "course_cnn.h5", labels=["a", "b", "c"])
    assert recognizer.labels == ["a", "b", "c"]


def test_a_weights_only_file_loads_into_the_network_built_in_code(reference):
    from imagerec.core.keras_backend import import_keras

    keras = import_keras()
    layers = keras.layers
    network = keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Conv2D(8, 3, activation="relu", padding="same", name="conv2d"),
        layers.MaxPooling2D(name="max_pooling2d"),
        layers.BatchNormalization(name="batch_normalization"),
        layers.Conv2D(8, 3, activation="relu", name="conv2d_1"),
        layers.Flatten(name="flatten"),
        layers.Dropout(0.5, name="dropout"),
        layers.Dense(3, activation="softmax", name="dense"),
    ])
    recognizer = imagerec.load(FIXTURES / "course_cnn_weights.h5", architecture=network, labels=["a", "b", "c"])
    np.testing.assert_allclose(recognizer.predict_proba(reference["pixels"]), reference["course_cnn"], atol=1e-5)


def test_a_weights_only_file_without_an_architecture_says_what_is_missing():
    with pytest.raises(ModelFileError, match="weights only"):
        imagerec.load(FIXTURES / "course_cnn_weights.h5")


def test_a_file_that_is_not_hdf5_is_a_one_line_error(tmp_path: Path):
    fake = tmp_path / "model.h5"
    fake.write_bytes(b"not hdf5 at all")
    with pytest.raises(ModelFileError, match="not an HDF5 file"):
        imagerec.load(fake)


def test_a_lambda_layer_is_refused(tmp_path: Path):
    import h5py
    import json

    path = tmp_path / "lambda.h5"
    shutil.copy(FIXTURES / "course_cnn.h5", path)
    with h5py.File(path, "a") as handle:
        config = json.loads(handle.attrs["model_config"])
        config["config"]["layers"].append({"class_name": "Lambda", "config": {"name": "code", "function": "..."}})
        handle.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ModelFileError, match="Lambda"):
        imagerec.load(path)


def test_the_second_load_reuses_the_cached_export(monkeypatch, reference):
    from imagerec.formats import h5

    imagerec.load(FIXTURES / "course_cnn.h5")

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the network was rebuilt although its export is cached")

    monkeypatch.setattr(h5, "load_h5_model", no_rebuild)
    recognizer = imagerec.load(FIXTURES / "course_cnn.h5")
    np.testing.assert_allclose(recognizer.predict_proba(reference["pixels"]), reference["course_cnn"], atol=1e-5)
