"""Keras application backbones: exported once to ONNX, usable by learn / save / load / the CLI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import imagerec
from imagerec.core.errors import ModelFileError, UsageError
from imagerec.transfer.backbones import get_backbone

OPTIONS = {"weights": None, "input_size": 64}  # random weights: no download; small: a fast export


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from imagerec.data import make_shapes

    return make_shapes(tmp_path_factory.mktemp("kshapes"), per_class=8, size=64, seed=5, classes=["circle", "square"])


@pytest.fixture(scope="module")
def keras_backbone(shapes):
    return get_backbone("keras:MobileNetV2", **OPTIONS)


def test_keras_backbone_runs_through_onnx_and_is_cached(keras_backbone, shapes):
    from imagerec.backends.onnx import OnnxBackend

    assert isinstance(keras_backbone.backend, OnnxBackend)
    assert keras_backbone.dim == 1280 and keras_backbone.preprocessing.size == (64, 64)
    assert keras_backbone.preprocessing.normalization == "tf"
    again = get_backbone("keras:MobileNetV2", **OPTIONS)  # the cached export: same weights, same digest
    assert again.sha256 == keras_backbone.sha256
    files = sorted(str(p) for p in (shapes / "circle").iterdir())[:3]
    from imagerec.transfer.features import extract

    a = extract(files, keras_backbone, cache=None).embeddings
    b = extract(files, again, cache=None).embeddings
    assert np.array_equal(a, b) and np.abs(a).sum() > 0
    from imagerec.transfer.backbones.keras import backbone_digest

    # Other weights (another seed, another file) or another size: another digest.
    digest = lambda **kw: backbone_digest("MobileNetV2", **{"weights": None, "pooling": "avg", "size": (64, 64), "seed": 0, **kw})  # noqa: E731
    assert digest() == keras_backbone.sha256
    assert len({digest(), digest(seed=1), digest(size=(96, 96)), digest(pooling="max")}) == 4


def test_learn_save_load_with_a_keras_backbone(keras_backbone, shapes, tmp_path):
    model = imagerec.learn(shapes, backbone=keras_backbone, head="imprint")
    path = model.save(tmp_path / "k.imagerec")
    with zipfile.ZipFile(path) as archive:
        described = json.loads(archive.read("manifest.json"))["backbone"]
    assert described["kind"] == "keras" and described["options"]["application"] == "MobileNetV2"
    loaded = imagerec.load(path)
    files = sorted(str(p) for p in Path(shapes).rglob("*.png"))
    assert np.array_equal(loaded.predict_proba(files), model.predict_proba(files))

    # The application is also in the backbone's name: a manifest without the option still loads.
    del described["options"]["application"]
    bare = _with_backbone(path, tmp_path / "bare.imagerec", described)
    assert np.array_equal(imagerec.load(bare).predict_proba(files), model.predict_proba(files))
    described["options"]["colour"] = "blue"  # an option no Keras backbone takes
    with pytest.raises(ModelFileError, match="backbone entry is invalid.*colour"):
        imagerec.load(_with_backbone(path, tmp_path / "odd.imagerec", described))


def _with_backbone(src: Path, dest: Path, described: dict) -> Path:
    """A copy of ``src`` whose manifest describes the backbone as ``described`` (its checksum recomputed)."""
    import hashlib

    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(members["manifest.json"])
    manifest["backbone"] = described
    members["manifest.json"] = json.dumps(manifest).encode()
    members["manifest.sha256"] = hashlib.sha256(members["manifest.json"]).hexdigest().encode()
    with zipfile.ZipFile(dest, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return dest


def test_cli_learns_with_a_keras_backbone(keras_backbone, shapes, tmp_path, capsys):
    from imagerec.cli._app import run_app

    out = tmp_path / "cli.imagerec"
    code = run_app(["learn", str(shapes), "--backbone", "keras:MobileNetV2", "--weights", "none",
                    "--input-size", "64", "--head", "imprint", "-o", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["backbone"] == "keras:MobileNetV2"
    assert imagerec.load(out).labels == ["circle", "square"]
    assert run_app(["learn", str(shapes), "--weights", "none", "-o", str(out)]) == 2
    assert "keras: backbones" in capsys.readouterr().err


def test_bad_keras_backbones_are_refused(tmp_path):
    with pytest.raises(UsageError, match="unknown Keras backbone 'ResNet9000'"):
        get_backbone("keras:ResNet9000")
    with pytest.raises(ModelFileError, match="no such weights file"):
        get_backbone("keras:MobileNetV2", weights=tmp_path / "missing.weights.h5")
