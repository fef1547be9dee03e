"""Changing what a learned recognizer was taught, and keeping its examples beside it.

:func:`~imagerec.transfer.add_examples` teaches more; this module takes
away and renames: :func:`without_examples` forgets some examples (the
imprint head subtracts them from its class sums; a head that keeps its
training embeddings is refitted without them), :func:`without_class` forgets
a class, :func:`relabel` renames one. Each returns a new recognizer and
leaves the given one as it was; the "unknown" threshold is kept.

An :class:`Example` is one taught photo as the teaching page shows it: an
id, its class, its embedding and a small JPEG thumbnail.
:func:`save_with_examples` writes them inside the recognizer's ``.imagerec``
file (extra members ``taught/examples.json`` and ``taught/embeddings.npy``,
which ``imagerec.load`` ignores), atomically; :func:`read_examples` reads them
back within bounds, refusing a hostile file with a one-line error.

>>> import imagerec, numpy as np
>>> shots = "../shared/photos/few-shot/"
>>> model = imagerec.learn({"cat": [shots + "cat_train_0.bmp"], "dog": [shots + "dog_train_0.bmp"],
...                         "snack": [shots + "hotdog_train_0.bmp"]}, head="imprint", cache=False)
>>> relabel(model, "snack", "hot dog").labels
['cat', 'dog', 'hot dog']
>>> without_class(model, "dog").labels
['cat', 'snack']
"""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.arrays import l2_normalize
from ..core.errors import ModelFileError, UsageError
from ..core.fs import atomic_path
from ..recognizer import UNKNOWN, Recognizer
from .heads import Head, ImprintHead
from .learned import LearnedRecognizer

__all__ = ["Example", "relabel", "without_class", "without_examples", "save_with_examples", "read_examples",
           "MAX_EXAMPLES", "MAX_THUMBNAIL_BYTES"]

EXAMPLES_MEMBER = "taught/examples.json"
EMBEDDINGS_MEMBER = "taught/embeddings.npy"
MAX_EXAMPLES = 2_000  # more than a served model keeps (imagerec.serving.teach: 1,000)
MAX_THUMBNAIL_BYTES = 32 * 1024
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Example:
    """One taught photo: ``id`` (stable, opaque), its class, its embedding and a JPEG ``thumbnail``."""

    id: str
    label: str
    embedding: np.ndarray
    thumbnail: bytes = b""


# -- changing what was taught ---------------------------------------------------------


def relabel(recognizer: Recognizer, old: str, new: str) -> LearnedRecognizer:
    """``recognizer`` with class ``old`` called ``new`` (everything it learned stays)."""
    head = _head(recognizer)
    new = check_label(new)
    labels = head.labels_
    if old not in labels:
        raise UsageError(f"no class named {old!r}; classes: {', '.join(labels)}")
    if new != old and new in labels:
        raise UsageError(f"there is already a class named {new!r}; delete it first or choose another name")
    head = copy.deepcopy(head)
    head.classes_ = np.asarray([new if label == old else label for label in labels])
    return _rebuilt(recognizer, head)


def without_class(recognizer: Recognizer, label: str) -> LearnedRecognizer:
    """``recognizer`` without class ``label``; at least one class must stay."""
    head = _head(recognizer)
    labels = head.labels_
    if label not in labels:
        raise UsageError(f"no class named {label!r}; classes: {', '.join(labels)}")
    if len(labels) == 1:
        raise UsageError(f"{label!r} is the only class; delete the model instead")
    gone = labels.index(label)
    if isinstance(head, ImprintHead):
        head = copy.deepcopy(head)
        keep = np.arange(len(labels)) != gone
        head.sums_, head.counts_ = head.sums_[keep], head.counts_[keep]
        head.classes_ = head.classes_[keep]
        return _rebuilt(recognizer, head)
    X, y = _stored(head)
    keep = y != gone
    remaining = [name for name in labels if name != label]
    return _rebuilt(recognizer, _refit(head, X[keep], np.where(y[keep] > gone, y[keep] - 1, y[keep]), remaining))


