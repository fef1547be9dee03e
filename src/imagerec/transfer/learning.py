"""Learning a recognizer on a frozen backbone: :func:`learn`, :func:`add_examples`, and :func:`gather` (what to learn from).

The backbone embeds every photo once (cached, :mod:`~imagerec.transfer.features`);
a head is fitted on the embeddings (:mod:`~imagerec.transfer.heads`) and the
"unknown" threshold calibrated on held-out examples and left-out classes.
The result is a :class:`~imagerec.transfer.learned.LearnedRecognizer`.

>>> from imagerec.transfer.learning import gather, learn
>>> shots = "../shared/photos/few-shot"
>>> sources, labels, classes = gather({"cat": [f"{shots}/cat_train_0.bmp"], "dog": [f"{shots}/dog_train_0.bmp"]})
>>> model = learn({"cat": sources[:1], "dog": sources[1:]}, head="imprint", threshold=None)
>>> model.predict(f"{shots}/cat_train_0.bmp", top_k=1)[0][0].label
'cat'
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..core.errors import UsageError
from ..core.images import IMAGE_SUFFIXES, describe_source
from ..core.pipeline import expand_paths
from ..data.datasets import load_dataset, read_class_folders
from ..recognizer import UNKNOWN, Recognizer
from .backbones import Backbone, backbone_from_recognizer, default_frame, get_backbone
from .features import extract, variants_for
from .heads import Head, ImprintHead, calibrate, held_out_scores, make_head
from .learned import LearnedRecognizer, timestamp

__all__ = ["learn", "add_examples", "gather", "recalibrated"]


# -- what to learn from ---------------------------------------------------------------


def gather(data: Any) -> tuple[list, list[str], list[str]]:
    """``(sources, label of each source, class names)`` from what ``learn`` accepts.

    ``data`` is a folder whose sub-folders are classes (their images, at any
    depth), a dict ``{label: [image sources]}`` (paths, bytes, arrays, PIL
    images; a folder path as a value stands for its images), or a dataset
    object with ``paths``, ``targets`` and ``classes`` (``imagerec.data``).

    >>> sources, labels, classes = gather({"a": [b"1", b"2"], "b": [b"3"]})
    >>> labels, classes
    (['a', 'a', 'b'], ['a', 'b'])
    """
    if all(hasattr(data, name) for name in ("paths", "targets", "classes")):
        classes = [str(c) for c in data.classes]
        sources = [os.fspath(p) if isinstance(p, os.PathLike) else p for p in data.paths]
        labels = [classes[int(t)] for t in data.targets]
        return _checked(sources, labels, [c for c in classes if c in set(labels)])
    if isinstance(data, Mapping):
        sources, labels = [], []
        for label, items in data.items():
            if isinstance(items, (str, os.PathLike, bytes, bytearray)) or hasattr(items, "shape"):
                items = [items]
            items = list(items)
            expanded = []
            for item in items:
                if isinstance(item, (str, os.PathLike)) and os.path.isdir(item):
                    expanded.extend(expand_paths([item], recursive=True))
                else:
                    expanded.append(item)
            if not expanded:
                raise UsageError(f"class {label!r} has no images")
            sources.extend(expanded)
            labels.extend([str(label)] * len(expanded))
        return _checked(sources, labels, [str(label) for label in data])
    if isinstance(data, (str, os.PathLike)):
        folder = Path(data)
        if not folder.is_dir():
            if folder.suffix.lower() in (".csv", ".gz", ".tgz", ".tar", ".zip"):
                return gather(load_dataset(folder))
            raise UsageError(f"{folder}: expected a folder with one sub-folder of images per class")
        if not any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir()):
            loose = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
            hint = f" (it holds {len(loose)} loose images: put each class in its own sub-folder)" if loose else ""
            raise UsageError(f"{folder}: no class sub-folders with images found{hint}")
        # The same reading as `imagerec train`: wrapper folders are descended, an empty class is an error.
        return gather(read_class_folders(folder))
    raise UsageError(
        f"cannot learn from a {type(data).__name__}: expected a folder of class sub-folders, "
        "a dict {label: [images]} or a dataset"
    )


def _checked(sources: list, labels: list[str], classes: list[str]) -> tuple[list, list[str], list[str]]:
    for name in classes:
        if not name.strip():
            raise UsageError("a class name is empty")
        if name == UNKNOWN:
            raise UsageError(f"{UNKNOWN!r} is reserved for photos of none of the taught classes; rename that class")
    if not sources:
        raise UsageError("no images to learn from")
    return sources, labels, classes


# -- learning ---------------------------------------------------------------------------


def _embed(sources, labels, backbone: Backbone, augment: int, cache, progress, on_error):
    result = extract(sources, backbone, variants=variants_for(augment), cache=cache, progress=progress,
                     on_error=on_error)
    keep = np.flatnonzero(result.ok)
    skipped = {describe_source(sources[i]): message for i, message in result.errors.items()}
    return result.embeddings[keep], [labels[i] for i in keep], skipped, result


def _calibrate(head: Head, X: np.ndarray, y: np.ndarray, classes: list[str], threshold, seed: int):
    """``(threshold, calibration dict, metrics dict)``."""
    if threshold is None:
        return None, None, {}
    if threshold != "auto":
        value = float(threshold)
        return value, {"threshold": value, "method": "given"}, {}
    # Every head's confidence is the similarity to the class means, so the
    # threshold's evidence comes from cheap imprint fits; the head itself is
    # refitted only to measure its held-out accuracy.
    known, correct, untaught = held_out_scores(ImprintHead().clone, X, y, classes, seed=seed)
    copies_only = len(known) == 0 and len(untaught) == 0
    if copies_only:
        # One class of near-copies only (a single camera burst): nothing else to
        # measure against, so "unknown" is anything unlike those very photos,
        # until a second class or a different photo recalibrates it.
        known, correct, untaught = held_out_scores(ImprintHead().clone, X, y, classes, seed=seed, duplicates=None)
    if not isinstance(head, ImprintHead):
        _, correct, _ = held_out_scores(head.clone, X, y, classes, seed=seed, max_left_out_classes=0)
    metrics = {}
    if len(correct):
        metrics = {"held_out_accuracy": round(float(correct.mean()), 4), "held_out_examples": int(len(correct))}
    calibration = calibrate(known, untaught)
    if calibration is None:
        return None, None, metrics
    if copies_only:
        calibration.method += " (all near-copies of one photo: only photos like it are answered)"
    calibration.held_out_accuracy = metrics.get("held_out_accuracy")
    calibration.counts = {"known_examples": int(len(known)), "untaught_examples": int(len(untaught))}
    return calibration.threshold, calibration.to_dict(), metrics


def learn(
    data: Any,
    *,
    backbone: str | Backbone | Recognizer = "mobilenet_v2",
    head: str | Head = "logistic",
    head_options: dict | None = None,
    class_weight: str | None = None,
    augment: int = 0,
    frame: int | None = None,
    threshold: float | str | None = "auto",
    cache: bool | Any = True,
    on_error: str = "skip",
    num_threads: int | None = None,
    progress: bool | None = None,
    seed: int = 0,
    name: str = "learned",
) -> LearnedRecognizer:
    """Learn a recognizer for new classes on a frozen backbone.

    ``data``: a folder of class sub-folders, a dict ``{label: [images]}``
    (paths, bytes, arrays…) or a dataset (see :func:`gather`). ``backbone``:
    a name (``"mobilenet_v2"``, ``"keras:MobileNetV2"``), a
    :class:`~imagerec.transfer.backbones.base.Backbone`, or an already loaded
    recognizer with an embedding (a server reuses its model). ``head``:
    ``"logistic"`` (C by cross-validation), ``"dense"`` (the course's Keras
    head) or ``"imprint"`` (class means; one photo per class is enough).
    ``class_weight``: ``"balanced"`` (the logistic and dense heads' default)
    weighs each class's photos by ``n / (classes × count)``, so a class taught
    with few photos is not drowned by a big one; ``"none"`` weighs photos alike;
    None: the head's default (the imprint head's class means need none).
    ``augment``: extra flipped / cropped copies of each photo (0–7).
    ``frame``: pixels of grey frame around every picture at the backbone's
    input size (None: :func:`~imagerec.transfer.backbones.base.default_frame`,
    16 at 224; 0: none); the recognizer keeps it for its predictions.
    ``threshold``: ``"auto"`` calibrates the "unknown" threshold on held-out
    examples and left-out classes; a number fixes it; None never answers
    "unknown". The threshold is compared with each photo's *match* (cosine
    similarity to the nearest class's mean, shown beside every answer), not
    with a probability. One class is learned only with a threshold (it
    answers its class or "unknown"); "auto" then needs 2 photos of it.
    Undecodable images are skipped and listed in
    ``recognizer.metadata["training"]["skipped"]`` (``on_error="raise"``
    stops instead).

    >>> import imagerec
    >>> model = imagerec.learn({"cat": ["../shared/photos/cat_720p.jpg"],
    ...                         "parrot": ["../shared/photos/parrot.jpg"]}, head="imprint")
    >>> model.labels
    ['cat', 'parrot']
    """
    options = {**(head_options or {}), **({} if class_weight is None else {"class_weight": class_weight})}
    model = make_head(head, **options)  # before embedding: a wrong option fails now, not minutes later
    sources, labels, classes = gather(data)
    backbone = get_backbone(backbone, num_threads=num_threads)
    backbone = backbone.framed(default_frame(backbone.preprocessing) if frame is None else frame)
    embeddings, labels, skipped, result = _embed(sources, labels, backbone, augment, cache, progress, on_error)
    empty = [c for c in classes if c not in set(labels)]
    if empty:
        raise UsageError(f"no readable image left for class(es) {', '.join(map(repr, empty))}; see the skipped files")
    y = np.array([classes.index(label) for label in labels], np.int64)
    variants = embeddings.shape[1]
    model.fit(embeddings.reshape(-1, embeddings.shape[2]), np.repeat(y, variants), classes)
    # Held-out scores use the original photos only: augmented copies of a
    # held-out photo must not sit in the training folds.
    value, calibration, metrics = _calibrate(model, embeddings[:, 0], y, classes, threshold, seed)
    if len(classes) == 1 and value is None:
        raise UsageError(_one_class_reason(classes[0], threshold))
    metadata = {
        "backbone": backbone.describe(),
        "created": timestamp(),
        "calibration": calibration,
        "metrics": {**metrics, "extraction_images_per_second": _rate(result)},
        "training": {
            "examples": {c: int((y == i).sum()) for i, c in enumerate(classes)},
            "augment": int(augment),
            "threshold_mode": "auto" if threshold == "auto" else ("none" if threshold is None else "given"),
            "skipped": skipped,
        },
    }
    return LearnedRecognizer(
        backbone.backend, classes, backbone.preprocessing, name=name, sha256=None,
        head=model, threshold=value, metadata=metadata,
    )


def recalibrated(recognizer: LearnedRecognizer, embeddings: np.ndarray, labels: Sequence[str], *,
                 seed: int = 0) -> LearnedRecognizer:
    """``recognizer`` with its "auto" threshold calibrated again on these examples (one embedding, one class each).

    For whoever keeps a recognizer's examples beside it (the teaching
    server): a head that does not keep them (imprint) cannot recalibrate
    itself in :func:`add_examples`, so after teaching, forgetting or renaming
    the threshold would stay where the first lesson put it. A recognizer
    whose threshold was given, or turned off, is returned as it is.

    >>> import imagerec, numpy as np
    >>> shots = "../shared/photos/few-shot/"
    >>> model = imagerec.learn({"cat": [shots + "cat_train_0.bmp"] * 3}, head="imprint", cache=False)
    >>> model.threshold > 0.99   # three copies of one photo: only that photo is a cat
    True
    >>> more = imagerec.transfer.add_examples(model, {"hot dog": [shots + "hotdog_train_0.bmp", shots + "hotdog_train_1.bmp"]})
    >>> X = np.stack([model.embed(shots + n)[0] for n in ["cat_train_0.bmp"] * 3 + ["hotdog_train_0.bmp", "hotdog_train_1.bmp"]])
    >>> recalibrated(more, X, ["cat"] * 3 + ["hot dog"] * 2).threshold < 0.9
    True
    """
    training = recognizer.metadata.get("training") or {}
    if training.get("threshold_mode") != "auto" or len(embeddings) == 0:
        return recognizer
    classes = list(recognizer.labels)
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise UsageError(f"examples of classes the recognizer does not know: {', '.join(map(repr, unknown))}")
    y = np.array([classes.index(label) for label in labels], np.int64)
    threshold, calibration, found = _calibrate(recognizer.head, np.asarray(embeddings, np.float32), y, classes,
                                               "auto", seed)
    if threshold is None:
        return recognizer
    metadata = {**recognizer.metadata, "calibration": calibration,
                "metrics": {**(recognizer.metadata.get("metrics") or {}), **found}}
    return LearnedRecognizer(
        recognizer.backend, classes, recognizer.preprocessing, name=recognizer.name, sha256=None,
        limits=recognizer.limits, head=recognizer.head, threshold=threshold, metadata=metadata,
    )


def _one_class_reason(label: str, threshold) -> str:
    """Why one class cannot be learned without a threshold: every photo would be that class.

    >>> _one_class_reason("my snack", None)
    "one class ('my snack') without a threshold would call every photo 'my snack': use threshold 'auto' or a number, or teach a second class"
    """
    if threshold is None:
        return (f"one class ({label!r}) without a threshold would call every photo {label!r}: "
                "use threshold 'auto' or a number, or teach a second class")
    return (f"one class ({label!r}) from a single photo leaves nothing to calibrate 'unknown' on: "
            "give at least 2 photos of it, a second class, or a threshold number")


def _rate(result) -> float | None:
    rate = result.images_per_second
    return None if np.isnan(rate) else round(float(rate), 1)


def _backbone_of(recognizer: Recognizer) -> Backbone:
    if recognizer.head is None or not recognizer.metadata.get("backbone"):
        raise UsageError(f"{recognizer.name!r} was not made by imagerec.learn; examples can only be added to a learned recognizer")
    return backbone_from_recognizer(recognizer)


def add_examples(
    recognizer: Recognizer,
    data: Any,
    *,
    augment: int | None = None,
    cache: bool | Any = True,
    on_error: str = "skip",
    progress: bool | None = None,
    seed: int = 0,
) -> LearnedRecognizer:
    """A new recognizer that also knows ``data``'s classes and examples; the old ones stay.

    The imprint head adds them exactly, without training; the logistic and
    dense heads refit on their stored training embeddings plus the new ones
    (only the new photos are embedded). An "auto" threshold is recalibrated
    when the head keeps its examples (logistic, dense) and kept otherwise.
    ``recognizer`` itself is not changed.

    >>> import imagerec
    >>> from imagerec.transfer import add_examples
    >>> model = imagerec.learn({"cat": ["../shared/photos/cat_720p.jpg"],
    ...                         "parrot": ["../shared/photos/parrot.jpg"]}, head="imprint")
    >>> add_examples(model, {"owl": ["../shared/photos/owl.jpg"]}).labels
    ['cat', 'parrot', 'owl']
    """
    backbone = _backbone_of(recognizer)
    training = dict(recognizer.metadata.get("training") or {})
    augment = int(training.get("augment", 0)) if augment is None else augment
    sources, labels, classes = gather(data)
    embeddings, labels, skipped, _ = _embed(sources, labels, backbone, augment, cache, progress, on_error)
    if not labels:
        raise UsageError("none of the new images could be read; see the skipped files")
    head = copy.deepcopy(recognizer.head)
    variants = embeddings.shape[1]
    head.add(embeddings.reshape(-1, embeddings.shape[2]), [label for label in labels for _ in range(variants)])
    threshold, calibration = recognizer.threshold, recognizer.metadata.get("calibration")
    metrics = dict(recognizer.metadata.get("metrics") or {})
    if training.get("threshold_mode") == "auto" and getattr(head, "keeps_examples", False):
        X, y = head.X_.astype(np.float32), head.y_
        threshold, calibration, found = _calibrate(head, X, y, head.labels_, "auto", seed)
        metrics.update(found)
    examples = dict(training.get("examples") or {})
    for label in labels:
        examples[label] = examples.get(label, 0) + 1
    training.update(
        examples=examples, augment=augment,
        skipped={**(training.get("skipped") or {}), **skipped},
        additions=int(training.get("additions", 0)) + 1,
    )
    metadata = {**recognizer.metadata, "calibration": calibration, "metrics": metrics, "training": training}
    return LearnedRecognizer(
        recognizer.backend, head.labels_, recognizer.preprocessing, name=recognizer.name, sha256=None,
        limits=recognizer.limits, head=head, threshold=threshold, metadata=metadata,
    )
