"""What every head is: a scikit-learn-style classifier on embeddings that describes itself as dense layers.

:class:`Head` follows scikit-learn's conventions without importing it
(scikit-learn takes a second to import, and loading a ``.imagerec`` file
must not pay that): constructor arguments are stored as given and are the
head's parameters (``get_params`` / ``set_params``, so
``sklearn.base.clone(head)`` gives an unfitted copy); what ``fit`` learns
ends in ``_``; ``classes_`` holds the class labels in the order of
``predict_proba``'s columns.

Every head also describes itself for export: :meth:`Head.dense_layers`
lists :class:`DenseLayer` objects which, applied in order to the
L2-normalised embedding and followed by a softmax, give ``predict_proba``;
:meth:`Head.confidence_layer`, whose largest output is ``confidence``, is
the same for all heads (the cosine similarity to the nearest class mean).
Exporters build their graphs from these and know nothing of head kinds.

>>> layer = DenseLayer(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([0.0, 1.0]), relu=True)
>>> layer.apply(np.array([[1.0, -2.0]])).tolist()
[[1.0, 0.0]]
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ...core.arrays import l2_normalize
from ...core.errors import ModelFileError, UsageError

__all__ = ["CLASS_WEIGHTS", "DEFAULT_CLASS_WEIGHT", "Head", "DenseLayer", "StoredExamplesHead", "check_class_weight",
           "check_shapes"]

# How a head that is trained (logistic, dense) weighs each class's examples:
# "balanced" gives every class the same total weight (n / (classes × count),
# scikit-learn's class_weight="balanced"), "none" every example the same.
CLASS_WEIGHTS = ("balanced", "none")
# Measured (bench/class_weight.py, docs/transfer.md): with one CIFAR-10 class cut
# to 10 %, balanced weights raise that class's recall and the macro-F1.
DEFAULT_CLASS_WEIGHT = "balanced"


@dataclass(frozen=True)
class DenseLayer:
    """One fully connected layer: ``x @ weights + bias``, then ReLU if ``relu``.

    ``weights`` is ``D_in × D_out`` and ``bias`` ``D_out``, both float32 (the
    layout of a Keras ``Dense`` kernel and of an ONNX ``MatMul``; TFLite's
    ``FULLY_CONNECTED`` takes the transpose).
    """

    weights: np.ndarray
    bias: np.ndarray
    relu: bool = False

    def __post_init__(self) -> None:
        weights = np.ascontiguousarray(self.weights, dtype=np.float32)
        bias = np.ascontiguousarray(self.bias, dtype=np.float32)
        if weights.ndim != 2 or bias.shape != (weights.shape[1],):
            raise UsageError(f"a dense layer needs D_in×D_out weights and D_out biases, got {weights.shape} and {bias.shape}")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "bias", bias)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The layer on an ``N×D_in`` batch (float32 out)."""
        out = np.asarray(x, np.float32) @ self.weights + self.bias
        return np.maximum(out, 0.0) if self.relu else out