def without_examples(recognizer: Recognizer, embeddings: np.ndarray, labels: Sequence[str]) -> LearnedRecognizer:
    """``recognizer`` having forgotten the examples with these ``embeddings`` (one class name each).

    A class left with no example is removed; the last class cannot be.
    """
    head = _head(recognizer)
    X = np.asarray(embeddings, np.float32)
    if X.ndim != 2 or len(X) != len(labels):
        raise UsageError(f"{len(labels)} class names for embeddings of shape {X.shape}")
    classes = head.labels_
    missing = sorted(set(labels) - set(classes))
    if missing:
        raise UsageError(f"no class named {missing[0]!r}; classes: {', '.join(classes)}")
    y = np.array([classes.index(label) for label in labels], np.int64)
    if isinstance(head, ImprintHead):
        head = copy.deepcopy(head)
        np.subtract.at(head.sums_, y, l2_normalize(X).astype(np.float64))
        head.counts_ = head.counts_ - np.bincount(y, minlength=len(classes))
        if (head.counts_ < 0).any():
            raise UsageError("more examples removed from a class than it was taught")
        emptied = np.flatnonzero(head.counts_ == 0)
        head.sums_[emptied] = 0.0  # no rounding residue left in a class without examples
    else:
        stored_X, stored_y = _stored(head)
        keep = np.ones(len(stored_X), bool)
        for x, c in zip(l2_normalize(X), y):
            # The stored rows are float16: the example is its nearest row of its class.
            candidates = np.flatnonzero(keep & (stored_y == c))
            if not len(candidates):
                raise UsageError(f"more examples removed from {classes[c]!r} than it was taught")
            nearest = candidates[np.argmin(np.abs(stored_X[candidates] - x).sum(axis=1))]
            keep[nearest] = False
        present = np.unique(stored_y[keep])
        if not len(present):
            raise UsageError("removing these examples would leave no class")
        remaining = [classes[c] for c in present]
        remap = {int(c): i for i, c in enumerate(present)}
        head = _refit(head, stored_X[keep], np.array([remap[int(c)] for c in stored_y[keep]]), remaining)
        return _rebuilt(recognizer, head)
    recognizer = _rebuilt(recognizer, head)
    for label in [classes[c] for c in np.flatnonzero(head.counts_ == 0)]:
        if len(recognizer.labels) == 1:
            raise UsageError(f"removing these examples would leave no class ({label!r} was the last)")
        recognizer = without_class(recognizer, label)
    return recognizer


def check_label(label: str) -> str:
    """A class name as given, stripped; one-line ``UsageError`` when empty, too long or reserved.

    >>> check_label("  mug ")
    'mug'
    """
    label = str(label).strip()
    if not label or len(label) > 100:
        raise UsageError("the class name must be 1 to 100 characters")
    if label == UNKNOWN:
        raise UsageError(f"{UNKNOWN!r} is reserved for photos of none of the taught classes; choose another name")
    return label


def _head(recognizer: Recognizer) -> Head:
    head = getattr(recognizer, "head", None)
    if head is None or not recognizer.metadata.get("backbone"):
        raise UsageError(f"{recognizer.name!r} was not made by imagerec.learn; only a learned recognizer can be changed")
    return head


def _stored(head: Head) -> tuple[np.ndarray, np.ndarray]:
    if not getattr(head, "keeps_examples", False):
        raise UsageError(f"a {head.kind} head cannot forget examples")
    return head.X_.astype(np.float32), np.asarray(head.y_, np.int64)


def _refit(head: Head, X: np.ndarray, y: np.ndarray, labels: list[str]) -> Head:
    if len(np.unique(y)) < head.min_classes:
        raise UsageError(f"a {head.kind} head needs examples of at least {head.min_classes} classes")
    return head.clone().fit(X, y, labels)


def _rebuilt(recognizer: Recognizer, head: Head) -> LearnedRecognizer:
    training = dict(recognizer.metadata.get("training") or {})
    training["examples"] = {label: int(n) for label, n in zip(head.labels_, np.asarray(head.class_counts_))}
    metadata = {**recognizer.metadata, "training": training}
    metadata.pop("path", None)  # no longer the file it was loaded from
    return LearnedRecognizer(
        recognizer.backend, head.labels_, recognizer.preprocessing, name=recognizer.name, sha256=None,
        limits=recognizer.limits, head=head, threshold=recognizer.threshold, metadata=metadata,
    )


