"""``.tflite`` models and named zoo models, opened as :class:`~imagerec.recognizer.Recognizer` s (run by LiteRT).

>>> load_zoo("mobilenet_v1_embedder").can_embed
True
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

from .. import zoo
from ..backends.litert import LiteRTBackend, read_metadata
from ..core.metadata import ExportedMetadata, parse_json, validate_block
from ..core.errors import ModelFileError, UsageError
from ..core.images import DEFAULT_LIMITS, Limits
from ..core.preprocessing import Preprocessing
from ..recognizer import Recognizer
from . import teachable
from .tflite_metadata import normalization_name, read_tflite_metadata

__all__ = ["load_zoo", "load_spec", "load_tflite", "read_labels", "leading_background"]


def load_zoo(name: str, *, num_threads: int | None = None, limits: Limits = DEFAULT_LIMITS) -> Recognizer:
    """The recognizer of the zoo model called ``name`` (fetched and verified on first use)."""
    spec = zoo.get(name)
    if spec.backend == "keras":  # a Keras application: its weights converted to ONNX once
        from .keras_apps import load_keras_spec

        return load_keras_spec(spec, num_threads=num_threads, limits=limits)
    return load_spec(spec, num_threads=num_threads, limits=limits)


def load_spec(spec: zoo.ModelSpec, *, num_threads: int | None = None, limits: Limits = DEFAULT_LIMITS,
              path: Path | None = None) -> Recognizer:
    """The recognizer of a zoo spec, from its fetched file or from ``path`` (the same bytes)."""

    path = path or zoo.fetch(spec.model)
    extra = {}
    if spec.embedding_tensor:
        extra["embedding"] = spec.embedding_tensor
    if spec.logits_tensor:
        extra["logits"] = spec.logits_tensor
    backend = LiteRTBackend(path, num_threads=num_threads, extra_outputs=extra)
    if spec.task == "embed":
        return Recognizer(backend, [], spec.preprocessing, name=spec.name, sha256=spec.model.sha256,
                          limits=limits, task="embed")
    lines = zoo.read_labels(zoo.fetch(spec.labels))
    if spec.label_synonyms:
        synonyms = [tuple(name.strip() for name in line.split(",") if name.strip()) or (line,) for line in lines]
    else:
        synonyms = [(line,) for line in lines]
    names = [names_[0] for names_ in synonyms]
    if len(names) != backend.output_dim("scores"):
        raise ModelFileError(
            f"{spec.name}: {len(names)} labels for {backend.output_dim('scores')} model outputs", path=str(path)
        )
    skip = leading_background(names, spec.background_label)
    ignore = [spec.background_label] if spec.background_label and not skip else []
    return Recognizer(
        backend,
        names[skip:],
        spec.preprocessing,
        name=spec.name,
        sha256=spec.model.sha256,
        ignore=ignore,
        limits=limits,
        synonyms=synonyms[skip:],
        skip_outputs=skip,
    )


def leading_background(names: Sequence[str], background: str | None = "background") -> int:
    """1 when the first output is the ``background`` of a TF-slim ImageNet model, else 0.

    Those models have 1001 outputs; dropping the first makes every index the
    ImageNet-1k class index Keras's ``decode_predictions`` uses (Egyptian cat
    is 285, not 286). A background elsewhere (the iNaturalist bird model's
    is last) stays an ignored label.

    >>> leading_background(["background", "tench", "goldfish"]), leading_background(["tench", "background"])
    (1, 0)
    """
    return 1 if background and len(names) > 1 and names[0] == background else 0


def load_tflite(path: str | os.PathLike[str], *, labels: str | os.PathLike[str] | Sequence[str] | None = None,
                normalization: str | None = None, num_threads: int | None = None,
                limits: Limits = DEFAULT_LIMITS) -> Recognizer:
    """A ``.tflite`` file: a copy of a zoo model, a file ``imagerec export`` wrote, or any classifier.

    A zoo model's copy brings its labels; an exported file carries its own
    labels, preprocessing and threshold in its metadata; a Teachable Machine
    export (:mod:`imagerec.formats.teachable`) gets Teachable Machine's
    preprocessing and the ``labels.txt`` beside it; any other classifier
    takes ``labels`` (a label file or a list; else the label file packed in
    its TFLite metadata; else ``class_0``...). A float-input model's
    normalisation comes from ``normalization``, else from its TFLite
    metadata (Model Maker, MediaPipe), else a one-line error says so.

    >>> load_tflite("../shared/models/mobilenet_v2_1.0_224_quant.tflite").name
    'mobilenet_v2'
    """
    path = Path(path)

    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file", path=str(path))
    digest = zoo.sha256_file(path)
    known = zoo.find_by_sha256(digest)
    if known is not None and labels is None and normalization is None:
        # A copy of a zoo model: its labels, background class and embedding come with it.
        return load_spec(known, num_threads=num_threads, limits=limits, path=path)
    entries = _read_tflite_metadata(path)
    info = entries.get("imagerec")
    if info is not None:
        return _load_exported(path, info, labels, digest, num_threads, limits)
    kind = teachable.export_kind(path)
    beside = teachable.labels_beside(path) if kind in ("float", "quantized") else None
    if beside is not None or (kind in ("float", "quantized") and labels is not None):
        return _load_teachable(path, kind, labels if labels is not None else beside, normalization, digest,
                               num_threads, limits)
    described = read_tflite_metadata(path.read_bytes(), entries)
    if normalization is None and described is not None and described.mean and described.std:
        normalization = normalization_name(described.mean, described.std)
        if normalization is None:
            raise ModelFileError(
                f"{path}: its metadata asks for (x - {described.mean}) / {described.std}, which is none of "
                "imagerec's normalisations; pass normalization= one of uint8, unit, tf, torch, caffe",
                path=str(path),
            )
    backend = LiteRTBackend(path, num_threads=num_threads, normalization=normalization)
    size = backend.output_dim("scores")
    if labels is not None:
        names = read_labels(labels)
    elif described is not None and described.labels:
        names = described.labels
    else:
        names = [f"class_{i}" for i in range(size)]
    if len(names) != size:
        raise UsageError(f"{path}: the model has {size} outputs but {len(names)} labels were given")
    preprocessing = Preprocessing(size=backend.input_size, resize="crop", normalization=backend.normalization)
    skip = leading_background(names)
    return Recognizer(
        backend, names[skip:], preprocessing, name=path.stem, sha256=digest, ignore=["background"], limits=limits,
        skip_outputs=skip,
    )


def _load_teachable(path: Path, kind: str, labels, normalization: str | None, digest: str,
                    num_threads: int | None, limits: Limits) -> Recognizer:
    """A Teachable Machine ``model_unquant.tflite`` / ``model.tflite``: its preprocessing, its labels."""
    preprocessing = teachable.preprocessing_for(kind)
    if normalization is not None:
        preprocessing = dataclasses.replace(preprocessing, normalization=normalization)
    backend = LiteRTBackend(path, num_threads=num_threads, normalization=preprocessing.normalization)
    preprocessing = dataclasses.replace(preprocessing, size=backend.input_size, normalization=backend.normalization)
    names = read_labels(labels)
    if len(names) != backend.output_dim("scores"):
        raise UsageError(f"{path}: the model has {backend.output_dim('scores')} outputs but {len(names)} labels")
    recognizer = Recognizer(backend, names, preprocessing, name=path.stem, sha256=digest, limits=limits,
                            metadata={"teachable_machine": True})
    # Teachable Machine decodes every photo in full; so does imagerec for its models (scores match).
    return recognizer.configure(refine_margin=1.0)


def _read_tflite_metadata(path: Path) -> dict[str, bytes]:
    """The file's metadata entries; none if it cannot be read (LiteRTBackend then says why)."""

    try:
        return read_metadata(path.read_bytes())
    except OSError:
        return {}


