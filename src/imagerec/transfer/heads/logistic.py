"""The logistic head: multinomial logistic regression, its ``C`` chosen by cross-validation.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(40, 6)) + np.repeat(np.eye(2, 6) * 3, 20, axis=0)
>>> head = LogisticHead().fit(X, np.repeat(["a", "b"], 20))
>>> head.classes_.tolist(), float(head.score(X, np.repeat(["a", "b"], 20))) > 0.9
(['a', 'b'], True)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...core.arrays import l2_normalize, softmax
from .base import DEFAULT_CLASS_WEIGHT, DenseLayer, StoredExamplesHead, check_class_weight, check_shapes

__all__ = ["LogisticHead", "one_standard_error_choice", "shrunk_scale"]


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


class LogisticHead(StoredExamplesHead):
    """Multinomial logistic regression on centred, scaled, L2-normalised embeddings.

    Each feature is divided by its deviation shrunk toward the common one
    (:func:`shrunk_scale`, ``scale_prior`` examples' worth). ``C=None``
    chooses the inverse regularisation strength from ``Cs`` by stratified
    ``cv``-fold cross-validation (on at most ``cv_samples`` examples, so
    large datasets stay fast) and the one-standard-error rule
    (:func:`one_standard_error_choice`); a number fixes it. The C used is
    ``C_`` after fitting. (On CIFAR-10 the best C for all 45,000 images was
    0.001 on ``mobilenet_v2`` and 0.003 on ``mobilenet_multi``; C ≥ 1 only
    costs more iterations.) ``class_weight="balanced"`` (the default) weighs
    each class's examples by ``n / (classes × count)``, so a class taught
    with few photos is not drowned by a big one, and C is then chosen by
    balanced accuracy (the mean recall); ``"none"`` weighs every example
    alike. ``tol`` is the solver's: 1e-3 fits all 45,000 ×
    3,392 in 29 s instead of 90 s, at 84.8 % instead of 85.1 %.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 6)) + np.repeat(np.eye(2, 6) * 3, 20, axis=0)
    >>> head = LogisticHead().fit(X, np.repeat([0, 1], 20), ["a", "b"])
    >>> float((head.predict_proba(X).argmax(1) == np.repeat([0, 1], 20)).mean()) > 0.9
    True
    >>> head.clone().C == head.C_  # refits keep the chosen C
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
        class_weight: str | None = DEFAULT_CLASS_WEIGHT,
    ) -> None:
        self.C = C
        self.Cs = Cs
        self.cv = cv
        self.cv_samples = cv_samples
        self.max_iter = max_iter
        self.tol = tol
        self.scale_prior = scale_prior
        self.seed = seed
        check_class_weight(class_weight)  # now: fitting comes after minutes of embedding
        self.class_weight = class_weight  # as given, as scikit-learn's clone() requires

    def clone(self) -> "LogisticHead":
        head = super().clone()
        if hasattr(self, "C_"):
            head.set_params(C=self.C_)
        return head

    def fit(self, X: np.ndarray, y: np.ndarray, labels: Sequence[str] | None = None) -> "LogisticHead":
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

    def _fit(self, X: np.ndarray, y: np.ndarray, labels: Sequence[str] | None) -> "LogisticHead":
        from sklearn.linear_model import LogisticRegression

        y = self._targets(X, y, labels)
        Xn = l2_normalize(X)
        mean = Xn.mean(axis=0)
        scale = shrunk_scale(Xn, self.scale_prior)
        Z = (Xn - mean) / scale
        self.C_ = float(self.C) if self.C is not None else self._choose_C(Z, y)
        model = LogisticRegression(C=self.C_, max_iter=self.max_iter, tol=self.tol, class_weight=self._sklearn_weight())
        model.fit(Z, y)
        W, b = model.coef_.astype(np.float64), model.intercept_.astype(np.float64)
        if W.shape[0] == 1:  # binary: sigmoid(w·x+b) is softmax([0, w·x+b])
            W, b = np.vstack([np.zeros_like(W), W]), np.array([0.0, b[0]])
        # Fold the standardisation into the weights: one matmul at prediction time.
        classes = len(self.classes_)
        full_W = np.zeros((classes, W.shape[1]))
        full_b = np.full(classes, -1e9)  # a class with no example is never predicted
        full_W[model.classes_], full_b[model.classes_] = W / scale, b - (W / scale) @ mean
        self.weights_ = full_W.astype(np.float32)
        self.bias_ = full_b.astype(np.float32)
        self._store_examples(Xn, y)
        return self

    def _choose_C(self, Z: np.ndarray, y: np.ndarray) -> float:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_score

        Cs = tuple(self.Cs)
        folds = min(self.cv, int(np.bincount(y)[np.unique(y)].min()))
        if folds < 2 or len(Cs) == 1:
            return float(Cs[len(Cs) // 2]) if len(Cs) > 1 else float(Cs[0])
        if len(Z) > self.cv_samples:
            rng = np.random.default_rng(self.seed)
            keep = np.sort(rng.choice(len(Z), self.cv_samples, replace=False))
            Z, y = Z[keep], y[keep]
            folds = min(folds, int(np.bincount(y)[np.unique(y)].min()))
            if folds < 2:
                return float(Cs[len(Cs) // 2])
        splitter = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
        # Balanced weights aim at every class's recall, so C is judged by the mean recall too.
        scoring = "balanced_accuracy" if self._sklearn_weight() else "accuracy"
        scores = [
            cross_val_score(LogisticRegression(C=C, max_iter=self.max_iter, tol=self.tol, class_weight=self._sklearn_weight()),
                            Z, y, cv=splitter, scoring=scoring).mean()
            for C in Cs
        ]
        self.cv_scores_ = {str(C): float(score) for C, score in zip(Cs, scores)}
        return one_standard_error_choice(Cs, scores, len(Z))

    def _sklearn_weight(self) -> str | None:
        # scikit-learn computes n / (classes × count) itself, per fit and per cross-validation fold.
        return "balanced" if check_class_weight(self.class_weight) == "balanced" else None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(l2_normalize(X) @ self.weights_.T + self.bias_)

    def dense_layers(self) -> list[DenseLayer]:
        return [DenseLayer(self.weights_.T, self.bias_)]

    def params(self) -> dict:
        return {"C": self.C_, "Cs": list(self.Cs), "cv": self.cv, "max_iter": self.max_iter, "tol": self.tol,
                "scale_prior": self.scale_prior, "seed": self.seed,
                "class_weight": check_class_weight(self.class_weight)}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_, "bias": self.bias_, "examples": self.X_, "targets": self.y_}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray], labels: Sequence[str]) -> "LogisticHead":
        # Files written before a setting existed load with the behaviour they were fitted with
        # (no scale_prior: every feature scaled by its own deviation; no class_weight: unweighted).
        head = cls(params["C"], Cs=params.get("Cs", (params["C"],)), cv=params.get("cv", 5),
                   max_iter=params.get("max_iter", 500), tol=params.get("tol", 1e-4),
                   scale_prior=params.get("scale_prior", 0.0), seed=params.get("seed", 0),
                   class_weight=params.get("class_weight", "none"))
        head.C_ = float(params["C"])
        head.weights_, head.bias_ = arrays["weights"], arrays["bias"]
        head.X_, head.y_ = arrays["examples"], arrays["targets"]
        head.classes_ = np.asarray(list(labels))
        check_shapes(head.weights_, (len(labels), None), "weights")
        check_shapes(head.bias_, (len(labels),), "bias")
        return head

    @property
    def num_features(self) -> int:
        return int(self.weights_.shape[1])