class Head:
    """What every head offers. Subclasses set ``kind`` and learn ``classes_``.

    ``fit(X, y)`` takes the class labels in ``y`` (``classes_`` becomes their
    sorted unique values), as scikit-learn does; ``fit(X, y, labels)`` takes
    ``y`` as indices into ``labels``, which fixes the classes and their order
    (imagerec's way: a class may have no example yet).
    """

    kind = "head"
    keeps_examples = False  # True when add() refits on stored training embeddings
    min_classes = 2  # classes with examples that fit needs
    _estimator_type = "classifier"  # what scikit-learn before 1.6 reads
    classes_: np.ndarray

    # -- scikit-learn's estimator protocol -------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        parameters = inspect.signature(cls.__init__).parameters.values()
        skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        return [p.name for p in parameters if p.name != "self" and p.kind not in skip]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, as given (``deep`` is accepted for scikit-learn; heads hold no estimators)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "Head":
        """Change constructor arguments; an unknown name is a ``UsageError`` (a ``ValueError``)."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise UsageError(f"{type(self).__name__} has no parameter {name!r}; it takes {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self) -> Any:
        # Only scikit-learn asks for these, so it is already imported when this runs.
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True), classifier_tags=ClassifierTags())

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        changed = [f"{name}={value!r}" for name, value in self.get_params().items() if defaults.get(name) != value]
        return f"{type(self).__name__}({', '.join(changed)})"

    def clone(self) -> "Head":
        """A new, unfitted head with this one's parameters: what refitting on other data should use.

        The same as ``sklearn.base.clone(self)``, except that a setting the
        head chose while fitting (the logistic head's ``C``) is kept fixed,
        so refits (cross-validation folds, ``add``) do not search again.
        """
        return type(self)(**self.get_params())

    # -- fitting and predicting --------------------------------------------------------

    def fit(self, X: np.ndarray, y: np.ndarray, labels: Sequence[str] | None = None) -> "Head":
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``N×classes`` float32 probabilities for raw embeddings ``X``."""
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class label of each embedding."""
        return self.classes_[np.asarray(self.predict_proba(X)).argmax(axis=1)]

    def score(self, X: np.ndarray, y: Sequence) -> float:
        """Accuracy of :meth:`predict` against the class labels ``y`` (scikit-learn's classifier score)."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    @property
    def labels_(self) -> list[str]:
        """``classes_`` as a list (what a recognizer's labels are)."""
        return self.classes_.tolist()

    def _targets(self, X: np.ndarray, y: Sequence, labels: Sequence[str] | None) -> np.ndarray:
        """Sets ``classes_`` and returns each example's class index, checked."""
        if labels is None:
            classes, y = np.unique(np.asarray(y), return_inverse=True)
        else:
            classes = np.asarray(list(labels))
            if len(set(classes.tolist())) != len(classes):
                raise UsageError(f"class labels must be unique, got {list(labels)}")
        y = np.asarray(y).reshape(-1)
        if len(X) != len(y):
            raise UsageError(f"{len(X)} embeddings but {len(y)} targets")
        if not np.issubdtype(y.dtype, np.integer) or y.min(initial=0) < 0 or y.max(initial=0) >= len(classes):
            raise UsageError(f"targets must be class indices in 0..{len(classes) - 1}")
        present = np.unique(y)
        if len(present) < self.min_classes:
            raise UsageError(f"this head needs examples of at least {self.min_classes} classes, got {len(present)}")
        self.classes_ = classes
        return y.astype(np.int64)

    def _merge_targets(self, labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
        names = list(self.labels_)
        for label in labels:
            if label not in names:
                names.append(label)
        index = {name: i for i, name in enumerate(names)}
        return names, np.array([index[label] for label in labels], dtype=np.int64)

    def add(self, X: np.ndarray, labels: Sequence[str]) -> "Head":
        """Learn more examples (``labels`` are class names, old or new); keeps the old classes."""
        raise NotImplementedError

    # -- the "unknown" threshold's number ----------------------------------------------

    @property
    def prototypes_(self) -> np.ndarray:
        """One unit vector per class: the normalised mean of its normalised examples (zero without examples)."""
        raise NotImplementedError

    @property
    def class_counts_(self) -> np.ndarray:
        """The number of training examples of each class."""
        raise NotImplementedError

    def confidence_layer(self) -> DenseLayer:
        """The layer whose largest output is :meth:`confidence`: cosine to each class mean, -1 for a class without examples."""
        counts = np.asarray(self.class_counts_)
        return DenseLayer(np.asarray(self.prototypes_).T, np.where(counts > 0, 0.0, -1.0))

    def confidence(self, X: np.ndarray) -> np.ndarray:
        """What the "unknown" threshold is compared with: cosine similarity to the nearest class mean."""
        # A class without examples has a zero mean, so its cosine is 0 + (-1).
        return self.confidence_layer().apply(l2_normalize(X)).max(axis=1)

    # -- export and the file format ----------------------------------------------------

    def dense_layers(self) -> list[DenseLayer]:
        """The head as dense layers on the L2-normalised embedding; a softmax of the last gives ``predict_proba``."""
        raise NotImplementedError

    def params(self) -> dict:
        """JSON-ready settings, stored in the manifest."""
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        """Learned state as plain arrays, stored as ``.npy`` files."""
        raise NotImplementedError

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray], labels: Sequence[str]) -> "Head":
        raise NotImplementedError

    @property
    def num_features(self) -> int:
        raise NotImplementedError


class StoredExamplesHead(Head):
    """A head that keeps its (normalised) training embeddings, to refit on ``add`` and to find class means."""

    keeps_examples = True
    X_: np.ndarray
    y_: np.ndarray

    def add(self, X: np.ndarray, labels: Sequence[str]) -> "Head":
        names, y_new = self._merge_targets(labels)
        X_all = np.concatenate([self.X_.astype(np.float32), l2_normalize(X)])
        y_all = np.concatenate([self.y_, y_new])
        refit = self.clone().fit(X_all, y_all, names)
        self.__dict__.update(refit.__dict__)
        return self

    def _store_examples(self, Xn: np.ndarray, y: np.ndarray) -> None:
        # float16 halves the file; the examples serve refitting and class means only.
        self.X_ = Xn.astype(np.float16)
        self.y_ = y.astype(np.int64)
        self._prototypes = None

    @property
    def class_counts_(self) -> np.ndarray:
        return np.bincount(self.y_, minlength=len(self.classes_))

    @property
    def prototypes_(self) -> np.ndarray:
        # Computed from the stored (float16) examples, so a loaded head gives identical results.
        if getattr(self, "_prototypes", None) is None:
            sums = np.zeros((len(self.classes_), self.X_.shape[1]), np.float64)
            np.add.at(sums, self.y_, self.X_.astype(np.float64))
            self._prototypes = l2_normalize(sums.astype(np.float32))
        return self._prototypes


def check_class_weight(value: str | None) -> str:
    """``value`` as one of :data:`CLASS_WEIGHTS` (None means ``"none"``), or a one-line ``UsageError``.

    >>> check_class_weight("Balanced"), check_class_weight(None)
    ('balanced', 'none')
    """
    text = "none" if value is None else str(value).lower()
    if text not in CLASS_WEIGHTS:
        raise UsageError(f"class weight must be {' or '.join(map(repr, CLASS_WEIGHTS))}, got {value!r}")
    return text


def check_shapes(array: np.ndarray, expected: tuple, name: str) -> None:
    """Refuse a stored head array whose shape is not ``expected`` (None: any size), in one line."""
    ok = array.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, array.shape))
    if not ok:
        shown = "×".join("D" if e is None else str(e) for e in expected)
        raise ModelFileError(f"head array {name!r} has shape {array.shape}, expected {shown}")
