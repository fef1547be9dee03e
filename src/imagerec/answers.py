"""What a recognizer says about one image: :class:`Prediction` (one class), :class:`Answer` (the decision), :class:`FileResult`.

An :class:`Answer` is the ranked list of classes, best first, each with its
own probability — one distribution, so the scores shown for an image never
add up to more than 100 % — and the decision taken on it:

- ``label``: the answer, a class name or ``"unknown"`` (:data:`UNKNOWN`);
- ``unknown``: True when the recognizer has a threshold and the image's
  ``match`` is below it; the answer then names no class, and ``closest``
  says which taught class came closest and how probable it is;
- ``sure``: False for an unknown answer and for an answer whose probability
  is under :data:`SURE_LEVEL` (50 %: the class is less likely than all the
  others together), so a 3.9 % guess is marked as one;
- ``match`` and ``threshold`` (learned recognizers): the number the
  threshold is compared with (cosine similarity to the nearest class's
  mean, not a probability) and the threshold itself.

``Prediction.index`` is always a valid index into the recognizer's
``labels``: "unknown" is a property of the answer, never a row.

>>> answer = Answer([Prediction("cat", 0.388, 0), Prediction("hotdog", 0.38, 2)], match=0.32, threshold=0.49)
>>> answer.label, answer.unknown, answer.sure, answer.closest.label, answer.index
('unknown', True, False, 'cat', None)
>>> sorted(answer.to_dict())
['closest', 'index', 'label', 'match', 'predictions', 'score', 'sure', 'threshold', 'unknown']
>>> Answer([Prediction("macaw", 0.91, 88)]).summary()
{'label': 'macaw', 'index': 88, 'score': 0.91, 'sure': True, 'unknown': False}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, SupportsIndex

from .core.errors import ImagerecError

__all__ = ["Prediction", "Answer", "FileResult", "UNKNOWN", "SURE_LEVEL"]

# The label of an answer that names no taught class.
UNKNOWN = "unknown"

# Below this probability an answer is "not sure": its class is less likely
# than all the other classes together. One level for every model kind, so
# the mark means the same on every surface. Measured (bench/sure_level.py,
# CIFAR-10 held-out photos): answers under it are right 47.5 % of the time
# for a learned recognizer and 10.8 % for mobilenet_v2, answers at or over
# it 87.0 % and 47.4 % — under the level, an answer is more often wrong.
SURE_LEVEL = 0.5


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


@dataclass(frozen=True)
class Prediction:
    """One class for one image: its label, probability and index into the recognizer's ``labels``.

    >>> Prediction("macaw", 0.91, 88).to_dict()
    {'label': 'macaw', 'score': 0.91, 'index': 88}
    """

    label: str
    score: float
    index: int

    def to_dict(self) -> dict:
        return {"label": self.label, "score": _rounded(self.score), "index": int(self.index)}


class Answer(list):
    """The ranked classes for one image (a ``list`` of :class:`Prediction`, best first) and the decision on them.

    ``best`` is the most probable class even when ``min_score`` left it out
    of the list; ``match`` is what ``threshold`` was compared with. A slice
    of an answer is an answer with the same decision.

    >>> answer = Answer([Prediction("academic gown", 0.039, 400)])
    >>> answer.label, answer.sure
    ('academic gown', False)
    >>> answer[:0].label
    'academic gown'
    """

    def __init__(self, predictions: Iterable[Prediction] = (), *, best: Prediction | None = None,
                 match: float | None = None, threshold: float | None = None) -> None:
        super().__init__(predictions)
        self.best = best if best is not None else (self[0] if len(self) else None)
        self.match = None if match is None else float(match)
        self.threshold = None if threshold is None else float(threshold)

    def __getitem__(self, key: SupportsIndex | slice) -> Any:  # type: ignore[override]
        got = super().__getitem__(key)
        if isinstance(key, slice):
            return Answer(got, best=self.best, match=self.match, threshold=self.threshold)
        return got

    @property
    def unknown(self) -> bool:
        """True when the image's match is below the recognizer's threshold: no taught class is named."""
        return self.threshold is not None and self.match is not None and self.match < self.threshold

    @property
    def closest(self) -> Prediction | None:
        """The most probable class (the answer itself unless it is "unknown")."""
        return self.best

    @property
    def label(self) -> str | None:
        """The answer: a class name, or ``"unknown"``; None when there are no classes."""
        if self.unknown:
            return UNKNOWN
        return None if self.best is None else self.best.label

    @property
    def index(self) -> int | None:
        """The answer's class index; None for "unknown" (never a valid index into ``labels``)."""
        return None if self.unknown or self.best is None else self.best.index

    @property
    def score(self) -> float | None:
        """The answer's probability; None for "unknown" (it is not a class of the distribution)."""
        return None if self.unknown or self.best is None else self.best.score

    @property
    def sure(self) -> bool:
        """False when the answer is "unknown" or its probability is under :data:`SURE_LEVEL`."""
        return not self.unknown and self.best is not None and self.best.score >= SURE_LEVEL

    def summary(self) -> dict:
        """The decision as JSON-ready fields (no ranked list)."""
        result: dict[str, Any] = {"label": self.label, "index": self.index, "score": _rounded(self.score),
                                  "sure": self.sure, "unknown": self.unknown}
        if self.unknown and self.best is not None:
            result["closest"] = self.best.to_dict()
        if self.threshold is not None:
            result["match"] = _rounded(self.match)
            result["threshold"] = _rounded(self.threshold)
        return result

    def to_dict(self) -> dict:
        """:meth:`summary` and the ranked ``predictions``: what ``--json`` and ``POST /v1/predict`` give per image."""
        return {**self.summary(), "predictions": [p.to_dict() for p in self]}

    def __repr__(self) -> str:
        return f"Answer({list.__repr__(self)}, label={self.label!r}, sure={self.sure})"


@dataclass
class FileResult:
    """What became of one input: its answer, or the error that stopped it.

    Every surface that answers per image uses this record: :meth:`Recognizer.predict_files`,
    the HTTP service and the cloud comparison (:mod:`imagerec.cloud`). ``path``
    is the file's path or the name the input goes by (``"<bytes>"``, an
    upload's file name); ``error`` is the exception, so a caller can tell its
    kind (``str(error)`` is the one-line message); ``seconds``, where it was
    measured (the cloud comparison), is the time this input took. When
    ``predictions`` is an :class:`Answer`, ``to_dict`` carries its decision too.

    >>> FileResult("parrot.jpg", [Prediction("macaw", 0.91, 88)]).to_dict()
    {'path': 'parrot.jpg', 'predictions': [{'label': 'macaw', 'score': 0.91, 'index': 88}]}
    >>> FileResult("parrot.jpg", Answer([Prediction("macaw", 0.91, 88)])).to_dict()["sure"]
    True
    >>> from imagerec.core.errors import ImageDecodeError
    >>> FileResult("notes.txt", error=ImageDecodeError("not a recognised image", path="notes.txt"), seconds=0.01).to_dict()
    {'path': 'notes.txt', 'error': 'notes.txt: not a recognised image', 'seconds': 0.01}
    """

    path: str
    predictions: list[Prediction] = field(default_factory=list)
    error: ImagerecError | None = None
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        result: dict[str, Any] = {"path": self.path}
        if self.error is not None:
            result["error"] = str(self.error)
        elif isinstance(self.predictions, Answer):
            result.update(self.predictions.to_dict())
        else:
            result["predictions"] = [p.to_dict() for p in self.predictions]
        if self.seconds is not None:
            result["seconds"] = round(self.seconds, 4)
        return result
