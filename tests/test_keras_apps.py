"""Keras Applications as zoo models: verified downloads (from a local server), ONNX answers equal Keras's predict."""

from __future__ import annotations

import dataclasses
import hashlib
import io

import numpy as np
import pytest

import imagerec
from imagerec import zoo
from imagerec.core.errors import ChecksumError, OfflineError

NAME = "mobilenet_v3_large"  # the lightest of the Keras models in the zoo


def keras2_weights_file(model) -> bytes:
    """``model``'s weights laid out as Keras 2's ``save_weights`` (and so Keras's published files) lay them out."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        names = []
        for layer in model.layers:
            weights = layer.trainable_weights + layer.non_trainable_weights
            group = handle.create_group(layer.name)
            weight_names = [f"{layer.name}/{w.name}:0" for w in weights]
            group.attrs["weight_names"] = np.array([n.encode() for n in weight_names])
            for name, weight in zip(weight_names, weights):
                group.create_dataset(name, data=np.asarray(weight.numpy()))
            names.append(layer.name)
        handle.attrs["layer_names"] = np.array([n.encode() for n in names])
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.4.0"
    return buffer.getvalue()


@pytest.fixture(scope="module")
def random_network():
    """A randomly initialised MobileNetV3Large with its classifier, and its weights file in Keras 2's layout."""
    from imagerec.core.keras_backend import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Large(weights=None, include_top=True)
    return model, keras2_weights_file(model)


@pytest.fixture
def served(random_network, http_server, tmp_path, monkeypatch):
    """The zoo's spec pointed at the local server, whose file has its own md5; a fresh cache, downloads allowed."""
    _, content = random_network
    original = zoo.get(NAME)
    path = "/keras-applications/mobilenet_v3/" + original.model.filename
    http_server.routes[path] = (200, {}, content)
    remote = zoo.RemoteFile(original.model.filename, http_server.url + path, hashlib.md5(content).hexdigest())
    zoo.register(dataclasses.replace(original, model=remote), replace=True)
    monkeypatch.setenv("IMAGEREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("IMAGEREC_OFFLINE", "0")
    yield http_server, remote, content
    zoo.register(original, replace=True)


@pytest.mark.slow
def test_a_keras_model_is_downloaded_verified_and_answers_as_keras_predict(random_network, served, photos_dir, tmp_path):
    model, _ = random_network
    server, remote, _ = served
    recognizer = imagerec.load(NAME)
    assert len(server.requests) == 1
    assert recognizer.labels[285] == "Egyptian cat"  # Keras's ImageNet indices
    batch = recognizer.preprocess([photos_dir / "parrot.jpg", photos_dir / "cat_720p.jpg"])
    expected = np.asarray(model.predict(batch.astype(np.float32), verbose=0))  # include_preprocessing: raw pixels
    got = recognizer.predict_proba(batch)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-6)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()
    imagerec.load(NAME)  # the second time: the cached export, no download
    assert len(server.requests) == 1
    from imagerec.transfer.backbones import get_backbone

    backbone = get_backbone(NAME)  # what `imagerec learn --backbone mobilenet_v3_large` uses
    assert backbone.dim == 1280 and backbone.run(batch).shape == (2, 1280)
    from imagerec.transfer.learning import learn

    shots = photos_dir / "few-shot"
    data = {"cat": [shots / "cat_train_0.bmp"], "hot dog": [shots / "hotdog_train_0.bmp", shots / "hotdog_train_1.bmp"]}
    learned = learn(data, backbone=NAME, threshold=None)
    saved = learned.save(tmp_path / "mine.imagerec")
    again = imagerec.load(saved)
    np.testing.assert_allclose(again.predict_proba(batch), learned.predict_proba(batch), atol=1e-5)


def test_a_file_with_another_hash_is_discarded(served):
    server, remote, content = served
    server.routes[remote.url.removeprefix(server.url)] = (200, {}, content[:-10] + b"0123456789")
    with pytest.raises(ChecksumError, match="md5"):
        zoo.fetch(remote)
    assert not (zoo.cache_dir() / remote.filename).exists()


