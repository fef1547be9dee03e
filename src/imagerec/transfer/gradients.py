"""Grad-CAM for learned recognizers whose backbone is a Keras network: the backbone rebuilt in Keras, the head in torch.

A learned recognizer scores photos with a scikit-learn head on its
backbone's embedding, run by ONNX Runtime or LiteRT: no gradients. When the
backbone is a Keras application (``imagerec learn --backbone keras:ResNet50``)
or a Keras zoo model (``--backbone mobilenet_v3_large``),
:func:`gradient_source` rebuilds the backbone in Keras from the description
the recognizer keeps (its weights, pooling, input size — the same recipe
whose sha256 the head was checked against) and puts the head on top as the
dense layers it describes (:func:`imagerec.explain.keras_cam.dense_top`), so
Grad-CAM differentiates the head's class score through the backbone's last
feature map. Nothing is built until a Grad-CAM is asked for. Backbones
without a Keras network (the int8 zoo models, pooled layers) give None:
those recognizers are explained by occlusion.

>>> gradient_source({"kind": "zoo", "name": "mobilenet_v2"}, "tf", head=lambda: None) is None
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .. import zoo
from ..core.errors import UnknownModelError
from ..explain.gradcam import GradientFn
from ..explain.keras_cam import dense_top, lazy_keras_gradients

__all__ = ["gradient_source"]

KERAS_PREFIX = "keras:"


def gradient_source(described: Mapping[str, Any] | None, normalization: str,
                    head: Callable[[], Any]) -> Callable[[], GradientFn] | None:
    """The lazy Grad-CAM source of a head (``head()`` returns it as it is now) on the backbone
    ``described`` (:meth:`Backbone.describe`), or None when that backbone has no Keras network."""
    build = _keras_embedding_model(described or {})
    if build is None:
        return None
    return lazy_keras_gradients(build, normalization, top=lambda: dense_top(head().dense_layers()))


def _keras_embedding_model(described: Mapping[str, Any]) -> Callable[[], Any] | None:
    """How to build the backbone's Keras model, whose output is the embedding the head was learned on."""
    kind, name = described.get("kind") or "zoo", str(described.get("name") or "")
    if kind == "keras":
        options = dict(described.get("options") or {})
        application = options.pop("application", None) or name.removeprefix(KERAS_PREFIX)

        def build_application_model() -> Any:
            from .backbones.keras import build_application

            return build_application(application, **options)

        return build_application_model
    if kind != "zoo":
        return None
    try:
        spec = zoo.get(name)
    except UnknownModelError:
        return None
    if spec.backend != "keras" or not spec.embedding_tensor:
        return None

    def build_zoo_model() -> Any:
        from ..core.keras_backend import import_keras
        from ..formats.keras_apps import build_keras_application

        keras = import_keras()
        model = build_keras_application(spec, zoo.fetch(spec.model))
        return keras.Model(model.inputs, model.get_layer(spec.embedding_tensor).output)

    return build_zoo_model
