"""Small classifiers on frozen embeddings, and the "unknown" threshold.

Three heads, all following scikit-learn's habits (``fit`` / ``predict_proba``,
learned state ending in ``_``), all working on L2-normalised embeddings and
all saved as plain arrays (no pickled code):

- :class:`LogisticHead` — multinomial logistic regression; the regularisation
  strength ``C`` is chosen by stratified cross-validation.
- :class:`DenseHead` — the course's Keras head, ``Dense(256, relu)`` +
  ``Dropout(0.5)`` + ``Dense(classes, softmax)``; trained with Keras, run
  in NumPy (inference never goes through Keras eagerly).
- :class:`ImprintHead` — weight imprinting / nearest class mean: a class is
  the normalised mean of its examples' normalised embeddings, so one photo
  is enough and adding a class needs no training at all.

Every head has ``confidence(embeddings)``: the number the "unknown" threshold
is compared with — for every head, the cosine similarity to the nearest class
mean. (The best probability of a logistic or dense head is a poor test for
"none of these": trained to separate the taught classes, they give photos of
other things confident probabilities too. Measured on generated shapes with
three taught classes, a probability threshold rejected 30 % of an untaught
shape and 8 % of unrelated photos; the class-mean similarity rejected 100 %
of both.) :func:`calibrate` picks the threshold from held-out scores.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.concatenate([rng.normal(1, 0.1, (5, 8)), rng.normal(-1, 0.1, (5, 8))])
>>> head = ImprintHead().fit(X, np.repeat([0, 1], 5), ["cat", "dog"])
>>> int(head.predict_proba(X[:1]).argmax()), head.labels_
(0, ['cat', 'dog'])
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..core.arrays import l2_normalize, softmax
from ..core.errors import ModelFileError, UsageError
from ..core.pipeline import default_workers
from ..core.keras_backend import import_keras

__all__ = [
    "Head",
    "LogisticHead",
    "one_standard_error_choice",
    "shrunk_scale",
    "DenseHead",
    "ImprintHead",
    "HEADS",
    "make_head",
    "head_from_state",
    "l2_normalize",
    "Calibration",
    "calibrate",
    "held_out_scores",
]


def _check_targets(X: np.ndarray, y: np.ndarray, labels: Sequence[str], minimum: int) -> None:
    if len(X) != len(y):
        raise UsageError(f"{len(X)} embeddings but {len(y)} targets")
    present = np.unique(y)
    if len(present) < minimum:
        raise UsageError(f"this head needs examples of at least {minimum} classes, got {len(present)}")
    if len(labels) != len(set(labels)):
        raise UsageError(f"class labels must be unique, got {list(labels)}")
    if y.min() < 0 or y.max() >= len(labels):
        raise UsageError(f"targets must be class indices in 0..{len(labels) - 1}")


class Head:
    """What every head offers. Subclasses set ``kind`` and learn ``labels_``."""

    kind = "head"
    labels_: list[str]
    keeps_examples = False  # True when add() refits on stored training embeddings

    def fit(self, X: np.ndarray, y: np.ndarray, labels: Sequence[str]) -> "Head":
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``N×classes`` float32 probabilities for raw embeddings ``X``."""
        raise NotImplementedError

    def confidence(self, X: np.ndarray) -> np.ndarray:
        """What the "unknown" threshold is compared with: cosine similarity to the nearest class mean."""
        similarity = l2_normalize(X) @ self.prototypes_.T
        return np.where(self.class_counts_[None, :] > 0, similarity, -1.0).max(axis=1)

    @property
    def prototypes_(self) -> np.ndarray:
        """One unit vector per class: the normalised mean of its normalised examples."""
        raise NotImplementedError

    @property
    def class_counts_(self) -> np.ndarray:
        raise NotImplementedError

    def spawn(self) -> "Head":
        """A new, unfitted head with this one's settings (chosen ``C`` included)."""
        raise NotImplementedError

    def add(self, X: np.ndarray, labels: Sequence[str]) -> "Head":
        """Learn more examples (``labels`` are class names, old or new); keeps the old classes."""
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

    def _merge_targets(self, labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
        names = list(self.labels_)
        for label in labels:
            if label not in names:
                names.append(label)
        index = {name: i for i, name in enumerate(names)}
        return names, np.array([index[label] for label in labels], dtype=np.int64)


class _StoredExamplesHead(Head):
    """A head that keeps its (normalised) training embeddings to refit on ``add``."""

    keeps_examples = True
    X_: np.ndarray
    y_: np.ndarray

    def add(self, X: np.ndarray, labels: Sequence[str]) -> "Head":
        names, y_new = self._merge_targets(labels)
        X_all = np.concatenate([self.X_.astype(np.float32), l2_normalize(X)])
        y_all = np.concatenate([self.y_, y_new])
        refit = self.spawn()
        refit.fit(X_all, y_all, names)
        self.__dict__.update(refit.__dict__)
        return self

    def _store_examples(self, Xn: np.ndarray, y: np.ndarray) -> None:
        # float16 halves the file; the examples serve refitting and class means only.
        self.X_ = Xn.astype(np.float16)
        self.y_ = y.astype(np.int64)
        self._prototypes = None

    @property
    def class_counts_(self) -> np.ndarray:
        return np.bincount(self.y_, minlength=len(self.labels_))

    @property
    def prototypes_(self) -> np.ndarray:
        # Computed from the stored (float16) examples, so a loaded head gives identical results.
        if getattr(self, "_prototypes", None) is None:
            sums = np.zeros((len(self.labels_), self.X_.shape[1]), np.float64)
            np.add.at(sums, self.y_, self.X_.astype(np.float64))
            self._prototypes = l2_normalize(sums.astype(np.float32))
        return self._prototypes


def one_standard_error_choice(Cs: Sequence[float], scores: Sequence[float], n: int) -> float:
    """The smallest C (strongest regularisation) scoring within one standard error of the best.

    Cross-validated accuracies on a few thousand examples differ by less
    than their noise over a wide range of C, and the largest of them is
    often not what the full dataset wants: on mobilenet_multi's CIFAR-10
    embeddings the best CV score on 2,000 examples came at C = 0.1, which
    scored 81.7 % on all 45,000, against 85.1 % at C = 0.003. The standard
    error is the binomial one of the best accuracy over the ``n`` examples scored.

    >>> one_standard_error_choice([1e-3, 3e-3, 0.1], [0.7655, 0.7775, 0.7781], 2000)
    0.003
    """
    best = max(scores)
    noise = float(np.sqrt(best * (1 - best) / max(n, 1)))
    return float(min(C for C, score in zip(Cs, scores) if score >= best - noise))


def shrunk_scale(Xn: np.ndarray, prior: float) -> np.ndarray:
    """Per-feature standard deviations, shrunk toward their common average by ``prior`` examples' worth.

    Dividing by each feature's own deviation helps a linear head when the
    deviations are well estimated (all 45,000 CIFAR-10 images: 85.1 % against
    84.1 % with one common scale) and hurts when a few dozen examples set
    them (10 per class on mobilenet_multi: 57.5 % against 59.4 %; shrunk, 58.9 %). The variance used is
    ``(n·var_j + prior·mean(var)) / (n + prior)``: with ``n`` examples, mostly
    the feature's own when ``n ≫ prior``, mostly the common one when ``n ≪ prior``.

    >>> X = np.array([[0.0, 0.0], [2.0, 0.2]])
    >>> [round(float(v), 3) for v in shrunk_scale(X, 0)], [round(float(v), 3) for v in shrunk_scale(X, 1e9)]
    ([1.0, 0.1], [0.711, 0.711])
    """
    variance = Xn.astype(np.float64).var(axis=0)
    n = len(Xn)
    shrunk = (n * variance + prior * variance.mean()) / (n + prior)
    return (np.sqrt(shrunk) + 1e-6).astype(np.float32)


class LogisticHead(_StoredExamplesHead):
    """Multinomial logistic regression on centred, scaled, L2-normalised embeddings.

    Each feature is divided by its deviation shrunk toward the common one
    (:func:`shrunk_scale`, ``scale_prior`` examples' worth). ``C=None``
    chooses the inverse regularisation strength from ``Cs`` by stratified
    ``cv``-fold cross-validation (on at most ``cv_samples`` examples, so
    large datasets stay fast) and the one-standard-error rule
    (:func:`one_standard_error_choice`); a number fixes it. (On CIFAR-10
    the best C for all 45,000 images was 0.001 on ``mobilenet_v2`` and 0.003
    on ``mobilenet_multi``; C ≥ 1 only costs more iterations.) ``tol`` is
    the solver's: 1e-3 fits all 45,000 × 3,392 in 29 s instead of 90 s, at
    84.8 % instead of 85.1 %.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 6)) + np.repeat(np.eye(2, 6) * 3, 20, axis=0)
    >>> head = LogisticHead().fit(X, np.repeat([0, 1], 20), ["a", "b"])
    >>> float((head.predict_proba(X).argmax(1) == np.repeat([0, 1], 20)).mean()) > 0.9
    True
    """

    kind = "logistic"

    def __init__(
        self,
        C: float | None = None,
        *,
        Cs: Sequence[float] = (1e-4, 1e-3, 3e-3, 1e-2, 0.1, 1.0),
        cv: int = 3,
        cv_samples: int = 2000,
        max_iter: int = 500,
        tol: float = 1e-4,
        scale_prior: float = 1000.0,
        seed: int = 0,
    ) -> None:
        self.C = C
        self.Cs = tuple(Cs)
        self.cv = cv
        self.cv_samples = cv_samples
        self.max_iter = max_iter
        self.tol = tol
        self.scale_prior = scale_prior
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray, labels: Sequence[str]) -> "LogisticHead":
        # Import first: threadpoolctl only limits BLAS libraries already loaded,
        # and scikit-learn brings SciPy's own OpenBLAS (measured: a first fit
        # took 69 s instead of 4.6 s when this import came after the limit).
        import sklearn.linear_model  # noqa: F401
        import sklearn.model_selection  # noqa: F401
        from threadpoolctl import threadpool_limits

        # One BLAS thread: 12× faster than two on this busy two-core machine
        # (measured: 3,000 × 1,280 features, 7.2 s vs 0.6 s), as for the dense head.
        with threadpool_limits(1):
            return self._fit(X, y, labels)

    def _fit(self, X: np.ndarray, y: np.ndarray, labels: Sequence[str]) -> "LogisticHead":
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y, dtype=np.int64)
        _check_targets(X, y, labels, minimum=2)
        Xn = l2_normalize(X)
        mean = Xn.mean(axis=0)
        scale = shrunk_scale(Xn, self.scale_prior)
        Z = (Xn - mean) / scale
        self.C_ = float(self.C) if self.C is not None else self._choose_C(Z, y)
        model = LogisticRegression(C=self.C_, max_iter=self.max_iter, tol=self.tol)
        model.fit(Z, y)
        W, b = model.coef_.astype(np.float64), model.intercept_.astype(np.float64)
        if W.shape[0] == 1:  # binary: sigmoid(w·x+b) is softmax([0, w·x+b])
            W, b = np.vstack([np.zeros_like(W), W]), np.array([0.0, b[0]])
        # Fold the standardisation into the weights: one matmul at prediction time.
        full_W = np.zeros((len(labels), W.shape[1]))
        full_b = np.full(len(labels), -1e9)  # a class with no example is never predicted
        full_W[model.classes_], full_b[model.classes_] = W / scale, b - (W / scale) @ mean
        self.weights_ = full_W.astype(np.float32)
        self.bias_ = full_b.astype(np.float32)
        self.labels_ = list(labels)
        self._store_examples(Xn, y)
        return self

    def _choose_C(self, Z: np.ndarray, y: np.ndarray) -> float:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_score

        folds = min(self.cv, int(np.bincount(y)[np.unique(y)].min()))
        if folds < 2 or len(self.Cs) == 1:
            return float(self.Cs[len(self.Cs) // 2]) if len(self.Cs) > 1 else float(self.Cs[0])
        if len(Z) > self.cv_samples:
            rng = np.random.default_rng(self.seed)
            keep = np.sort(rng.choice(len(Z), self.cv_samples, replace=False))
            Z, y = Z[keep], y[keep]
            folds = min(folds, int(np.bincount(y)[np.unique(y)].min()))
            if folds < 2:
                return float(self.Cs[len(self.Cs) // 2])
        splitter = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
        scores = [
            cross_val_score(LogisticRegression(C=C, max_iter=self.max_iter, tol=self.tol), Z, y, cv=splitter).mean()
            for C in self.Cs
        ]
        self.cv_scores_ = {str(C): float(score) for C, score in zip(self.Cs, scores)}
        return one_standard_error_choice(self.Cs, scores, len(Z))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(l2_normalize(X) @ self.weights_.T + self.bias_)

    def spawn(self) -> "LogisticHead":
        return LogisticHead(
            getattr(self, "C_", self.C), Cs=self.Cs, cv=self.cv, cv_samples=self.cv_samples,
            max_iter=self.max_iter, tol=self.tol, scale_prior=self.scale_prior, seed=self.seed,
        )

    def params(self) -> dict:
        return {"C": self.C_, "Cs": list(self.Cs), "cv": self.cv, "max_iter": self.max_iter, "tol": self.tol,
                "scale_prior": self.scale_prior, "seed": self.seed}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_, "bias": self.bias_, "examples": self.X_, "targets": self.y_}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray], labels: Sequence[str]) -> "LogisticHead":
        head = cls(params["C"], Cs=params.get("Cs", (params["C"],)), cv=params.get("cv", 5),
                   max_iter=params.get("max_iter", 500), tol=params.get("tol", 1e-4),
                   scale_prior=params.get("scale_prior", 0.0),
                   seed=params.get("seed", 0))
        head.C_ = float(params["C"])
        head.weights_, head.bias_ = arrays["weights"], arrays["bias"]
        head.X_, head.y_ = arrays["examples"], arrays["targets"]
        head.labels_ = list(labels)
        _check_shapes(head.weights_, (len(labels), None), "weights")
        _check_shapes(head.bias_, (len(labels),), "bias")
        return head

    @property
    def num_features(self) -> int:
        return int(self.weights_.shape[1])


class DenseHead(_StoredExamplesHead):
    """The course's head: ``Dropout`` → ``Dense(units, relu)`` → ``Dropout`` → ``Dense(classes, softmax)``.

    Trained with Keras on L2-normalised, centred embeddings, with the recipe
    that made it the most accurate head on CIFAR-10: AdamW, a warm-up then
    cosine-decayed learning rate, label smoothing, dropout on the input too,
    and batches of up to 256 (``batch_size=None`` picks ``n / 16`` for small
    sets, so a few dozen photos still get several steps an epoch).
    Predictions are computed in NumPy from the saved weights.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 8)) + np.repeat(np.eye(3, 8) * 3, 20, axis=0)
    >>> head = DenseHead(units=16, epochs=20).fit(X, np.repeat([0, 1, 2], 20), ["a", "b", "c"])
    >>> float((head.predict_proba(X).argmax(1) == np.repeat([0, 1, 2], 20)).mean()) > 0.9
    True
    """

    kind = "dense"

    def __init__(
        self, *, units: int = 1024, dropout: float = 0.5, input_dropout: float = 0.2, epochs: int = 30,
        batch_size: int | None = None, learning_rate: float = 2e-3, weight_decay: float = 1e-4,
        label_smoothing: float = 0.1, seed: int = 0,
    ) -> None:
        self.units = units
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray, labels: Sequence[str]) -> "DenseHead":
        import imagerec  # noqa: F401  (selects Keras's torch backend before Keras loads)
        keras = import_keras()
        y = np.asarray(y, dtype=np.int64)
        _check_targets(X, y, labels, minimum=2)
        Xn = l2_normalize(X)
        mean = Xn.mean(axis=0)
        # One scale for all features: per-feature scaling blows up the rarely active ones.
        scale = np.full(Xn.shape[1], Xn.std() + 1e-6, np.float32)
        # Small heads train fastest on one thread (see _torch_threads); a
        # 45,000 × 3,392 set is big enough for both cores to pay.
        threads = 1 if Xn.size < 20_000_000 else default_workers()
        with _torch_threads(threads), warnings.catch_warnings():
            # Keras 3.x on NumPy 2 warns about __array__(copy=...) on every step.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="keras")
            self._train(keras, Xn, y, mean, scale, len(labels))
        self.labels_ = list(labels)
        self._store_examples(Xn, y)
        return self

    def _train(self, keras, Xn, y, mean, scale, classes: int) -> None:
        keras.utils.set_random_seed(self.seed)
        model = keras.Sequential(
            [
                keras.Input((Xn.shape[1],)),
                keras.layers.Dropout(self.input_dropout),
                keras.layers.Dense(self.units, activation="relu"),
                keras.layers.Dropout(self.dropout),
                keras.layers.Dense(classes, activation="softmax"),
            ]
        )
        batch = self.batch_size or int(min(256, max(8, len(Xn) // 16)))
        steps = self.epochs * -(-len(Xn) // batch)
        warmup = max(1, int(0.3 * steps))
        schedule = keras.optimizers.schedules.CosineDecay(
            self.learning_rate / 10, decay_steps=max(1, steps - warmup), warmup_target=self.learning_rate,
            warmup_steps=warmup,
        )
        model.compile(
            optimizer=keras.optimizers.AdamW(schedule, weight_decay=self.weight_decay),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=self.label_smoothing),
        )
        targets = np.eye(classes, dtype=np.float32)[y]
        model.fit((Xn - mean) / scale, targets, epochs=self.epochs, batch_size=batch, verbose=0, shuffle=True)
        (W1, b1), (W2, b2) = [layer.get_weights() for layer in model.layers if layer.get_weights()]
        self.mean_, self.scale_ = mean.astype(np.float32), scale.astype(np.float32)
        self.W1_, self.b1_, self.W2_, self.b2_ = (np.asarray(a, np.float32) for a in (W1, b1, W2, b2))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        Z = (l2_normalize(X) - self.mean_) / self.scale_
        hidden = np.maximum(Z @ self.W1_ + self.b1_, 0.0)  # dropout is off at inference
        return softmax(hidden @ self.W2_ + self.b2_)

    def spawn(self) -> "DenseHead":
        return DenseHead(**self.params())

    def params(self) -> dict:
        return {
            "units": self.units, "dropout": self.dropout, "input_dropout": self.input_dropout,
            "epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay, "label_smoothing": self.label_smoothing, "seed": self.seed,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean_, "scale": self.scale_, "W1": self.W1_, "b1": self.b1_, "W2": self.W2_,
            "b2": self.b2_, "examples": self.X_, "targets": self.y_,
        }

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray], labels: Sequence[str]) -> "DenseHead":
        head = cls(**params)
        head.mean_, head.scale_ = arrays["mean"], arrays["scale"]
        head.W1_, head.b1_, head.W2_, head.b2_ = arrays["W1"], arrays["b1"], arrays["W2"], arrays["b2"]
        head.X_, head.y_ = arrays["examples"], arrays["targets"]
        head.labels_ = list(labels)
        _check_shapes(head.W2_, (None, len(labels)), "W2")
        return head

    @property
    def num_features(self) -> int:
        return int(self.W1_.shape[0])


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

    def __init__(self, *, scale: float = 10.0) -> None:
        self.scale = scale

    def fit(self, X: np.ndarray, y: np.ndarray, labels: Sequence[str]) -> "ImprintHead":
        y = np.asarray(y, dtype=np.int64)
        _check_targets(X, y, labels, minimum=1)
        Xn = l2_normalize(X)
        self.sums_ = np.zeros((len(labels), Xn.shape[1]), np.float64)
        np.add.at(self.sums_, y, Xn)
        self.counts_ = np.bincount(y, minlength=len(labels)).astype(np.int64)
        self.labels_ = list(labels)
        return self

    def add(self, X: np.ndarray, labels: Sequence[str]) -> "ImprintHead":
        names, y = self._merge_targets(labels)
        grow = len(names) - len(self.labels_)
        if grow:
            self.sums_ = np.vstack([self.sums_, np.zeros((grow, self.sums_.shape[1]))])
            self.counts_ = np.concatenate([self.counts_, np.zeros(grow, np.int64)])
        np.add.at(self.sums_, y, l2_normalize(X))
        self.counts_ += np.bincount(y, minlength=len(names))
        self.labels_ = names
        return self

    @property
    def prototypes_(self) -> np.ndarray:
        """One unit vector per class (zero for a class with no example)."""
        return l2_normalize(self.sums_.astype(np.float32))

    @property
    def class_counts_(self) -> np.ndarray:
        return self.counts_

    def cosine(self, X: np.ndarray) -> np.ndarray:
        """``N×classes`` cosine similarities to the class means."""
        similarity = l2_normalize(X) @ self.prototypes_.T
        return np.where(self.counts_[None, :] > 0, similarity, -1.0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(self.scale * self.cosine(X))

    def spawn(self) -> "ImprintHead":
        return ImprintHead(scale=self.scale)

    def params(self) -> dict:
        return {"scale": self.scale}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"sums": self.sums_, "counts": self.counts_}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray], labels: Sequence[str]) -> "ImprintHead":
        head = cls(**params)
        head.sums_, head.counts_ = arrays["sums"].astype(np.float64), arrays["counts"].astype(np.int64)
        head.labels_ = list(labels)
        _check_shapes(head.sums_, (len(labels), None), "sums")
        _check_shapes(head.counts_, (len(labels),), "counts")
        return head

    @property
    def num_features(self) -> int:
        return int(self.sums_.shape[1])


