"""``imagerec import``: a model made elsewhere turned into a file that carries everything imagerec needs.

A Keras 2 ``.h5`` (the course's, Teachable Machine's ``keras_model.h5``)
becomes a ``.keras`` file with imagerec's metadata (its labels and
preprocessing; :mod:`imagerec.formats.keras`): it predicts, serves,
evaluates and exports (``imagerec export MODEL.keras --format onnx|tflite``)
as a network imagerec trained, with no label file or option beside it. A
``.tflite`` (Teachable Machine's ``model_unquant.tflite`` / ``model.tflite``,
a float classifier) becomes a ``.tflite`` carrying the same ``imagerec``
metadata ``imagerec export`` writes; it exports to ONNX
(``imagerec export MODEL.tflite --format onnx``, :mod:`imagerec.formats.tflite_onnx`).

The source is opened as :func:`imagerec.load` opens it (so ``labels`` and
``normalization`` mean what they mean there), and the written file is
opened again and checked to give the same scores before it is kept.

>>> import_model("no-such.h5", "out.keras")
Traceback (most recent call last):
imagerec.core.errors.ModelFileError: no-such.h5: no such model file
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .core.errors import ModelFileError, UsageError
from .core.fs import atomic_write_bytes
from .loading import load
from .recognizer import Recognizer

__all__ = ["import_model", "IMPORTS"]

# Source suffix → the suffix of the file it becomes.
IMPORTS = {".h5": ".keras", ".tflite": ".tflite"}
_CHECK_TOLERANCE = 1e-4


def import_model(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | Sequence[str] | None = None,
    normalization: str | None = None,
) -> Path:
    """Write ``output`` (``.keras`` for an ``.h5`` source, ``.tflite`` for a ``.tflite``) from ``source``; return it."""
    source, output = Path(source), Path(output)
    if not source.is_file():
        raise ModelFileError(f"{source}: no such model file", path=str(source))
    suffix = source.suffix.lower()
    if suffix not in IMPORTS:
        raise UsageError(f"{source}: imagerec imports {', '.join(IMPORTS)} files")
    if output.suffix.lower() != IMPORTS[suffix]:
        raise UsageError(f"{output}: a {suffix} model is imported as a {IMPORTS[suffix]} file")
    if output.resolve() == source.resolve():
        raise UsageError(f"{output}: the output would overwrite the source")
    options = {"normalization": normalization} if normalization else {}
    original = load(source, labels=labels, **options)
    if suffix == ".h5":
        _write_keras(source, output, original)
    else:
        _write_tflite(source, output, original)
    try:
        _check(original, load(output))
    except Exception:
        output.unlink(missing_ok=True)  # never leave a file that answers differently
        raise
    return output


def _write_keras(source: Path, output: Path, original: Recognizer) -> None:
    from .formats import h5
    from .formats.keras import save_model

    model = h5.load_h5_model(source)
    save_model(model, output, classes=original.labels, preprocessing=original.preprocessing,
               config={"imported_from": source.name, **original.metadata})


def _write_tflite(source: Path, output: Path, original: Recognizer) -> None:
    from .backends.litert import with_metadata

    info = {"labels": original.labels, "preprocessing": original.preprocessing.to_dict(), "outputs": ["scores"],
            "imported_from": source.name}
    atomic_write_bytes(output, with_metadata(source.read_bytes(), "imagerec", json.dumps(info).encode()))


def _check(original: Recognizer, imported: Recognizer) -> None:
    """The imported file must answer as its source did (same labels, same scores on a fixed batch)."""
    height, width = original.preprocessing.size
    batch = np.random.default_rng(0).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    expected, got = original.score(batch).probabilities, imported.score(batch).probabilities
    if imported.labels != original.labels or not np.allclose(expected, got, atol=_CHECK_TOLERANCE):
        raise ModelFileError(
            f"the imported file answers differently from its source (largest difference "
            f"{float(np.abs(expected - got).max()):.2e}); nothing was written",
        )
