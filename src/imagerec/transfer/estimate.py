"""How well a taught model does on photos it was not taught with: a leave-one-out estimate.

Each example is held out in turn and predicted by the head taught without
it; the estimate counts how many come back as their own class, per class,
and which confusions matter ("3 of 12 mugs look like cups"). For the imprint
head this costs nothing: a class is the mean of its examples, so holding
one out is recomputing that class's mean without it (the head's sums less
the example). Any other head is refitted once per held-out example.

The estimate is of the ranked answer (the most probable class); the
"unknown" threshold is left aside, as a model taught from a dozen photos has
no untaught photos to measure it on.

>>> import numpy as np
>>> from imagerec.transfer.heads import ImprintHead
>>> X = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0], [0.9, 0.5]])
>>> labels = ["mug", "mug", "cup", "cup", "cup"]
>>> head = ImprintHead().fit(X, np.array([0, 0, 1, 1, 1]), ["mug", "cup"])
>>> result = leave_one_out(X, labels, head)
>>> result.accuracy, result.confusions[0].text
(0.8, '1 of 3 cups looks like a mug')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..core.arrays import l2_normalize
from ..core.errors import UsageError
from .heads import Head, ImprintHead

__all__ = ["Estimate", "ClassScore", "Confusion", "leave_one_out", "enough_examples", "plural", "MIN_CLASSES", "MIN_EXAMPLES", "confusion_text"]

# Below this there is nothing to estimate: 2 classes with 2 examples each.
MIN_CLASSES = 2
MIN_EXAMPLES = 2
# The confusions shown: the largest first, at most this many.
MAX_CONFUSIONS = 5


@dataclass(frozen=True)
class ClassScore:
    """How many of a class's held-out examples came back as that class."""

    label: str
    correct: int
    of: int


@dataclass(frozen=True)
class Confusion:
    """``count`` of the ``of`` examples of ``label`` were taken for ``as_``."""

    label: str
    as_: str
    count: int
    of: int

    @property
    def text(self) -> str:
        return confusion_text(self.label, self.as_, self.count, self.of)

    def to_dict(self) -> dict:
        return {"label": self.label, "as": self.as_, "count": self.count, "of": self.of, "text": self.text}


@dataclass(frozen=True)
class Estimate:
    """The leave-one-out estimate of a taught model (see the module)."""

    examples: int
    accuracy: float
    per_class: list[ClassScore] = field(default_factory=list)
    confusions: list[Confusion] = field(default_factory=list)
    method: str = "leave-one-out"

    def to_dict(self) -> dict:
        """The JSON form the server's teaching card shows."""
        return {
            "method": self.method, "examples": self.examples, "accuracy": round(self.accuracy, 4),
            "per_class": [{"label": s.label, "correct": s.correct, "of": s.of} for s in self.per_class],
            "confusions": [c.to_dict() for c in self.confusions],
        }

    def summary(self) -> str:
        """One line for people: the accuracy and the biggest confusion."""
        line = f"{round(self.accuracy * 100)} % of {self.examples} held-out examples recognised"
        return f"{line}; {self.confusions[0].text}" if self.confusions else line


def enough_examples(labels: Sequence[str]) -> bool:
    """Whether ``labels`` hold :data:`MIN_CLASSES` classes with :data:`MIN_EXAMPLES` examples each.

    >>> enough_examples(["a", "a", "b"]), enough_examples(["a", "a", "b", "b"])
    (False, True)
    """
    _, counts = np.unique(np.asarray(list(labels), dtype=object), return_counts=True)
    return int((counts >= MIN_EXAMPLES).sum()) >= MIN_CLASSES


def leave_one_out(embeddings: np.ndarray, labels: Sequence[str], head: Head) -> Estimate:
    """Hold out each example of ``embeddings`` (its class in ``labels``) and predict it with ``head`` taught without it.

    ``head`` is the fitted head the examples were taught to. An imprint head
    keeps its class sums, so an example is taken out of its class's sum and
    the other examples the head was taught (say, before the model was kept)
    still count; any other head is refitted on ``embeddings`` less the
    held-out one. A class left with no example cannot be answered, so its
    only example counts as confused with whatever comes back.
    """
    X = np.asarray(embeddings, np.float32)
    labels = [str(label) for label in labels]
    if X.ndim != 2 or len(X) != len(labels):
        raise UsageError(f"{len(labels)} labels for embeddings of shape {X.shape}")
    classes = head.labels_
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise UsageError(f"class(es) {', '.join(map(repr, unknown))} are not classes of the head")
    index = {label: i for i, label in enumerate(classes)}
    y = np.array([index[label] for label in labels], np.int64)
    if isinstance(head, ImprintHead):
        predicted = _imprint_held_out(head, X, y)
    else:
        predicted = _refitted_held_out(head, X, y, classes)
    return _tally(classes, y, predicted)


