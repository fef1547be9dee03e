"""Teachable Machine exports: recognising them, their labels and their preprocessing.

Google's Teachable Machine (image project) downloads a model as
``keras_model.h5`` (Keras 2), ``model_unquant.tflite`` (float) or
``model.tflite`` (quantised, uint8), each with a ``labels.txt`` of ``0 Name``
lines. Its sample code feeds the model a picture cut to its centre square
and scaled to 224 px with Lanczos (``ImageOps.fit``), as ``x / 127.5 - 1``
for the float models (raw pixels for the quantised one): :data:`PREPROCESSING`
is exactly that, so imagerec's scores equal the sample code's.

An export is recognised by its file name (``keras_model.h5``,
``model_unquant.tflite``, ``model.tflite``, also with a prefix such as
``water_keras_model.h5``) when a labels file sits beside it, or, for the
``.h5``, by the layer names Teachable Machine's converter gives
(``dense_Dense1``, ``..._GlobalAveragePooling2D1``).

>>> PREPROCESSING.normalization, PREPROCESSING.resample
('tf', 'lanczos')
>>> export_kind("downloads/keras_model.h5")
'keras'
>>> export_kind("cats.tflite") is None
True
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Iterator

from ..core.preprocessing import Preprocessing

__all__ = ["PREPROCESSING", "QUANTIZED_PREPROCESSING", "EXPORT_NAMES", "export_kind", "labels_beside",
           "has_teachable_layers", "preprocessing_for"]

PREPROCESSING = Preprocessing(size=(224, 224), resize="crop", normalization="tf", resample="lanczos")
QUANTIZED_PREPROCESSING = dataclasses.replace(PREPROCESSING, normalization="uint8")

# The file names Teachable Machine gives each kind of export.
EXPORT_NAMES = {"keras_model.h5": "keras", "model_unquant.tflite": "float", "model.tflite": "quantized"}
_LAYER_NAME = re.compile(r"(^|_)(Dense|GlobalAveragePooling2D)\d+$")


def export_kind(path: str | Path) -> str | None:
    """``"keras"``, ``"float"`` or ``"quantized"`` for a file named as Teachable Machine names them, else None."""
    name = Path(path).name.lower()
    for suffix, kind in EXPORT_NAMES.items():
        if name == suffix or name.endswith("_" + suffix) or name.endswith("-" + suffix):
            return kind
    return None


def labels_beside(path: str | Path) -> Path | None:
    """The ``labels.txt`` of an export: ``labels.txt`` beside it, or ``<prefix>labels.txt`` for ``<prefix>keras_model.h5``.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "water_labels.txt").write_text("0 5 Galoon\\n1 500ML\\n")
    >>> labels_beside(folder / "water_keras_model.h5").name
    'water_labels.txt'
    """
    where = Path(path)
    name = where.name
    candidates = []
    for suffix in EXPORT_NAMES:
        if name.lower().endswith(suffix):
            candidates.append(where.with_name(name[: len(name) - len(suffix)] + "labels.txt"))
    candidates.append(where.with_name("labels.txt"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def has_teachable_layers(config: Any) -> bool:
    """Whether a Keras architecture (a config dict) has the layer names Teachable Machine's converter writes.

    >>> has_teachable_layers({"class_name": "Dense", "config": {"name": "dense_Dense1"}})
    True
    """
    return any(_LAYER_NAME.search(name) for name in _layer_names(config))


def _layer_names(config: Any) -> Iterator[str]:
    if isinstance(config, dict):
        inner = config.get("config")
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            yield inner["name"]
        for value in config.values():
            yield from _layer_names(value)
    elif isinstance(config, list):
        for item in config:
            yield from _layer_names(item)


def preprocessing_for(kind: str, size: tuple[int, int] = (224, 224)) -> Preprocessing:
    """Teachable Machine's preprocessing for an export of ``kind`` whose input is ``size``.

    >>> preprocessing_for("quantized").normalization
    'uint8'
    """
    base = QUANTIZED_PREPROCESSING if kind == "quantized" else PREPROCESSING
    return dataclasses.replace(base, size=size)
