"""The imprint head: nearest class mean, so one photo makes a class and adding one trains nothing.

>>> import numpy as np
>>> head = ImprintHead().fit(np.eye(3), ["a", "b", "c"])
>>> head.predict(np.array([[0.1, 0.9, 0.0]])).tolist()
['b']
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...core.arrays import l2_normalize, softmax
from .base import DenseLayer, Head, check_shapes

__all__ = ["ImprintHead"]


class ImprintHead(Head):
    """Nearest class mean on L2-normalised embeddings (weight imprinting).

    A class's weight vector is the normalised sum of its examples' normalised
    embeddings; ``predict_proba`` is a softmax over ``scale`` × cosine
    similarity, and ``confidence`` the cosine similarity to the nearest class.
    Sums and counts are kept, so :meth:`add` is exact and trains nothing.

    >>> head = ImprintHead().fit(np.eye(3), np.array([0, 1, 2]), ["a", "b", "c"])
    >>> head.add(np.array([[0.0, 0.0, 0.0, 1.0][:3]]), ["d"]).labels_
    ['a', 'b', 'c', 'd']
    """

    kind = "imprint"
    min_classes = 1

    def __init__(self, *, scale: float = 10.0) -> None:
        self.scale = scale

    def fit(self, X: np.ndarray, y: np.ndarray, labels: Sequence[str] | None = None) -> "ImprintHead":
        y = self._targets(X, y, labels)
        Xn = l2_normalize(X)
        self.sums_ = np.zeros((len(self.classes_), Xn.shape[1]), np.float64)
        np.add.at(self.sums_, y, Xn)
        self.counts_ = np.bincount(y, minlength=len(self.classes_)).astype(np.int64)
        return self

    def add(self, X: np.ndarray, labels: Sequence[str]) -> "ImprintHead":
        names, y = self._merge_targets(labels)
        grow = len(names) - len(self.classes_)
        if grow:
            self.sums_ = np.vstack([self.sums_, np.zeros((grow, self.sums_.shape[1]))])
            self.counts_ = np.concatenate([self.counts_, np.zeros(grow, np.int64)])
        np.add.at(self.sums_, y, l2_normalize(X))
        self.counts_ += np.bincount(y, minlength=len(names))
        self.classes_ = np.asarray(names)
        return self

    @property
    def prototypes_(self) -> np.ndarray:
        """One unit vector per class (zero for a class with no example)."""
        return l2_normalize(self.sums_.astype(np.float32))

    @property
    def class_counts_(self) -> np.ndarray:
        return self.counts_

    def cosine(self, X: np.ndarray) -> np.ndarray:
        """``N×classes`` cosine similarities to the class means (-1 for a class with no example)."""
        similarity = l2_normalize(X) @ self.prototypes_.T
        return np.where(self.counts_[None, :] > 0, similarity, -1.0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(self.scale * self.cosine(X))

    def dense_layers(self) -> list[DenseLayer]:
        # scale × cosine; a class with no example has a zero mean, so 0 + (-scale) stands for its cosine of -1.
        return [DenseLayer(self.scale * self.prototypes_.T, np.where(self.counts_ > 0, 0.0, -self.scale))]

    def params(self) -> dict:
        return {"scale": self.scale}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"sums": self.sums_, "counts": self.counts_}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray], labels: Sequence[str]) -> "ImprintHead":
        head = cls(**params)
        head.sums_, head.counts_ = arrays["sums"].astype(np.float64), arrays["counts"].astype(np.int64)
        head.classes_ = np.asarray(list(labels))
        check_shapes(head.sums_, (len(labels), None), "sums")
        check_shapes(head.counts_, (len(labels),), "counts")
        return head

    @property
    def num_features(self) -> int:
        return int(self.sums_.shape[1])