def _imprint_held_out(head: ImprintHead, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    Xn = l2_normalize(X).astype(np.float64)
    sums, counts = head.sums_.astype(np.float64), head.counts_
    predicted = np.empty(len(X), np.int64)
    for i, (x, own) in enumerate(zip(Xn, y)):
        without = sums.copy()
        without[own] -= x
        left = counts.copy()
        left[own] -= 1
        norms = np.linalg.norm(without, axis=1)
        cosine = (without @ x) / np.where(norms > 0, norms, 1.0)
        # A class with no example left has no mean: it cannot be the answer.
        cosine = np.where((left > 0) & (norms > 1e-9), cosine, -np.inf)
        predicted[i] = int(np.argmax(cosine)) if np.isfinite(cosine).any() else -1
    return predicted


def _refitted_held_out(head: Head, X: np.ndarray, y: np.ndarray, classes: list[str]) -> np.ndarray:
    predicted = np.empty(len(X), np.int64)
    for i in range(len(X)):
        keep = np.arange(len(X)) != i
        if len(np.unique(y[keep])) < head.min_classes:
            predicted[i] = -1
            continue
        fitted = head.clone().fit(X[keep], y[keep], classes)
        probabilities = np.asarray(fitted.predict_proba(X[i:i + 1]))[0]
        # A class left without examples cannot be the answer.
        present = np.bincount(y[keep], minlength=len(classes)) > 0
        predicted[i] = int(np.argmax(np.where(present, probabilities, -np.inf)))
    return predicted


def _tally(classes: list[str], y: np.ndarray, predicted: np.ndarray) -> Estimate:
    per_class, confusions = [], []
    for c, label in enumerate(classes):
        mine = y == c
        of = int(mine.sum())
        if not of:
            continue
        per_class.append(ClassScore(label, int((predicted[mine] == c).sum()), of))
        wrong = predicted[mine & (predicted != c) & (predicted >= 0)]
        for other, count in zip(*np.unique(wrong, return_counts=True)):
            confusions.append(Confusion(label, classes[int(other)], int(count), of))
    # The confusions that matter: the largest share of a class first, then the most photos.
    confusions.sort(key=lambda c: (-c.count / c.of, -c.count, c.label, c.as_))
    accuracy = float((predicted == y).mean()) if len(y) else 0.0
    return Estimate(int(len(y)), accuracy, per_class, confusions[:MAX_CONFUSIONS])


def confusion_text(label: str, as_: str, count: int, of: int) -> str:
    """The confusion in plain words.

    >>> confusion_text("mug", "cup", 3, 12)
    '3 of 12 mugs look like cups'
    >>> confusion_text("hot dog", "sandwich", 1, 1)
    '1 of 1 hot dog looks like a sandwich'
    """
    subject = f"{count} of {of} {label if of == 1 else plural(label)}"
    if count == 1:
        return f"{subject} looks like {_article(as_)} {as_}"
    return f"{subject} look like {plural(as_)}"


def plural(label: str) -> str:
    """A plural of a class name by the regular English rules; a name that already ends in "s" is kept.

    Class names are anything people type ("500ML", "my snacks"), so only
    the regular endings are changed. (inflect knows irregular plurals, but it
    needs a typing_extensions newer than litert-torch's pin allows.)

    >>> [plural(w) for w in ("mug", "glass", "box", "puppy", "day", "snacks", "500ML")]
    ['mugs', 'glasses', 'boxes', 'puppies', 'days', 'snacks', '500MLs']
    """
    lower = label.lower()
    if not label or lower.endswith(("ss", "x", "z", "ch", "sh")):
        return label + ("es" if label else "")
    if lower.endswith("s"):
        return label
    if lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        return label[:-1] + "ies"
    return label + "s"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
