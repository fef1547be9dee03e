"""Keras Applications as named zoo models (``vgg16``, ``resnet50``, ``efficientnet_v2_b0``...), run by ONNX Runtime.

The zoo (:mod:`imagerec.zoo`) says where each model's weights live and pins
them by the hash Keras publishes; :func:`load_keras_spec` fetches them
(``IMAGEREC_MODEL_DIR``, the cache, else a verified download), builds the
application with Keras's own builder and ``weights=`` that file, exports it
to ONNX once — scores and the embedding layer's output — and caches the
export in imagerec's cache folder under a key naming the application, input
size and weights digest. Later loads run ONNX Runtime only, without Keras.

The ONNX graph takes the network's own float input; the uint8 pixels are
normalised by :class:`~imagerec.backends.onnx.OnnxBackend` with the spec's
normalisation (``caffe`` for VGG16/ResNet50, raw ``uint8`` values for the
models that rescale inside), exactly what Keras's ``preprocess_input`` does,
so scores equal ``model.predict(preprocess_input(pixels))``.

>>> from imagerec import zoo
>>> onnx_path_for(zoo.get("resnet50")).name.startswith("keras-ResNet50-224-")
True
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .. import zoo
from ..backends.onnx import OnnxBackend
from ..core.errors import ModelFileError
from ..core.images import DEFAULT_LIMITS, Limits
from ..core.keras_backend import import_keras
from ..explain.keras_cam import lazy_keras_gradients
from ..recognizer import Recognizer
from .keras_onnx import export_keras

__all__ = ["load_keras_spec", "build_keras_application", "onnx_path_for"]

_EXPORT_VERSION = 1  # bump when the exported graph changes, so cached exports are made again


def onnx_path_for(spec: zoo.ModelSpec) -> Path:
    """Where the ONNX export of a Keras zoo model is cached (named by application, size and weights digest)."""
    height, width = spec.input_size
    key = hashlib.sha256(
        f"{spec.application}:{height}x{width}:{spec.model.sha256}:{spec.embedding_tensor}:v{_EXPORT_VERSION}".encode()
    ).hexdigest()
    return zoo.cache_dir().parent / "onnx" / f"keras-{spec.application}-{height}-{key[:24]}.onnx"


def build_keras_application(spec: zoo.ModelSpec, weights: str | Path):
    """The Keras model of ``spec`` with its classifier, weights loaded from the file ``weights``."""
    keras = import_keras()
    builder = getattr(keras.applications, spec.application)
    height, width = spec.input_size
    try:
        return builder(weights=str(weights), include_top=True, input_shape=(height, width, 3))
    except (ValueError, OSError, KeyError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelFileError(f"{weights}: not {spec.application} weights with a classifier ({first})",
                             path=str(weights)) from exc


def load_keras_spec(spec: zoo.ModelSpec, *, num_threads: int | None = None,
                    limits: Limits = DEFAULT_LIMITS) -> Recognizer:
    """The recognizer of a Keras zoo model (``spec.backend == "keras"``), converted to ONNX on first use."""
    onnx_path = onnx_path_for(spec)
    if not onnx_path.is_file():  # an export is written under a temporary name and renamed once checked
        weights = zoo.fetch(spec.model)
        model = build_keras_application(spec, weights)
        export_keras(model, onnx_path, embedding_layer=spec.embedding_tensor)
    backend = OnnxBackend(onnx_path, normalization=spec.preprocessing.normalization, num_threads=num_threads)
    lines = zoo.read_labels(zoo.fetch(spec.labels))
    outputs = backend.output_dim("scores")
    if spec.background_label and len(lines) == outputs + 1 and lines[0] == spec.background_label:
        lines = lines[1:]  # the 1001-line ImageNet file of the TF-slim models; Keras's have 1000 outputs
    if len(lines) != outputs:
        raise ModelFileError(f"{spec.name}: {len(lines)} labels for {outputs} model outputs", path=str(onnx_path))
    synonyms = [tuple(n.strip() for n in line.split(",") if n.strip()) or (line,) for line in lines]
    recognizer = Recognizer(backend, [names[0] for names in synonyms], spec.preprocessing, name=spec.name,
                            sha256=spec.model.identity, limits=limits, synonyms=synonyms)
    # Grad-CAM rebuilds the Keras model from its weights, only when an explanation asks for it.
    recognizer.gradient_source = lazy_keras_gradients(
        lambda: build_keras_application(spec, zoo.fetch(spec.model)), spec.preprocessing.normalization)
    return recognizer
