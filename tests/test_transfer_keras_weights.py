"""Keras MobileNetV2 ImageNet weights rebuilt from the zoo's LiteRT file (no download)."""

from __future__ import annotations

import numpy as np
import pytest

from imagerec.core.errors import ModelFileError, UsageError


@pytest.fixture(scope="module")
def zoo_weights(models_dir, tmp_path_factory):
    from imagerec.transfer.backbones.keras_weights import weights_from_zoo

    return weights_from_zoo("MobileNetV2", output=tmp_path_factory.mktemp("kw") / "mnv2.weights.h5")


def _photos(photos_dir, size: int) -> np.ndarray:
    from imagerec.core.preprocessing import Preprocessing
    from imagerec.core.images import load_pil, resize

    pre = Preprocessing(size=(size, size), resize="crop", normalization="uint8")
    names = ["cat_720p.jpg", "hot_dog.jpg", "kite_and_cold.jpg"]
    return np.stack([np.asarray(resize(load_pil(photos_dir / n, pre), pre)) for n in names])


def test_rebuilt_keras_model_embeds_like_the_int8_model(zoo_weights, photos_dir):
    import keras

    from imagerec import zoo
    from imagerec.backends.litert import LiteRTBackend

    spec = zoo.get("mobilenet_v2_tf2")
    litert = LiteRTBackend(zoo.fetch(spec.model), extra_outputs={"embedding": spec.embedding_tensor})
    batch = _photos(photos_dir, 224)
    reference = litert.run(batch, ("embedding",))["embedding"]
    model = keras.applications.MobileNetV2(include_top=False, weights=str(zoo_weights), pooling="avg",
                                           input_shape=(224, 224, 3))
    rebuilt = np.asarray(model.predict(batch.astype(np.float32) / 127.5 - 1, verbose=0))
    cosine = (reference * rebuilt).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(rebuilt, axis=1)
    assert cosine.min() > 0.99
    # Random weights are nowhere near: the comparison can fail.
    random = keras.applications.MobileNetV2(include_top=False, weights=None, pooling="avg", input_shape=(224, 224, 3))
    other = np.asarray(random.predict(batch.astype(np.float32) / 127.5 - 1, verbose=0))
    assert ((reference * other).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(other, axis=1)).max() < 0.9


@pytest.mark.slow  # over 4 s here
def test_zoo_weights_make_a_backbone_with_its_own_digest(models_dir, photos_dir):
    from imagerec.transfer.backbones import get_backbone
    from imagerec.transfer.backbones.keras import backbone_digest

    backbone = get_backbone("keras:MobileNetV2", weights="zoo", input_size=96)
    assert backbone.options["weights"] == "zoo" and backbone.dim == 1280
    digest = lambda w: backbone_digest("MobileNetV2", weights=w, pooling="avg", size=(96, 96), seed=0)  # noqa: E731
    assert backbone.sha256 == digest("zoo") != digest("imagenet")
    embeddings = backbone.embed_batch(_photos(photos_dir, 96))
    assert embeddings.shape == (3, 1280) and np.isfinite(embeddings).all() and embeddings.std() > 0


def test_what_cannot_be_rebuilt_is_refused_clearly(tmp_path):
    from imagerec.transfer.backbones.keras_weights import read_convolutions, weights_from_zoo

    with pytest.raises(UsageError, match="weights='zoo' exists for MobileNetV2 only"):
        weights_from_zoo("ResNet50")
    with pytest.raises(ModelFileError, match="not a LiteRT model file"):
        read_convolutions(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="LiteRT model file"):  # the right identifier, garbage after it
        read_convolutions(b"\x10\x00\x00\x00TFL3" + b"\xff" * 56)


def test_another_networks_file_is_refused_not_half_written(models_dir, tmp_path, monkeypatch):
    from imagerec.transfer.backbones.keras_weights import SOURCES, weights_from_zoo

    monkeypatch.setitem(SOURCES, "MobileNetV2", "mobilenet_v1_embedder")  # a zoo file of another network
    with pytest.raises(ModelFileError, match="mobilenet_v1_embedder has 27 convolutions"):
        weights_from_zoo("MobileNetV2", output=tmp_path / "wrong.weights.h5")
    assert list(tmp_path.iterdir()) == []


def test_the_weights_file_is_replaced_whole(models_dir, tmp_path):
    from imagerec.transfer.backbones.keras_weights import weights_from_zoo

    target = tmp_path / "mnv2.weights.h5"
    target.write_bytes(b"an older file")
    assert weights_from_zoo("MobileNetV2", output=target) == target
    assert target.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n" and target.stat().st_size > 1_000_000  # an HDF5 file
    assert [p.name for p in tmp_path.iterdir()] == ["mnv2.weights.h5"]  # no temporary file left
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_damaged_cached_weights_file_is_written_again(models_dir):
    from imagerec.transfer.backbones.keras import build_application
    from imagerec.transfer.backbones.keras_weights import weights_from_zoo

    from imagerec import zoo
    from imagerec.transfer.backbones.keras_weights import read_convolutions

    cached = weights_from_zoo("MobileNetV2")
    good = cached.read_bytes()
    cached.write_bytes(good[: len(good) // 3])  # e.g. a disk that filled up under another tool
    model = build_application("MobileNetV2", weights="zoo", input_size=96)
    first = read_convolutions(zoo.fetch(zoo.get("mobilenet_v2_tf2").model).read_bytes())[0][1]
    assert np.allclose(np.asarray(model.get_layer("Conv1").kernel), first)
    assert abs(len(cached.read_bytes()) - len(good)) < 4096  # whole again