def _load_exported(path: Path, raw_info: bytes, labels, digest: str, num_threads: int | None,
                          limits: Limits) -> Recognizer:
    """A ``.tflite`` that ``imagerec export`` wrote: labels, preprocessing and threshold from its metadata."""

    info = parse_json(raw_info, str(path), "imagerec metadata")
    block = validate_block(info, ExportedMetadata, str(path), "imagerec metadata")
    try:
        names = list(block.labels) if labels is None else read_labels(labels)
        preprocessing = Preprocessing.from_dict(info["preprocessing"])
        threshold = block.threshold
        outputs = list(info.get("outputs") or ["scores"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: its imagerec metadata is damaged ({exc})", path=str(path)) from exc
    norm = preprocessing.normalization  # used only by a float-input model
    if threshold is None or "confidence" not in outputs:
        backend, threshold = LiteRTBackend(path, num_threads=num_threads, normalization=norm), None
    else:
        # The head's own confidence is a graph output: the threshold is compared with it.
        backend = LiteRTBackend(path, num_threads=num_threads, extra_outputs={"confidence": "confidence"},
                                normalization=norm)
    if len(names) != backend.output_dim("scores"):
        raise ModelFileError(f"{path}: {backend.output_dim('scores')} outputs but {len(names)} labels", path=str(path))
    return Recognizer(backend, names, preprocessing, name=path.stem, sha256=digest, threshold=threshold,
                      metadata=info, limits=limits)


def read_labels(labels: str | os.PathLike[str] | Sequence[str]) -> list[str]:
    """Labels given as a label file's path or as a list.

    >>> read_labels(["cat", "dog"])
    ['cat', 'dog']
    """

    return zoo.read_labels(labels) if isinstance(labels, (str, os.PathLike)) else list(labels)