# -- keeping the examples inside the .imagerec file ------------------------------------


def save_with_examples(recognizer: LearnedRecognizer, examples: Sequence[Example], path: str | Path) -> Path:
    """Save ``recognizer`` to ``path`` with ``examples`` inside, atomically (a reader sees the old file or the new)."""
    path = Path(path)
    listing = [{"id": e.id, "label": e.label, "thumbnail": base64.b64encode(e.thumbnail).decode("ascii")}
               for e in examples]
    dim = int(getattr(recognizer.head, "num_features", 0) or 0)
    matrix = np.stack([np.asarray(e.embedding, np.float32) for e in examples]) if examples else np.zeros((0, dim), np.float32)
    buffer = io.BytesIO()
    np.save(buffer, matrix, allow_pickle=False)
    with atomic_path(path) as temp:
        recognizer.save(temp)
        with zipfile.ZipFile(temp, "a") as archive:
            archive.writestr(EXAMPLES_MEMBER, json.dumps(listing), compress_type=zipfile.ZIP_DEFLATED)
            archive.writestr(EMBEDDINGS_MEMBER, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    return path


def read_examples(path: str | Path, recognizer: Recognizer) -> list[Example]:
    """The examples :func:`save_with_examples` kept in ``path`` ([] when it holds none).

    Examples of a class ``recognizer`` does not have are dropped (the file
    was changed between the two writes of an interrupted save). A member out
    of bounds, of the wrong shape or not what it claims is a one-line
    :class:`~imagerec.core.errors.ModelFileError`.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if EXAMPLES_MEMBER not in names or EMBEDDINGS_MEMBER not in names:
                return []
            listing_info, matrix_info = archive.getinfo(EXAMPLES_MEMBER), archive.getinfo(EMBEDDINGS_MEMBER)
            if listing_info.file_size > MAX_EXAMPLES * (MAX_THUMBNAIL_BYTES * 4 // 3 + 400):
                raise ModelFileError(f"{path}: {EXAMPLES_MEMBER} is too large", path=str(path))
            dim = int(recognizer.head.num_features)
            if matrix_info.file_size > MAX_EXAMPLES * dim * 4 + 4096:
                raise ModelFileError(f"{path}: {EMBEDDINGS_MEMBER} is too large", path=str(path))
            listing = json.loads(archive.read(EXAMPLES_MEMBER))
            matrix = np.load(io.BytesIO(archive.read(EMBEDDINGS_MEMBER)), allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RecursionError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path}: its kept examples are damaged ({type(exc).__name__})", path=str(path)) from exc
    return _checked_examples(listing, matrix, dim, recognizer.labels, path)


def _checked_examples(listing, matrix: np.ndarray, dim: int, labels: Sequence[str], path: Path) -> list[Example]:
    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"{path}: its kept examples are damaged ({what})", path=str(path))

    if not isinstance(listing, list) or len(listing) > MAX_EXAMPLES:
        raise bad(f"the example list is not a list of at most {MAX_EXAMPLES:,}")
    if matrix.dtype != np.float32 or matrix.shape != (len(listing), dim) or not np.isfinite(matrix).all():
        raise bad(f"embeddings are {matrix.dtype} {matrix.shape}, expected float32 ({len(listing)}, {dim})")
    known, seen, examples = set(labels), set(), []
    for entry, embedding in zip(listing, matrix):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("id", "label", "thumbnail")):
            raise bad("an entry is not {id, label, thumbnail}")
        if not _ID.match(entry["id"]) or entry["id"] in seen:
            raise bad("an example id is malformed or repeated")
        seen.add(entry["id"])
        try:
            thumbnail = base64.b64decode(entry["thumbnail"], validate=True)
        except ValueError:
            raise bad("a thumbnail is not base64") from None
        if len(thumbnail) > MAX_THUMBNAIL_BYTES or (thumbnail and not thumbnail.startswith(b"\xff\xd8")):
            raise bad("a thumbnail is not a small JPEG")
        if entry["label"] in known:
            examples.append(Example(entry["id"], entry["label"], embedding.copy(), thumbnail))
    return examples