class _torch_threads:
    """Run PyTorch (Keras's backend here) on ``n`` threads for a while.

    A small head trains 20× faster on one thread than on two on a busy
    two-core machine (measured: 100 Adam steps of the dense head, 0.6 s vs
    15.7 s), because the threads of a tiny matmul wait for each other.
    """

    def __init__(self, n: int) -> None:
        self.n, self.saved = n, None

    def __enter__(self) -> None:
        import torch

        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc_info) -> None:
        import torch

        torch.set_num_threads(self.saved)


HEADS: dict[str, type[Head]] = {"logistic": LogisticHead, "dense": DenseHead, "imprint": ImprintHead}


def make_head(kind: str | Head, **options) -> Head:
    """A new head by name (``"logistic"``, ``"dense"``, ``"imprint"``), or ``kind`` itself.

    >>> make_head("imprint").kind
    'imprint'
    """
    if isinstance(kind, Head):
        return kind
    if kind not in HEADS:
        raise UsageError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")
    return HEADS[kind](**options)


def head_from_state(kind: str, params: dict, arrays: dict[str, np.ndarray], labels: Sequence[str]) -> Head:
    """Rebuild a fitted head from what :meth:`Head.params` and :meth:`Head.arrays` gave."""
    if kind not in HEADS:
        raise ModelFileError(f"unknown head type {kind!r} (known: {', '.join(HEADS)}); a newer imagerec may read it")
    try:
        return HEADS[kind].from_state(params, arrays, labels)
    except KeyError as exc:
        raise ModelFileError(f"the {kind} head is missing its {exc.args[0]!r} array or setting") from exc
    except TypeError as exc:
        raise ModelFileError(f"the {kind} head's settings are not valid ({exc})") from exc


