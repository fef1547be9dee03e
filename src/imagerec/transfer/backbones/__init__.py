"""Backbones by name: zoo models, pooled layers of several, Keras applications.

>>> from imagerec.transfer.backbones import get_backbone
>>> get_backbone("mobilenet_v2").dim
1280
"""

from __future__ import annotations

from ...core.errors import UsageError
from .base import Backbone, backbone_from_recognizer, default_frame

__all__ = ["Backbone", "backbone_from_recognizer", "default_frame", "get_backbone"]


def get_backbone(name, *, num_threads: int | None = None, **options) -> Backbone:
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
    from .pooled import PRESETS, pooled_backbone

    if name in PRESETS:
        if options:
            raise UsageError(f"pooled backbone {name!r} takes no options, got {', '.join(options)}")
        return pooled_backbone(name, num_threads=num_threads)
    if name.startswith("keras:"):
        from .keras import keras_backbone

        return keras_backbone(name.split(":", 1)[1], num_threads=num_threads, **options)
    if options:
        raise UsageError(f"zoo backbone {name!r} takes no options, got {', '.join(options)}")
    from ...formats.tflite import load_zoo

    return backbone_from_recognizer(load_zoo(name, num_threads=num_threads))
