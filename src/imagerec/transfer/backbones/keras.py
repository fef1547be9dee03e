"""Keras applications as frozen backbones, run through ONNX Runtime.

``keras.applications`` models are built with ``include_top=False`` and a
global pooling layer, exported once to ONNX (:func:`imagerec.formats.keras_onnx.export_keras`,
cached by :func:`backbone_digest`) and run by
:class:`~imagerec.backends.onnx.OnnxBackend` — inference never runs through
Keras eagerly (MobileNet V2 float: 5 images/s eager vs 81 images/s in ONNX
Runtime here). The backbone's ``sha256`` (:func:`backbone_digest`) names the
application, input size, pooling and weights, so a learned head is only
ever used with the weights it was learned on.

Weights: ``"imagenet"`` uses Keras's own download cache (``~/.keras/models``;
Keras downloads the file when it is missing and the network allows),
``"zoo"`` rebuilds MobileNetV2's ImageNet weights from the zoo's LiteRT file
(:mod:`imagerec.transfer.backbones.keras_weights`; no download), a path names a
weights file, and ``None`` gives random weights from ``seed`` (for tests:
deterministic, but not useful features).

>>> from imagerec.transfer.backbones.keras import APPLICATIONS
>>> APPLICATIONS["ResNet50"].normalization
'caffe'
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ...backends.onnx import OnnxBackend
from ...core.errors import DownloadError, ModelFileError, UsageError
from ...core.keras_backend import import_keras
from ...core.preprocessing import Preprocessing
from ...formats.keras_onnx import export_keras
from ...zoo import cache_dir, sha256_file
from .base import Backbone
from .keras_weights import weights_from_zoo, zoo_weights_digest

__all__ = ["KerasApplication", "APPLICATIONS", "keras_backbone", "build_application", "backbone_digest"]


@dataclass(frozen=True)
class KerasApplication:
    """How to build one ``keras.applications`` model and feed it pixels."""

    builder: str
    normalization: str  # what OnnxBackend does to uint8 pixels (see imagerec.backends.onnx)
    default_size: int = 224
    own_preprocessing: bool = False  # the model rescales 0–255 input itself (include_preprocessing)


APPLICATIONS: dict[str, KerasApplication] = {
    "MobileNetV2": KerasApplication("MobileNetV2", "tf"),
    "MobileNetV3Small": KerasApplication("MobileNetV3Small", "uint8", own_preprocessing=True),
    "MobileNetV3Large": KerasApplication("MobileNetV3Large", "uint8", own_preprocessing=True),
    "VGG16": KerasApplication("VGG16", "caffe"),
    "ResNet50": KerasApplication("ResNet50", "caffe"),
    "EfficientNetV2B0": KerasApplication("EfficientNetV2B0", "uint8", own_preprocessing=True),
    "EfficientNetV2S": KerasApplication("EfficientNetV2S", "uint8", 384, own_preprocessing=True),
}


def build_application(
    application: str, *, weights: str | os.PathLike[str] | None = "imagenet", pooling: str = "avg",
    input_size: int | tuple[int, int] | None = None, seed: int = 0,
):
    """The Keras model: ``include_top=False`` + ``pooling``, on ``input_size`` images."""
    keras = import_keras()
    if application not in APPLICATIONS:
        raise UsageError(f"unknown Keras backbone {application!r}; choose one of {', '.join(APPLICATIONS)}")
    if pooling not in ("avg", "max"):
        raise UsageError(f"pooling must be 'avg' or 'max', got {pooling!r}")
    spec = APPLICATIONS[application]
    size = input_size or spec.default_size
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    builder = getattr(keras.applications, spec.builder)
    kwargs = {"include_top": False, "pooling": pooling, "input_shape": (height, width, 3)}
    if spec.own_preprocessing:
        kwargs["include_preprocessing"] = True
    if weights is None:
        keras.utils.set_random_seed(seed)
        return builder(weights=None, **kwargs)
    if weights == "zoo":
        try:
            return _from_file(builder, weights_from_zoo(application), application, kwargs)
        except ModelFileError:  # imagerec's own cached file is damaged: write it again
            return _from_file(builder, weights_from_zoo(application, rebuild=True), application, kwargs)
    if weights != "imagenet":
        return _from_file(builder, Path(weights), application, kwargs)
    try:
        return builder(weights="imagenet", **kwargs)
    except Exception as exc:  # Keras's get_file raises plain Exceptions on network failure
        raise DownloadError(
            f"Keras's ImageNet weights for {application} are not in Keras's cache (~/.keras/models) and could "
            f"not be downloaded ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "put the file there or pass weights=PATH",
        ) from exc


def _from_file(builder, path: Path, application: str, kwargs: dict):
    if not path.is_file():
        raise ModelFileError(f"{path}: no such weights file for {application}", path=str(path))
    try:
        return builder(weights=str(path), **kwargs)
    except (ValueError, OSError) as exc:
        raise ModelFileError(f"{path}: not weights for {application} with include_top=False ({exc})", path=str(path)) from exc


def backbone_digest(
    application: str, *, weights: str | os.PathLike[str] | None, pooling: str, size: tuple[int, int], seed: int
) -> str:
    """sha256 naming exactly these weights and this graph, computed without building the model.

    Weights are identified by their file's sha256 (a path), by Keras's
    version (``"imagenet"``: Keras pins each weights file by hash), or by
    the seed and Keras's version (random weights).
    """
    if weights is None:
        source = f"random:seed={seed}:keras={_keras_version()}"
    elif weights == "imagenet":
        source = f"imagenet:keras={_keras_version()}"
    elif weights == "zoo":
        source = f"zoo:{zoo_weights_digest(application)}"
    else:
        path = Path(weights)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such weights file for {application}", path=str(path))
        source = f"file:{sha256_file(path)}"
    recipe = [application, pooling, list(size), APPLICATIONS[application].normalization, source, "include_top=False"]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()


def _keras_version() -> str:
    from importlib.metadata import version

    return version("keras")


def keras_backbone(
    application: str,
    *,
    weights: str | os.PathLike[str] | None = "imagenet",
    pooling: str = "avg",
    input_size: int | tuple[int, int] | list | None = None,
    seed: int = 0,
    num_threads: int | None = None,
) -> Backbone:
    """A :class:`~imagerec.transfer.backbones.base.Backbone` for a Keras application (see module doc).

    The ONNX export is cached under imagerec's cache folder by
    :func:`backbone_digest`, so only the first use builds the Keras model.
    """
    if application not in APPLICATIONS:
        raise UsageError(f"unknown Keras backbone {application!r}; choose one of {', '.join(APPLICATIONS)}")
    spec = APPLICATIONS[application]
    size = input_size or spec.default_size
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    digest = backbone_digest(application, weights=weights, pooling=pooling, size=(height, width), seed=seed)
    onnx_path = cache_dir().parent / "onnx" / f"keras-{application}-{digest[:24]}.onnx"
    if not onnx_path.is_file():  # exports are written under a temporary name and renamed when checked
        model = build_application(application, weights=weights, pooling=pooling, input_size=(height, width), seed=seed)
        export_keras(model, onnx_path, output_name="embedding")
    backend = OnnxBackend(onnx_path, normalization=spec.normalization, num_threads=num_threads)
    described_weights = None if weights is None else (weights if weights in ("imagenet", "zoo") else str(Path(weights).resolve()))
    return Backbone(
        name=f"keras:{application}",
        kind="keras",
        sha256=digest,
        preprocessing=Preprocessing(size=(height, width), resize="crop", normalization=spec.normalization),
        dim=int(backend.output_dim("embedding")),
        run=lambda batch: backend.run(batch, ("embedding",))["embedding"],
        backend=backend,
        options={"application": application, "weights": described_weights, "pooling": pooling,
                 "input_size": [height, width], "seed": seed},
    )