def _check_shapes(array: np.ndarray, expected: tuple, name: str) -> None:
    ok = array.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, array.shape))
    if not ok:
        shown = "×".join("D" if e is None else str(e) for e in expected)
        raise ModelFileError(f"head array {name!r} has shape {array.shape}, expected {shown}")


# -- the "unknown" threshold ---------------------------------------------------


@dataclass
class Calibration:
    """A threshold and the evidence it was chosen from (stored in the manifest)."""

    threshold: float
    method: str
    known_accepted: float | None = None  # share of held-out known-class examples kept
    untaught_rejected: float | None = None  # share of simulated untaught examples rejected
    held_out_accuracy: float | None = None
    counts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        def r(value):
            return None if value is None else round(float(value), 4)

        return {
            "threshold": r(self.threshold), "method": self.method, "known_accepted": r(self.known_accepted),
            "untaught_rejected": r(self.untaught_rejected), "held_out_accuracy": r(self.held_out_accuracy),
            **self.counts,
        }


def held_out_scores(
    spawn: Callable[[], Head],
    X: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    *,
    folds: int = 5,
    max_examples: int = 2000,
    max_left_out_classes: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of examples the head did not see: ``(known, correct, untaught)``.

    ``known``: the confidence of each example when its fold was held out
    (classes with a single example cannot be held out and are skipped);
    ``correct``: whether that held-out example was classified right;
    ``untaught``: the confidence on the examples of a class the head was
    fitted *without* — leaving each class out in turn simulates photos of
    a class nobody taught.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y, np.int64)
    if len(X) > max_examples:  # calibration needs a fair sample, not every example
        keep = np.sort(rng.choice(len(X), max_examples, replace=False))
        X, y = X[keep], y[keep]
    fold_of = np.full(len(y), -1)
    counts = np.bincount(y, minlength=len(labels))
    k = int(min(folds, counts.max())) if len(counts) else 0
    for c in np.flatnonzero(counts >= 2):
        members = rng.permutation(np.flatnonzero(y == c))
        fold_of[members] = np.arange(len(members)) % k
    known, correct = [], []
    for f in range(k):
        test = fold_of == f
        train = ~test
        if not test.any() or len(np.unique(y[train])) < min(2, len(labels)):
            continue
        head = spawn().fit(X[train], y[train], labels)
        known.append(head.confidence(X[test]))
        correct.append(head.predict_proba(X[test]).argmax(axis=1) == y[test])
    untaught = []
    present = np.flatnonzero(counts > 0)
    minimum = 1 if isinstance(spawn(), ImprintHead) else 2
    if len(present) - 1 >= minimum:
        left_out = rng.permutation(present)[:max_left_out_classes]
        for c in left_out:
            rest = y != c
            remap = {old: new for new, old in enumerate(np.unique(y[rest]))}
            names = [labels[old] for old in remap]
            head = spawn().fit(X[rest], np.array([remap[v] for v in y[rest]]), names)
            untaught.append(head.confidence(X[y == c][:200]))
    cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
    return cat(known, np.float32), cat(correct, bool), cat(untaught, np.float32)


