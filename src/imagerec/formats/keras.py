"""Save Keras models with everything needed to use them; load ``.keras`` files as Recognizers.

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
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..core.errors import ImagerecError, ModelFileError, OutputError, UsageError
from ..core.images import DEFAULT_LIMITS, Limits
from ..core.preprocessing import Preprocessing
from ..core.fs import prepare_output_folder
from ..recognizer import Recognizer
from ..core.keras_backend import import_keras

__all__ = ["save_model", "read_metadata", "load_keras_model", "load_recognizer", "METADATA_NAME", "FORMAT_VERSION"]

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
    tmp: Path | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.stem}-", suffix=".keras", dir=dest.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA_NAME, json.dumps(metadata, indent=1, default=_jsonable))
        os.chmod(tmp, 0o644)  # mkstemp makes files private; these are meant to be shared
        os.replace(tmp, dest)
    except ImagerecError:
        raise
    except OSError as exc:
        raise OutputError(f"{dest}: cannot write the model file ({exc.strerror or exc})", path=str(dest)) from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
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
            metadata = json.loads(archive.read(METADATA_NAME))
    except FileNotFoundError as exc:
        raise ModelFileError(f"{where}: no such model file", path=where) from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{where}: not a .keras file (expected a zip archive written by Keras)", path=where) from exc
    except ValueError as exc:
        raise ModelFileError(f"{where}: {METADATA_NAME} is not valid JSON ({exc})", path=where) from exc
    version = metadata.get("version") if isinstance(metadata, dict) else None
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where}: imagerec metadata version {version!r} is newer than this imagerec understands "
            f"({FORMAT_VERSION}); upgrade imagerec",
            path=where,
        )
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


def load_recognizer(
    path: str | os.PathLike[str],
    *,
    num_threads: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    labels: Sequence[str] | None = None,
    normalization: str | None = None,
) -> Recognizer:
    """A :class:`~imagerec.recognizer.Recognizer` for a ``.keras`` file, run by ONNX Runtime.

    ``imagerec.load("model.keras")`` lands here. A plain Keras file (not
    saved by imagerec) works too: pass ``labels`` (else ``class_0``...) and
    ``normalization`` (else ``"unit"``, i.e. pixels / 255).
    """
    from .. import zoo
    from ..backends.onnx import OnnxBackend
    from .keras_onnx import export_keras

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
    names = list(labels) if labels is not None else metadata.get("classes") or [f"class_{i}" for i in range(size)]
    if len(names) != size:
        raise ModelFileError(f"{where}: the model has {size} outputs but {len(names)} class names", path=str(where))
    return Recognizer(
        backend, names, preprocessing, name=where.stem, sha256=zoo.sha256_file(where), limits=limits,
        metadata=metadata,
    )
