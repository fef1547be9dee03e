"""``.keras`` files opened as recognizers: exported once to ONNX, run by ONNX Runtime.

``imagerec.load("model.keras")`` lands here. The file format itself (saving
with imagerec's metadata, opening in safe mode) is :mod:`imagerec.formats.keras`;
the conversion is :mod:`imagerec.formats.keras_onnx`.

>>> from imagerec.formats.keras_recognizer import load_recognizer
>>> load_recognizer("no-such.keras")
Traceback (most recent call last):
imagerec.core.errors.ModelFileError: no-such.keras: no such model file
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .. import zoo
from ..backends.onnx import OnnxBackend
from ..core.errors import ModelFileError
from ..core.images import DEFAULT_LIMITS, Limits
from ..core.preprocessing import Preprocessing
from ..explain.keras_cam import lazy_keras_gradients
from ..recognizer import Recognizer
from .keras import load_keras_model, read_metadata
from .keras_onnx import export_keras
from .tflite import read_labels

__all__ = ["load_recognizer"]


def load_recognizer(
    path: str | os.PathLike[str],
    *,
    num_threads: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    labels: str | os.PathLike[str] | Sequence[str] | None = None,
    normalization: str | None = None,
) -> Recognizer:
    """A :class:`~imagerec.recognizer.Recognizer` for a ``.keras`` file, run by ONNX Runtime.

    ``imagerec.load("model.keras")`` lands here. A plain Keras file (not
    saved by imagerec) works too: pass ``labels`` (else ``class_0``...) and
    ``normalization`` (else ``"unit"``, i.e. pixels / 255).
    """
    where = Path(path)
    if not where.is_file():
        raise ModelFileError(f"{where}: no such model file", path=str(where))
    metadata = read_metadata(where) or {}
    onnx_path = export_keras(where, flip_average=bool(metadata.get("flip_average", False)),
                             shift_average=int(metadata.get("shift_average", 0)))
    pre_dict = metadata.get("preprocessing")
    if pre_dict:
        preprocessing = Preprocessing.from_dict(pre_dict)
    else:
        preprocessing = None
    norm = normalization or (preprocessing.normalization if preprocessing else "unit")
    backend = OnnxBackend(onnx_path, normalization=norm, num_threads=num_threads)
    if preprocessing is None:
        preprocessing = Preprocessing(size=backend.input_size, resize="crop", normalization=norm)
    size = backend.output_dim("scores")
    names = read_labels(labels) if labels is not None else metadata.get("classes") or [f"class_{i}" for i in range(size)]
    if len(names) != size:
        raise ModelFileError(f"{where}: the model has {size} outputs but {len(names)} class names", path=str(where))
    recognizer = Recognizer(
        backend, names, preprocessing, name=where.stem, sha256=zoo.sha256_file(where), limits=limits,
        metadata=metadata,
    )
    # Grad-CAM opens the file in Keras (safe mode) only when an explanation asks for it.
    recognizer.gradient_source = lazy_keras_gradients(lambda: load_keras_model(where), norm)
    return recognizer
