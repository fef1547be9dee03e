"""Keras 2 ``.h5`` files opened as recognizers: rebuilt once, exported to ONNX, run by ONNX Runtime.

``imagerec.load("model.h5")`` lands here. The file is rebuilt in Keras 3
(:mod:`imagerec.formats.h5`) only the first time: the ONNX export is cached
in imagerec's cache folder under the file's sha256, so later loads do not
import Keras. A Teachable Machine export (:mod:`imagerec.formats.teachable`)
gets Teachable Machine's preprocessing and the ``labels.txt`` beside it;
any other file takes ``labels`` (else labels stored in the file as a
``class_names`` attribute, else ``class_0``...) and ``normalization`` (else
``"unit"``, pixels / 255).

>>> load_h5("no-such.h5")
Traceback (most recent call last):
imagerec.core.errors.ModelFileError: no-such.h5: no such model file
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

from .. import zoo
from ..backends.onnx import OnnxBackend
from ..core.errors import ModelFileError
from ..core.images import DEFAULT_LIMITS, Limits
from ..core.preprocessing import Preprocessing
from ..explain.keras_cam import lazy_keras_gradients
from ..recognizer import Recognizer
from . import teachable
from . import h5
from .h5 import H5File, read_h5
from .keras_onnx import export_keras
from .tflite import read_labels

__all__ = ["load_h5", "h5_onnx_path", "DEFAULT_NORMALIZATION"]

DEFAULT_NORMALIZATION = "unit"  # what Keras 2 tutorials (and the course) fed: pixels / 255
_EXPORT_VERSION = 1  # bump when the rebuild changes, so cached exports are made again


def h5_onnx_path(digest: str) -> Path:
    """Where the ONNX export of the ``.h5`` file with this sha256 is cached."""
    return zoo.cache_dir().parent / "onnx" / f"h5-v{_EXPORT_VERSION}-{digest[:32]}.onnx"


def load_h5(
    path: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | Sequence[str] | None = None,
    normalization: str | None = None,
    architecture: Any = None,
    num_threads: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Recognizer:
    """A :class:`~imagerec.recognizer.Recognizer` for a Keras 2 ``.h5`` model (see the module doc).

    ``architecture`` (a Keras model) is for a weights-only file.
    """
    where = Path(path)
    if not where.is_file():
        raise ModelFileError(f"{where}: no such model file", path=str(where))
    info = read_h5(where)
    digest = zoo.sha256_file(where)
    is_teachable = architecture is None and (
        teachable.has_teachable_layers(info.config)
        or (teachable.export_kind(where) == "keras" and teachable.labels_beside(where) is not None)
    )
    if architecture is not None:  # the export depends on the given network too: keyed by its digest
        onnx_path = export_keras(h5.load_h5_model(where, architecture=architecture))
    else:
        onnx_path = h5_onnx_path(digest)
        if not onnx_path.is_file():  # written under a temporary name and renamed once checked
            export_keras(h5.load_h5_model(where), onnx_path)
    if is_teachable:
        backend = OnnxBackend(onnx_path, normalization=normalization or "tf", num_threads=num_threads)
        preprocessing = teachable.preprocessing_for("keras", backend.input_size)
        if normalization:
            preprocessing = dataclasses.replace(preprocessing, normalization=normalization)
        beside = teachable.labels_beside(where)
        source = labels if labels is not None else beside
    else:
        norm = normalization or DEFAULT_NORMALIZATION
        backend = OnnxBackend(onnx_path, normalization=norm, num_threads=num_threads)
        preprocessing = Preprocessing(size=backend.input_size, resize="crop", normalization=norm)
        source = labels if labels is not None else _stored_labels(info)
    size = backend.output_dim("scores")
    names = read_labels(source) if source is not None else [f"class_{i}" for i in range(size)]
    if len(names) != size:
        raise ModelFileError(f"{where}: the model has {size} outputs but {len(names)} labels", path=str(where))
    metadata = {"source_format": "keras2-h5", "keras_version": info.keras_version,
                "teachable_machine": is_teachable}
    recognizer = Recognizer(backend, names, preprocessing, name=where.stem, sha256=digest, limits=limits,
                            metadata=metadata)
    if architecture is None:  # a given network is the caller's own: Grad-CAM must not change it
        # Grad-CAM rebuilds the model in Keras 3 only when an explanation asks for it.
        recognizer.gradient_source = lazy_keras_gradients(lambda: h5.load_h5_model(where), backend.normalization)
    if is_teachable:
        # Teachable Machine's code decodes every photo in full: so does imagerec for
        # these (a large JPEG is never left at its fast draft decode), so scores match.
        recognizer.configure(refine_margin=1.0)
    return recognizer


def _stored_labels(info: H5File) -> list[str] | None:
    """Class names stored in the file (a ``class_names`` or ``labels`` attribute), if any."""
    import json

    import h5py

    try:
        with h5py.File(info.path, "r") as handle:
            for key in ("class_names", "labels"):
                if key in handle.attrs:
                    value = handle.attrs[key]
                    if isinstance(value, (bytes, str)):
                        text = value.decode("utf-8") if isinstance(value, bytes) else value
                        return [str(v) for v in json.loads(text)] if text.startswith("[") else text.splitlines()
                    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in value]
    except (OSError, ValueError):
        return None
    return None
