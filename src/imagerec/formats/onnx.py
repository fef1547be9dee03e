"""``.onnx`` files that ``imagerec export`` wrote, opened as recognizers (run by ONNX Runtime).

An exported file carries its labels, preprocessing and threshold in its
``imagerec`` metadata; ONNX files from elsewhere run through
:class:`~imagerec.backends.onnx.OnnxBackend` directly.

>>> from imagerec.formats.onnx import load_exported_onnx
>>> load_exported_onnx("no-such.onnx")
Traceback (most recent call last):
imagerec.core.errors.ModelFileError: no-such.onnx: no such model file
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .. import zoo
from ..backends.onnx import OnnxBackend
from ..core.errors import ModelFileError
from ..core.metadata import ExportedMetadata, parse_json, validate_block
from ..core.images import DEFAULT_LIMITS, Limits
from ..core.preprocessing import Preprocessing
from ..recognizer import Recognizer
from .tflite import leading_background, read_labels

__all__ = ["load_exported_onnx"]


def load_exported_onnx(path: str | os.PathLike[str], *, labels: str | os.PathLike[str] | Sequence[str] | None = None,
                       num_threads: int | None = None, limits: Limits = DEFAULT_LIMITS) -> Recognizer:
    """A :class:`~imagerec.recognizer.Recognizer` for an ONNX file that :func:`imagerec.export.export` wrote.

    ``imagerec.load("model.onnx")`` and
    ``imagerec predict --model model.onnx`` run what was exported: its labels
    and preprocessing come from the file's ``imagerec`` metadata, and a
    learned recognizer's "unknown" threshold is compared with the graph's own
    ``confidence`` output; ``labels`` (a label file or a list) renames the
    classes. An ONNX file from elsewhere is refused (run it with
    :class:`~imagerec.backends.onnx.OnnxBackend`).
    """
    where = Path(path)
    if not where.is_file():
        raise ModelFileError(f"{where}: no such model file", path=str(where))
    backend = OnnxBackend(where, num_threads=num_threads)
    if "imagerec" not in backend.metadata:
        raise ModelFileError(
            f"{where}: not an ONNX model written by `imagerec export` (no imagerec metadata); "
            "run other ONNX models with imagerec.backends.onnx.OnnxBackend", path=str(where),
        )
    info = parse_json(backend.metadata["imagerec"], str(where), "imagerec metadata")
    block = validate_block(info, ExportedMetadata, str(where), "imagerec metadata")
    try:
        names = list(block.labels) if labels is None else read_labels(labels)
        preprocessing = Preprocessing.from_dict(info["preprocessing"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: its imagerec metadata is invalid ({exc})", path=str(where)) from exc
    if backend.output_dim("scores") != len(names):
        raise ModelFileError(f"{where}: {backend.output_dim('scores')} outputs but {len(names)} labels", path=str(where))
    # A zoo model's export keeps its "background" output: dropped when leading, else never an answer,
    # as for a .tflite.
    skip = leading_background(names)
    return Recognizer(backend, names[skip:], preprocessing, name=where.stem, sha256=zoo.sha256_file(where),
                      threshold=block.threshold, metadata=info, limits=limits, skip_outputs=skip,
                      ignore=["background"])
