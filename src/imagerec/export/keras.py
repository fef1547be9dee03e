"""A recognizer learned on a Keras-application backbone, as one Keras model.

The model takes raw 0–255 pixels: the backbone's normalisation as a fixed
1×1 convolution (from :meth:`~imagerec.core.preprocessing.Normalization.affine`;
no ``Lambda`` layer, so the file loads in Keras's safe mode) → the
application → L2 normalisation → the head's dense layers → softmax. It is
saved with imagerec's metadata, so ``imagerec.load`` reads it back; the
TFLite export of such a recognizer converts this same model.

>>> from imagerec.core.keras_backend import import_keras
>>> import numpy as np
>>> keras = import_keras()
>>> layer = normalization_layer(keras, "tf")
>>> keras.ops.convert_to_numpy(layer(np.full((1, 1, 1, 3), 255.0, np.float32))).round(4).tolist()
[[[[1.0, 1.0, 1.0]]]]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ModelFileError
from ..core.keras_backend import import_keras
from ..core.preprocessing import normalization
from ..recognizer import Scores
from .check import Written
from .sources import LearnedSource, keras_scores

__all__ = ["normalization_layer", "learned_keras_model", "learned_to_keras"]


def normalization_layer(keras: Any, name: str) -> Any:
    """The normalisation ``name`` as a Keras layer on 0–255 pixels (a fixed 1×1 convolution, or an identity)."""
    norm = normalization(name)
    if norm.identity:
        return keras.layers.Identity(name="normalization")
    matrix, bias = norm.affine()  # out = matrix @ in + bias, per pixel
    layer = keras.layers.Conv2D(3, 1, name="normalization", trainable=False)
    layer.build((None, None, None, 3))
    layer.set_weights([matrix.T.reshape(1, 1, 3, 3).astype(np.float32), bias.astype(np.float32)])
    return layer


def learned_keras_model(source: LearnedSource, confidence: Any = None) -> tuple[Any, tuple[int, int]]:
    """One Keras model (0–255 float pixels → scores) and its input size, rebuilt from the backbone's recipe.

    With ``confidence`` (the head's :meth:`~imagerec.transfer.heads.Head.confidence_layer`), the model has a
    second output, ``confidence``: that layer's largest output on the L2-normalised embedding, which the
    "unknown" threshold is compared with.
    """
    keras = import_keras()
    base, size = BACKBONES[source.kind](source)
    inputs = keras.Input((*size, 3), name="image")
    x = normalization_layer(keras, source.recognizer.backend.normalization)(inputs)
    x = normalized = keras.layers.UnitNormalization(axis=-1, name="embedding_l2")(base(x))
    for number, described in enumerate(source.head.dense_layers()):
        x = _dense(keras, described, f"head_{number}")(x)
    outputs = [keras.layers.Softmax(name="scores")(x)]
    if confidence is not None:
        cosine = _dense(keras, confidence, "cosine")(normalized)
        outputs.append(keras.ops.max(cosine, axis=-1))  # an operation on the graph, no Lambda layer
    return keras.Model(inputs, outputs if confidence is not None else outputs[0], name=source.recognizer.name), size


def _dense(keras: Any, described: Any, name: str) -> Any:
    """A Keras Dense layer holding a :class:`~imagerec.transfer.heads.DenseLayer`'s weights."""
    dense = keras.layers.Dense(described.weights.shape[1], activation="relu" if described.relu else None, name=name)
    dense.build((None, described.weights.shape[0]))
    dense.set_weights([described.weights, described.bias])
    return dense


def _application_backbone(source: LearnedSource) -> tuple[Any, tuple[int, int]]:
    """A ``keras:`` backbone: the application rebuilt from its saved options, its digest checked."""
    from ..transfer.backbones.keras import backbone_digest, build_application

    options = dict(source.backbone.get("options") or {})
    size = tuple(int(v) for v in options["input_size"])
    recipe = dict(weights=options.get("weights"), pooling=options.get("pooling", "avg"), seed=int(options.get("seed", 0)))
    if backbone_digest(options["application"], size=size, **recipe) != source.backbone["sha256"]:
        raise ModelFileError(f"{options['application']}: not the weights the head was learned on (digest differs)")
    return build_application(options["application"], input_size=size, **recipe), size


def _zoo_application_backbone(source: LearnedSource) -> tuple[Any, tuple[int, int]]:
    """A Keras zoo backbone (``mobilenet_v3_large``...): the application with its verified weights, cut at the
    zoo's embedding layer and flattened, as its ONNX ``embedding`` output is."""
    from .. import zoo
    from ..formats.keras_apps import build_keras_application

    keras = import_keras()
    spec = zoo.get(source.backbone["name"])
    if spec.model.identity != source.backbone["sha256"]:
        raise ModelFileError(f"{spec.name}: not the weights the head was learned on (the zoo's file differs)")
    application = build_keras_application(spec, zoo.fetch(spec.model))
    embedding = keras.layers.Flatten(name="embedding")(application.get_layer(spec.embedding_tensor).output)
    return keras.Model(application.inputs, embedding, name=f"{spec.name}_backbone"), spec.input_size


# Source kind → how its backbone is rebuilt as a Keras model (normalised pixels → embedding).
BACKBONES = {
    "learned on keras": _application_backbone,
    "learned on keras zoo": _zoo_application_backbone,
}


def learned_to_keras(source: LearnedSource, path: Path) -> Written:
    """Write the learned recognizer as one ``.keras`` model (scores only) to ``path``."""
    from ..formats.keras import load_keras_model, save_model

    model, size = learned_keras_model(source)
    # The unknown threshold's confidence is not part of this model; the file says so.
    config = {"learned_from": source.backbone["name"], "threshold_not_included": source.recognizer.threshold}
    save_model(model, path, classes=source.labels, config=config,
               preprocessing=dataclasses.replace(source.preprocessing, size=size, normalization="uint8"))

    written = load_keras_model(path)  # checked as it will be read: from the file, in Keras's safe mode

    def score(batch: np.ndarray) -> Scores:
        return Scores(keras_scores(written, batch.astype(np.float32)), None)

    return Written("image: float32 N×H×W×3, 0–255", ("scores",), score)
