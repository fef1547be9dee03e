"""``export()``: one source, one format, one checked file.

The table :data:`ROUTES` says which writer makes which (source kind,
format): a writer builds the file at a temporary path beside the
destination and says how to score a batch with it; :func:`export` scores
the sample images with both the source and the written file, and renames
the file into place only when they agree (:mod:`imagerec.export.check`).

Class names also go to a text file named after the exported file
(``pets.onnx`` → ``pets.onnx.labels.txt``), so exports of two models to two
formats never share one. An export never replaces a file that is already
there (the model file, or a labels file with other names in it) unless
``force=True`` (``--force``): it stops with a one-line error before any work.

>>> export("model.keras", "coreml")
Traceback (most recent call last):
imagerec.core.errors.UsageError: unknown export format 'coreml'; expected one of onnx, tflite, keras
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..core.errors import ModelFileError, OutputError, UsageError
from ..core.fs import atomic_path, atomic_write_text
from ..core.images import ImageSource
from . import keras, onnx, tflite
from .check import TOLERANCE, ExportCheck, Written, compare, sample_batch, synthetic_samples
from .sources import KerasZooModel, LearnedSource, TFLiteModel, TrainedNetwork, open_source

__all__ = ["export", "ExportResult", "ExportCheck", "FORMATS", "ROUTES", "TOLERANCE", "labels_path_for", "synthetic_samples"]

FORMATS = ("onnx", "tflite", "keras")

Source = TrainedNetwork | LearnedSource | KerasZooModel | TFLiteModel

# (source kind, format) → the writer. What is not here cannot be exported (see _why_not).
ROUTES: dict[tuple[str, str], Callable[[Any, Path], Written]] = {
    ("trained", "onnx"): onnx.trained_to_onnx,
    ("trained", "tflite"): tflite.trained_to_tflite,
    ("learned on zoo", "onnx"): onnx.learned_on_zoo_to_onnx,
    ("learned on zoo", "tflite"): tflite.learned_on_zoo_to_tflite,
    ("learned on keras", "onnx"): onnx.learned_on_keras_to_onnx,
    ("learned on keras", "tflite"): tflite.learned_on_keras_to_tflite,
    ("learned on keras", "keras"): keras.learned_to_keras,
    ("learned on keras zoo", "onnx"): onnx.learned_on_keras_to_onnx,
    ("learned on keras zoo", "tflite"): tflite.learned_on_keras_to_tflite,
    ("learned on keras zoo", "keras"): keras.learned_to_keras,
    ("keras zoo", "onnx"): onnx.keras_zoo_to_onnx,
    ("keras zoo", "tflite"): tflite.keras_zoo_to_tflite,
    ("tflite", "onnx"): onnx.tflite_model_to_onnx,
    ("tflite", "tflite"): tflite.tflite_model_to_tflite,
}


@dataclass(frozen=True)
class ExportResult:
    """The exported file, its format and its check."""

    path: Path
    format: str
    source: str
    labels_path: Path | None
    check: ExportCheck
    inputs: str
    outputs: tuple[str, ...]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        data["labels_path"] = str(self.labels_path) if self.labels_path else None
        data["check"] = {**asdict(self.check), "ok": self.check.ok}
        data["outputs"] = list(self.outputs)
        return data


def export(
    model: Any,
    format: str,
    output: str | os.PathLike[str] | None = None,
    *,
    samples: Sequence[ImageSource] | None = None,
    tolerance: float = TOLERANCE,
    force: bool = False,
) -> ExportResult:
    """Export ``model`` (a ``.keras`` / ``.imagerec`` path, a learned Recognizer or a Keras zoo name) as ``format``.

    ``output`` defaults to the source file's name with the new suffix (in
    the current folder for a recognizer in memory or a zoo model's name). Class names are also
    written beside it as ``<file name>.labels.txt``, one a line. The file is
    checked on ``samples`` (default: :func:`synthetic_samples`) and only
    written when its scores are within ``tolerance`` of the source's.
    Existing files are replaced only with ``force=True``.
    """
    if format not in FORMATS:
        raise UsageError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    source = open_source(model)
    route = ROUTES.get((source.kind, format))
    if route is None:
        raise UsageError(_why_not(source, format))
    dest = _destination(output, model, source, f".{format}")
    source_file = getattr(source, "path", None)
    if source_file is not None and dest.resolve() == Path(source_file).resolve():
        raise UsageError(f"{dest}: the output would overwrite the model it is exported from; choose --output")
    labels_file = labels_path_for(dest)
    labels_text = "".join(f"{label}\n" for label in source.labels)
    if not force:
        _refuse_to_replace(dest, labels_file, labels_text)
    batch, sample_source = sample_batch(samples, source.preprocessing)
    expected = source.score(batch)
    with atomic_path(dest) as tmp:
        written = route(source, tmp)
        got = written.score(batch)
        check = compare(expected.probabilities, got.probabilities, sample_source, tolerance,
                        expected.confidence, got.confidence)
        if not check.ok:  # leaving the block by an exception keeps nothing
            raise ModelFileError(_failure(dest, format, check), path=str(dest))
    labels_path = atomic_write_text(labels_file, labels_text)
    return ExportResult(dest, format, source.description, labels_path, check, written.inputs, written.outputs)


def labels_path_for(dest: str | os.PathLike[str]) -> Path:
    """Where the class names of an export to ``dest`` go: beside it, named after the whole file name.

    >>> labels_path_for("out/pets.onnx").as_posix()
    'out/pets.onnx.labels.txt'
    """
    dest = Path(dest)
    return dest.with_name(dest.name + ".labels.txt")


def _refuse_to_replace(dest: Path, labels_file: Path, labels_text: str) -> None:
    """Stop, before any work, rather than silently replace a file someone may still want."""
    if dest.exists():
        raise OutputError(
            f"{dest} already exists; pass --force (force=True) to replace it, or choose another --output", path=str(dest)
        )
    if labels_file.exists():
        try:
            same = labels_file.read_text(encoding="utf-8") == labels_text
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:  # identical names lose nothing; other names would be lost
            raise OutputError(
                f"{labels_file} already exists with other class names; pass --force (force=True) to replace it, "
                "or choose another --output",
                path=str(labels_file),
            )


def _why_not(source: Source, format: str) -> str:
    if source.kind == "learned on pooled":
        # Two networks and a mirrored copy are not one graph the converters take.
        return (
            f"a recognizer learned on the pooled backbone {source.backbone.get('name')!r} cannot be exported; "
            "learn it on mobilenet_v2 or a keras: backbone to export it"
        )
    if source.kind == "keras zoo" and format == "keras":
        return (f"{source.description} is a Keras application with published weights: Keras builds it as "
                f"keras.applications.{source.spec.application}; export it to onnx or tflite")
    if source.kind == "tflite":
        return f"{source.description} is a TFLite model, which has no Keras equivalent; export it to onnx or tflite"
    if format == "keras":
        return (
            "export to keras is for recognizers learned on a Keras backbone (imagerec learn --backbone "
            "keras:MobileNetV2); a .keras model already is a Keras file, and an int8 TFLite backbone has no "
            "Keras equivalent: use --format onnx or --format tflite"
        )
    return f"cannot export a {source.kind} model to {format}"


def _destination(output, model: Any, source: Source, suffix: str) -> Path:
    if output is not None:
        dest = Path(output)
        if dest.suffix.lower() != suffix:
            raise UsageError(f"{dest}: the output of a {suffix[1:]} export must end in {suffix}")
        return dest
    stem = getattr(source, "file_stem", None)  # a zoo model's name (an alias such as keras:X is no file name)
    if stem:
        return Path(f"{stem}{suffix}")
    if isinstance(model, (str, os.PathLike)):
        return Path(os.fspath(model)).with_suffix(suffix)
    return Path(f"{source.recognizer.name}{suffix}")


def _failure(dest: Path, format: str, check: ExportCheck) -> str:
    what = {"onnx": "ONNX model", "tflite": "TFLite model", "keras": "Keras model"}[format]
    extra = f", confidence by {check.confidence_max_abs_diff:.2e}" if check.confidence_max_abs_diff is not None else ""
    return (
        f"{dest}: the exported {what} differs from the original by {check.max_abs_diff:.2e} in probability"
        f"{extra} (tolerance {check.tolerance:.0e}), top-1 agrees on {check.top1_agree} of {check.samples} "
        "sample images; not written"
    )