def calibrate(known: np.ndarray, untaught: np.ndarray, *, keep_known: float = 0.95) -> Calibration | None:
    """The threshold separating known-class scores from untaught-class scores.

    With untaught scores it maximises balanced accuracy (known kept + untaught
    rejected) and sits in the middle of the best range, for margin on both
    sides; without them it keeps ``keep_known`` of the known examples. None
    when there is nothing to calibrate on.

    >>> calibrate(np.array([0.8, 0.9, 0.7]), np.array([0.2, 0.3])).threshold
    0.5
    """
    known, untaught = np.asarray(known, np.float64), np.asarray(untaught, np.float64)
    if len(known) == 0 and len(untaught) == 0:
        return None
    if len(untaught) == 0:
        threshold = float(np.quantile(known, 1 - keep_known))
        return Calibration(threshold, f"keeps {keep_known:.0%} of held-out known examples",
                           known_accepted=float((known >= threshold).mean()))
    if len(known) == 0:
        # Only simulated untaught examples (one photo per class): reject nearly all of them.
        threshold = float(np.max(untaught)) + 1e-3
        return Calibration(threshold, "just above every simulated untaught example (no held-out known examples)",
                           untaught_rejected=1.0)
    values = np.unique(np.concatenate([known, untaught]))
    candidates = np.concatenate([[values[0] - 1e-3], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-3]])
    balanced = np.array([((known >= t).mean() + (untaught < t).mean()) / 2 for t in candidates])
    best = np.flatnonzero(balanced >= balanced.max() - 1e-12)
    # The best thresholds form ranges; take the middle of the widest plateau's span.
    low, high = candidates[best[0]], candidates[best[-1]]
    contiguous = best[-1] - best[0] + 1 == len(best)
    threshold = float((low + high) / 2) if contiguous else float(candidates[best[len(best) // 2]])
    return Calibration(
        threshold,
        "balances held-out known examples against left-out classes",
        known_accepted=float((known >= threshold).mean()),
        untaught_rejected=float((untaught < threshold).mean()),
    )
