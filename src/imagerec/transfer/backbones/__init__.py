"""Backbones by name: zoo models, pooled layers of several, Keras applications.

:func:`get_backbone` is the one factory: it picks the module that builds
each kind — :mod:`~imagerec.transfer.backbones.zoo` (a zoo model's
embedding), :mod:`~imagerec.transfer.backbones.pooled` (layers of several
zoo networks) and :mod:`~imagerec.transfer.backbones.keras` (a Keras
application run through ONNX); the type itself is in
:mod:`~imagerec.transfer.backbones.base`. :func:`rebuild_backbone` does the
same for the description a learned recognizer saved (:meth:`Backbone.describe`).

>>> from imagerec.transfer.backbones import get_backbone, rebuild_backbone
>>> backbone = get_backbone("mobilenet_v2")
>>> backbone.dim
1280
>>> rebuild_backbone(backbone.describe()).sha256 == backbone.sha256
True
"""

from __future__ import annotations

from typing import Any, Mapping

from ...core.errors import UsageError
from .base import Backbone, default_frame
from .keras import keras_backbone
from .pooled import PRESETS, pooled_backbone
from .zoo import backbone_from_recognizer, zoo_backbone

__all__ = ["KINDS", "Backbone", "backbone_from_recognizer", "default_frame", "get_backbone", "rebuild_backbone"]

KINDS = ("zoo", "pooled", "keras")  # Backbone.kind values, as saved in .imagerec files
KERAS_PREFIX = "keras:"


def get_backbone(name: Any, *, num_threads: int | None = None, **options) -> Backbone:
    """A backbone by name: a zoo model (``"mobilenet_v2"``) or a Keras one (``"keras:MobileNetV2"``).

    A :class:`Backbone` is returned as it is, a Recognizer is wrapped
    (:func:`backbone_from_recognizer`).

    ``"mobilenet_multi"`` pools layers of two zoo networks
    (:mod:`imagerec.transfer.backbones.pooled`): slower, and more accurate.

    Keras backbones take ``weights=`` (``"imagenet"``, ``"zoo"`` for
    MobileNetV2's weights rebuilt from the zoo, a weights file, or None for
    random weights in tests), ``pooling=`` and ``input_size=``.
    """
    if isinstance(name, Backbone):
        return name
    if hasattr(name, "backend") and hasattr(name, "preprocessing"):
        return backbone_from_recognizer(name)
    if not isinstance(name, str):
        raise UsageError(f"backbone must be a model name, a Backbone or a Recognizer, got {type(name).__name__}")
    if name.startswith(KERAS_PREFIX):
        return keras_backbone(name[len(KERAS_PREFIX):], num_threads=num_threads, **options)
    kind = "pooled" if name in PRESETS else "zoo"
    if options:
        raise UsageError(f"{kind} backbone {name!r} takes no options, got {', '.join(options)}")
    if kind == "pooled":
        return pooled_backbone(name, num_threads=num_threads)
    return zoo_backbone(name, num_threads=num_threads)


def rebuild_backbone(described: Mapping[str, Any], *, num_threads: int | None = None) -> Backbone:
    """The backbone that :meth:`Backbone.describe` described (a learned recognizer's manifest entry).

    ``kind`` is ``"zoo"`` (also when missing, as in the first files),
    ``"pooled"`` or ``"keras"``; a Keras backbone is rebuilt from its
    options (application, weights, pooling, input size, seed). Raises
    ``KeyError`` / ``TypeError`` for an incomplete description and
    :class:`~imagerec.core.errors.UsageError` for a kind not in :data:`KINDS`.
    """
    name = described["name"]
    kind = described.get("kind") or "zoo"
    if kind == "keras":
        options = dict(described.get("options") or {})
        application = options.pop("application", None) or str(name).removeprefix(KERAS_PREFIX)
        return keras_backbone(application, num_threads=num_threads, **options)
    if kind == "pooled":
        return pooled_backbone(name, num_threads=num_threads)
    if kind == "zoo":
        return zoo_backbone(name, num_threads=num_threads)
    raise UsageError(f"unknown backbone kind {kind!r} (known: {', '.join(KINDS)})")
