"""``.tflite`` models and named zoo models, opened as :class:`~imagerec.recognizer.Recognizer` s (run by LiteRT).

>>> load_zoo("mobilenet_v1_embedder").can_embed
True
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from .. import zoo
from ..backends.litert import LiteRTBackend, read_metadata
from ..core.errors import ModelFileError, UsageError
from ..core.images import DEFAULT_LIMITS, Limits
from ..core.preprocessing import Preprocessing
from ..recognizer import Recognizer

__all__ = ["load_zoo", "load_spec", "load_tflite", "read_labels"]


def load_zoo(name: str, *, num_threads: int | None = None, limits: Limits = DEFAULT_LIMITS) -> Recognizer:
    """The recognizer of the zoo model called ``name`` (fetched and verified on first use)."""
    return load_spec(zoo.get(name), num_threads=num_threads, limits=limits)


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
    ignore = [spec.background_label] if spec.background_label else []
    return Recognizer(
        backend,
        names,
        spec.preprocessing,
        name=spec.name,
        sha256=spec.model.sha256,
        ignore=ignore,
        limits=limits,
        synonyms=synonyms,
    )


def load_tflite(path: str | os.PathLike[str], *, labels: str | os.PathLike[str] | Sequence[str] | None = None,
                num_threads: int | None = None, limits: Limits = DEFAULT_LIMITS) -> Recognizer:
    """A ``.tflite`` file: a copy of a zoo model, a file ``imagerec export`` wrote, or any classifier.

    A zoo model's copy brings its labels; an exported file carries its own
    labels, preprocessing and threshold in its metadata; any other
    classifier takes ``labels`` (a label file or a list; else ``class_0``...).

    >>> load_tflite("../shared/models/mobilenet_v2_1.0_224_quant.tflite").name
    'mobilenet_v2'
    """
    path = Path(path)

    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file", path=str(path))
    digest = zoo.sha256_file(path)
    known = zoo.find_by_sha256(digest)
    if known is not None and labels is None:
        # A copy of a zoo model: its labels, background class and embedding come with it.
        return load_spec(known, num_threads=num_threads, limits=limits, path=path)
    info = _read_tflite_metadata(path).get("imagerec")
    if info is not None:
        return _load_exported(path, info, labels, digest, num_threads, limits)
    backend = LiteRTBackend(path, num_threads=num_threads)
    size = backend.output_dim("scores")
    names = [f"class_{i}" for i in range(size)] if labels is None else read_labels(labels)
    if len(names) != size:
        raise UsageError(f"{path}: the model has {size} outputs but {len(names)} labels were given")
    preprocessing = Preprocessing(size=backend.input_size, resize="crop", normalization="uint8")
    return Recognizer(
        backend, names, preprocessing, name=path.stem, sha256=digest, ignore=["background"], limits=limits
    )


def _read_tflite_metadata(path: Path) -> dict[str, bytes]:
    """The file's metadata entries; none if it cannot be read (LiteRTBackend then says why)."""

    try:
        return read_metadata(path.read_bytes())
    except OSError:
        return {}


def _load_exported(path: Path, raw_info: bytes, labels, digest: str, num_threads: int | None,
                          limits: Limits) -> Recognizer:
    """A ``.tflite`` that ``imagerec export`` wrote: labels, preprocessing and threshold from its metadata."""

    try:
        info = json.loads(raw_info)
        names = list(info["labels"]) if labels is None else read_labels(labels)
        preprocessing = Preprocessing.from_dict(info["preprocessing"])
        threshold = info.get("threshold")
        outputs = list(info.get("outputs") or ["scores"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: its imagerec metadata is damaged ({exc})", path=str(path)) from exc
    if threshold is None or "confidence" not in outputs:
        backend, threshold = LiteRTBackend(path, num_threads=num_threads), None
    else:
        # The head's own confidence is a graph output: the threshold is compared with it.
        backend = LiteRTBackend(path, num_threads=num_threads, extra_outputs={"confidence": "confidence"})
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