def test_offline_the_error_names_the_file_and_where_to_put_it(served, monkeypatch):
    _, remote, _ = served
    monkeypatch.setenv("IMAGEREC_OFFLINE", "1")
    with pytest.raises(OfflineError) as caught:
        zoo.fetch(remote)
    message = str(caught.value)
    assert remote.filename in message and str(zoo.cache_dir()) in message and remote.sha256 in message


def test_a_file_in_the_model_dir_is_used_without_downloading(served, tmp_path, monkeypatch):
    server, remote, content = served
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / remote.filename).write_bytes(content)
    monkeypatch.setenv("IMAGEREC_MODEL_DIR", str(folder))
    assert zoo.fetch(remote) == folder / remote.filename
    assert server.requests == []


def test_every_keras_model_is_listed_with_size_top1_and_input(capsys):
    from imagerec.cli import run_app

    assert run_app(["models", "list", "--json"]) == 0
    import json

    listed = {row["name"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    for name in ("vgg16", "resnet50", "efficientnet_v2_b0", "efficientnet_v2_s", "convnext_tiny", NAME):
        assert listed[name]["top1"] > 70 and listed[name]["size_mb"] > 0 and listed[name]["backend"] == "keras"
    assert listed["efficientnet_v2_s"]["input_size"] == [384, 384]
    assert listed["vgg16"]["preprocessing"]["normalization"] == "caffe"


def test_keras_names_are_accepted_as_aliases():
    assert zoo.get("keras:ResNet50").name == "resnet50"


@pytest.fixture
def learned_on_keras_zoo(served, photos_dir):
    """A recognizer learned on the (random-weights) Keras zoo backbone, as `imagerec learn --backbone` makes it."""
    shots = photos_dir / "few-shot"
    data = {"cat": [shots / "cat_train_0.bmp"], "hot dog": [shots / "hotdog_train_0.bmp", shots / "hotdog_train_1.bmp"]}
    return imagerec.learn(data, backbone=NAME, threshold=None, cache=False)


def _assert_reloads_with_the_same_scores(result, source_scores, batch):
    from imagerec.export import TOLERANCE

    assert result.check.ok and result.check.max_abs_diff <= TOLERANCE
    exported = imagerec.load(result.path)
    np.testing.assert_allclose(exported.predict_proba(batch), source_scores, atol=TOLERANCE)


@pytest.mark.slow
def test_a_keras_zoo_model_exports_to_onnx_by_name(served, photos_dir, tmp_path):
    from imagerec.export import export

    source = imagerec.load(NAME)
    batch = source.preprocess([photos_dir / "parrot.jpg", photos_dir / "cat_720p.jpg"])
    result = export(NAME, "onnx", tmp_path / "v3.onnx", samples=[photos_dir / "parrot.jpg"])
    _assert_reloads_with_the_same_scores(result, source.predict_proba(batch), batch)
    assert result.outputs == ("scores",)
    assert imagerec.load(result.path).labels == source.labels


@pytest.mark.slow
def test_a_recognizer_learned_on_a_keras_zoo_model_exports_to_onnx(learned_on_keras_zoo, photos_dir, tmp_path):
    from imagerec.export import export

    saved = learned_on_keras_zoo.save(tmp_path / "mine.imagerec")
    batch = learned_on_keras_zoo.preprocess([photos_dir / "parrot.jpg", photos_dir / "hot_dog.jpg"])
    result = export(saved, "onnx", tmp_path / "mine.onnx")
    _assert_reloads_with_the_same_scores(result, learned_on_keras_zoo.predict_proba(batch), batch)
    assert imagerec.load(result.path).labels == ["cat", "hot dog"]


@pytest.mark.slow
def test_a_keras_zoo_model_and_a_recognizer_learned_on_it_export_to_tflite(served, learned_on_keras_zoo, photos_dir,
                                                                             tmp_path):
    from imagerec.export import export

    source = imagerec.load(NAME)
    batch = source.preprocess([photos_dir / "parrot.jpg"])
    result = export(NAME, "tflite", tmp_path / "v3.tflite")
    _assert_reloads_with_the_same_scores(result, source.predict_proba(batch), batch)
    result = export(learned_on_keras_zoo, "tflite", tmp_path / "mine.tflite")
    _assert_reloads_with_the_same_scores(result, learned_on_keras_zoo.predict_proba(batch), batch)


def test_a_keras_zoo_model_has_no_keras_export(served, tmp_path, monkeypatch):
    from imagerec.core.errors import UsageError
    from imagerec.export import export

    with pytest.raises(UsageError, match="keras.applications.MobileNetV3Large"):
        export(NAME, "keras", tmp_path / "v3.keras")


@pytest.mark.slow
def test_a_keras_zoo_model_serves_and_evaluates_by_name(served, photos_dir, tmp_path):
    import warnings

    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

    from imagerec.serving import ServeConfig, create_app

    recognizer = imagerec.load(NAME)
    expected = recognizer.predict(photos_dir / "parrot.jpg", top_k=3)[0]
    with TestClient(create_app([recognizer], ServeConfig())) as client:
        reply = client.post("/v1/predict", files={"file": ("parrot.jpg", (photos_dir / "parrot.jpg").read_bytes())},
                            params={"top_k": 3})
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == NAME
        predictions = reply.json()["results"][0]["predictions"]
    assert [p["label"] for p in predictions] == [p.label for p in expected]
    np.testing.assert_allclose([p["score"] for p in predictions], [p.score for p in expected], atol=1e-6)

    folder = tmp_path / "photos"
    for label, photo in (("Egyptian cat", "cat_720p.jpg"), ("African grey", "parrot.jpg")):
        (folder / label).mkdir(parents=True)
        (folder / label / photo).write_bytes((photos_dir / photo).read_bytes())
    evaluation = imagerec.evaluate(NAME, folder, progress=False)
    assert evaluation.model == NAME and len(evaluation.paths) == 2
    by_path = dict(zip(evaluation.paths, evaluation.predicted_labels))
    for path, label in by_path.items():
        assert label == recognizer.predict(path)[0].label


@pytest.mark.slow
def test_a_keras_zoo_model_is_explained_by_grad_cam_in_python_and_over_http(served, photos_dir):
    from fastapi.testclient import TestClient

    from imagerec.serving import create_app

    recognizer = imagerec.load(NAME)
    parrot = photos_dir / "parrot.jpg"
    heat = recognizer.explain(parrot)  # auto: the Keras model gives gradients
    assert heat.method == "grad-cam" and heat.runs == 2 and heat.map.shape == (929, 512)
    assert heat.label == recognizer.predict(parrot, top_k=1)[0].label
    assert recognizer.explain(parrot, method="occlusion").method == "occlusion"
    with TestClient(create_app([recognizer])) as client:
        reply = client.post("/v1/explain?method=grad-cam", files={"file": ("parrot.jpg", parrot.read_bytes())})
    assert reply.status_code == 200, reply.text
    result = reply.json()["results"][0]
    assert result["method"] == "grad-cam" and result["label"] == heat.label and result["peak"] == heat.peak


@pytest.mark.slow
def test_a_network_with_layer_normalisation_converts_to_onnx(tmp_path):
    """ConvNeXt's LayerNormalization: Keras on torch passes the traced shape as ``normalized_shape``."""
    import onnxruntime as ort

    from imagerec.core.keras_backend import import_keras
    from imagerec.formats.keras_onnx import export_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.LayerNormalization(epsilon=1e-6)(keras.layers.Conv2D(4, 1)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    path = export_keras(model, tmp_path / "ln.onnx")  # checked against Keras (1e-4) as it is written
    pixels = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 3)).astype(np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["scores"], {"images": pixels})[0]
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(pixels)), atol=1e-5)
