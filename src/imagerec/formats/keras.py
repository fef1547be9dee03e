"""The ``.keras`` file: Keras models saved with everything needed to use them, and opened safely.

A model trained by imagerec is saved in Keras's own ``.keras`` format (a zip
of ``config.json``, ``metadata.json`` and the weights) plus one more member,
``imagerec.json``: the class names, the preprocessing, the training run's
configuration and its metrics. So ``imagerec.load("model.keras")`` (and
``imagerec predict --model model.keras photo.jpg``) needs no other flag, and
Keras itself still opens the file as usual.

Loading is in Keras's safe mode: a ``.keras`` file whose config would run
arbitrary Python (a ``Lambda`` layer's bytecode) is refused. Predictions run
through ONNX Runtime: the model is exported once (cached beside the file,
keyed by its sha256), and later loads do not import Keras at all.

>>> import imagerec, tempfile, os
>>> from imagerec.architectures import course_cnn
>>> from imagerec.formats.keras import save_model, read_metadata
>>> path = os.path.join(tempfile.mkdtemp(), "tiny.keras")
>>> model = course_cnn(input_shape=(16, 16, 3), num_classes=2, width=4)
>>> save_model(model, path, classes=["cat", "dog"], preprocessing=imagerec.Preprocessing(size=(16, 16), normalization="unit"))
PosixPath('...tiny.keras')
>>> read_metadata(path)["classes"]
['cat', 'dog']
>>> imagerec.load(path).labels
['cat', 'dog']
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..core.errors import ImagerecError, ModelFileError, OutputError, UsageError
from ..core.metadata import KerasMetadata, parse_json, validate_block
from ..core.preprocessing import Preprocessing
from ..core.fs import atomic_path, prepare_output_folder
from ..core.keras_backend import import_keras

__all__ = ["save_model", "read_metadata", "load_keras_model", "METADATA_NAME", "FORMAT_VERSION"]

METADATA_NAME = "imagerec.json"
FORMAT_VERSION = 1


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    classes: Sequence[str],
    preprocessing: Preprocessing,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    flip_average: bool = False,
    shift_average: int = 0,
) -> Path:
    """Save ``model`` as a ``.keras`` file carrying imagerec's metadata; atomic.

    ``flip_average`` records that predictions should average each image
    with its mirror image, ``shift_average`` that they should also average
    copies shifted by that many pixels (:func:`imagerec.data.prediction_views`;
    the export does both inside the ONNX graph).
    """
    dest = Path(path)
    if dest.suffix.lower() != ".keras":
        raise UsageError(f"{dest}: a Keras model file must end in .keras")
    outputs = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else None
    if outputs is not None and outputs != len(classes):
        raise UsageError(f"the model has {outputs} outputs but {len(classes)} class names were given")
    metadata = {
        "format": "imagerec-keras",
        "version": FORMAT_VERSION,
        "classes": [str(c) for c in classes],
        "preprocessing": preprocessing.to_dict(),
        "flip_average": bool(flip_average),
        "shift_average": int(shift_average),
        "config": dict(config or {}),
        "metrics": dict(metrics or {}),
    }
    prepare_output_folder(dest.parent, what="the model file")
    if dest.is_dir():
        raise OutputError(f"{dest}: is a folder; give a file name ending in .keras for the model", path=str(dest))
    try:
        with atomic_path(dest) as tmp:
            model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(METADATA_NAME, json.dumps(metadata, indent=1, default=_jsonable))
    except ImagerecError:
        raise
    except OSError as exc:
        raise OutputError(f"{dest}: cannot write the model file ({exc.strerror or exc})", path=str(dest)) from exc
    return dest


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_metadata(path: str | os.PathLike[str]) -> dict | None:
    """imagerec's metadata stored in a ``.keras`` file, or ``None`` for a plain Keras file."""
    where = os.fspath(path)
    try:
        with zipfile.ZipFile(where) as archive:
            if METADATA_NAME not in archive.namelist():
                return None
            info = archive.getinfo(METADATA_NAME)
            if info.file_size > 16 * 1024 * 1024:
                raise ModelFileError(f"{where}: {METADATA_NAME} is implausibly large", path=where)
            raw = archive.read(METADATA_NAME)
    except FileNotFoundError as exc:
        raise ModelFileError(f"{where}: no such model file", path=where) from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{where}: not a .keras file (expected a zip archive written by Keras)", path=where) from exc
    metadata = parse_json(raw, where, METADATA_NAME)
    version = metadata.get("version") if isinstance(metadata, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where}: imagerec metadata version {version!r} is newer than this imagerec understands "
            f"({FORMAT_VERSION}); upgrade imagerec",
            path=where,
        )
    # Checked here, before the caller converts the network (seconds), not after.
    validate_block(metadata, KerasMetadata, where, METADATA_NAME)
    return metadata


def load_keras_model(path: str | os.PathLike[str], *, compile: bool = False) -> Any:
    """Open a ``.keras`` file with Keras in safe mode (no arbitrary code runs)."""
    keras = import_keras()
    where = os.fspath(path)
    if not os.path.isfile(where):
        raise ModelFileError(f"{where}: no such model file", path=where)
    try:
        return keras.saving.load_model(where, compile=compile, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError... for bad files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "safe_mode" in str(exc) or "unsafe" in str(exc).lower():
            raise ModelFileError(
                f"{where}: refused to load: the model contains code (e.g. a Lambda layer) that safe mode will not run",
                path=where,
            ) from exc
        raise ModelFileError(f"{where}: cannot load the Keras model ({first[:300]})", path=where) from exc
