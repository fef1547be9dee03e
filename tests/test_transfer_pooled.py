"""imagerec.transfer.backbones.pooled: the mobilenet_multi backbone (layers of two networks, mirror-averaged)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageOps

import imagerec
from imagerec.core.errors import ChecksumError, UsageError
from imagerec.transfer.features import extract
from imagerec.transfer.backbones import get_backbone
from imagerec.transfer.backbones.pooled import PRESETS, PooledBackend, pooled_backbone


@pytest.fixture(scope="module")
def multi(models_dir):
    return get_backbone("mobilenet_multi")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Three generated shapes, 10 training and 6 held-out images each (small: this backbone is slower)."""
    from imagerec.data import make_shapes

    root = make_shapes(tmp_path_factory.mktemp("shapes"), per_class=16, size=64, seed=5)
    split = {s: sorted(str(p) for p in (root / s).iterdir()) for s in ["circle", "square", "triangle"]}
    return {s: f[:10] for s, f in split.items()}, {s: f[10:] for s, f in split.items()}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_the_embedding_is_the_mirror_averaged_blocks_of_both_networks(multi, photos_dir):
    """The first block is mobilenet_v2's own embedding, normalised, averaged with its mirror image's."""
    batch = np.asarray(Image.open(photos_dir / "parrot.jpg").convert("RGB").resize((224, 224)))[None]
    mirrored = np.ascontiguousarray(batch[:, :, ::-1])
    v2 = imagerec.load("mobilenet_v2")
    zoo_embedding = v2.backend.run(np.concatenate([batch, mirrored]), ("embedding",))["embedding"]
    expected = (_unit(zoo_embedding[0]) + _unit(zoo_embedding[1])) / 2
    got = multi.embed_batch(batch)[0]
    assert got.shape == (3392,) and multi.dim == 3392
    np.testing.assert_allclose(got[:1280], expected, atol=1e-6)
    # Four blocks, each of unit length before the mirror average: never longer than 2.
    assert 1.0 < np.linalg.norm(got) <= 2.0 + 1e-5


def test_a_photo_and_its_mirror_image_embed_identically_and_runs_repeat(multi, photos_dir, tmp_path):
    photo = photos_dir / "cat_720p.jpg"
    mirror = tmp_path / "mirror.png"
    ImageOps.mirror(Image.open(photo).convert("RGB")).save(mirror)
    first = extract([str(photo)], multi, cache=None).embeddings[0, 0]
    again = extract([str(photo)], multi, cache=None).embeddings[0, 0]
    flipped = extract([str(mirror)], multi, cache=None).embeddings[0, 0]
    assert np.array_equal(first, again)
    cosine = float(first @ flipped / (np.linalg.norm(first) * np.linalg.norm(flipped)))
    assert cosine > 0.995  # the JPEG decode differs from the PNG only by rounding


def test_learn_save_load_predict_on_the_pooled_backbone(multi, shapes, tmp_path):
    train, held_out = shapes
    model = imagerec.learn(train, backbone=multi, head="logistic", cache=False)
    files = [f for c in model.labels for f in held_out[c]]
    truth = np.repeat(np.arange(len(model.labels)), [len(held_out[c]) for c in model.labels])
    scores = model.predict_proba(files)
    assert (scores.argmax(axis=1) == truth).mean() > 0.8  # chance is 1/3

    path = model.save(tmp_path / "shapes.imagerec")
    loaded = imagerec.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(files), scores)
    with zipfile.ZipFile(path) as archive:
        described = json.loads(archive.read("manifest.json"))["backbone"]
    assert (described["name"], described["kind"], described["dim"]) == ("mobilenet_multi", "pooled", 3392)


def test_a_file_learned_on_other_layers_is_refused(multi, shapes, tmp_path, monkeypatch):
    model = imagerec.learn(shapes[0], backbone=multi, head="imprint", cache=False)
    path = model.save(tmp_path / "shapes.imagerec")
    spec = PRESETS["mobilenet_multi"]
    changed = type(spec)(spec.name, spec.description, spec.parts, mirror=not spec.mirror)
    monkeypatch.setitem(PRESETS, "mobilenet_multi", changed)
    with pytest.raises(ChecksumError, match="sha256"):
        imagerec.load(path)


def test_export_refuses_a_pooled_recognizer_clearly(multi, shapes, tmp_path):
    from imagerec.export import export

    model = imagerec.learn(shapes[0], backbone=multi, head="imprint", cache=False)
    with pytest.raises(UsageError, match="pooled backbone 'mobilenet_multi' cannot be exported"):
        export(model, "onnx", output=tmp_path / "m.onnx")


def test_bad_requests_get_clear_errors(multi):
    with pytest.raises(UsageError, match="takes no options"):
        get_backbone("mobilenet_multi", weights="imagenet")
    with pytest.raises(UsageError, match="unknown pooled backbone"):
        pooled_backbone("mobilenet_many")
    with pytest.raises(UsageError, match="only an 'embedding' output"):
        multi.backend.run(np.zeros((1, 224, 224, 3), np.uint8), ("scores",))
    assert isinstance(multi.backend, PooledBackend)
