"""The dense head: the course's Keras head, trained with Keras and run in NumPy.

>>> DenseHead(units=16, epochs=20)
DenseHead(units=16, epochs=20)
>>> DenseHead().get_params()["units"]
1024
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ...core.arrays import l2_normalize, softmax
from ...core.keras_backend import import_keras
from ...core.pipeline import default_workers
from .base import DEFAULT_CLASS_WEIGHT, DenseLayer, StoredExamplesHead, check_class_weight, check_shapes

__all__ = ["DenseHead"]


class DenseHead(StoredExamplesHead):
    """The course's head: ``Dropout`` → ``Dense(units, relu)`` → ``Dropout`` → ``Dense(classes, softmax)``.

    Trained with Keras on L2-normalised, centred embeddings, with the recipe
    that made it the most accurate head on CIFAR-10: AdamW, a warm-up then
    cosine-decayed learning rate, label smoothing, dropout on the input too,
    and batches of up to 256 (``batch_size=None`` picks ``n / 16`` for small
    sets, so a few dozen photos still get several steps an epoch).
    ``class_weight="balanced"`` (the default) weighs each example's loss by
    ``n / (classes × count)`` of its class (scikit-learn's
    ``compute_sample_weight``); ``"none"`` weighs them alike.
    Predictions are computed in NumPy from the saved weights.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 8)) + np.repeat(np.eye(3, 8) * 3, 20, axis=0)
    >>> head = DenseHead(units=16, epochs=20).fit(X, np.repeat([0, 1, 2], 20), ["a", "b", "c"])
    >>> float((head.predict_proba(X).argmax(1) == np.repeat([0, 1, 2], 20)).mean()) > 0.9
    True
    >>> [layer.weights.shape for layer in head.dense_layers()]  # for export: standardisation folded in
    [(8, 16), (16, 3)]
    """

    kind = "dense"

    def __init__(
        self, *, units: int = 1024, dropout: float = 0.5, input_dropout: float = 0.2, epochs: int = 30,
        batch_size: int | None = None, learning_rate: float = 2e-3, weight_decay: float = 1e-4,
        label_smoothing: float = 0.1, seed: int = 0, class_weight: str | None = DEFAULT_CLASS_WEIGHT,
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
        check_class_weight(class_weight)  # now: fitting comes after minutes of embedding
        self.class_weight = class_weight  # as given, as scikit-learn's clone() requires

    def fit(self, X: np.ndarray, y: np.ndarray, labels: Sequence[str] | None = None) -> "DenseHead":
        keras = import_keras()
        y = self._targets(X, y, labels)
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
            self._train(keras, Xn, y, mean, scale, len(self.classes_))
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
        model.fit((Xn - mean) / scale, targets, epochs=self.epochs, batch_size=batch, verbose=0, shuffle=True,
                  sample_weight=self._sample_weight(y))
        (W1, b1), (W2, b2) = [layer.get_weights() for layer in model.layers if layer.get_weights()]
        self.mean_, self.scale_ = mean.astype(np.float32), scale.astype(np.float32)
        self.W1_, self.b1_, self.W2_, self.b2_ = (np.asarray(a, np.float32) for a in (W1, b1, W2, b2))

    def _sample_weight(self, y: np.ndarray) -> np.ndarray | None:
        if check_class_weight(self.class_weight) != "balanced":
            return None
        from sklearn.utils.class_weight import compute_sample_weight

        return compute_sample_weight("balanced", y).astype(np.float32)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        Z = (l2_normalize(X) - self.mean_) / self.scale_
        hidden = np.maximum(Z @ self.W1_ + self.b1_, 0.0)  # dropout is off at inference
        return softmax(hidden @ self.W2_ + self.b2_)

    def dense_layers(self) -> list[DenseLayer]:
        # The standardisation folded into the first layer: ((x - m) / s) W1 = x (W1 / s) - (m / s) W1.
        mean, scale, W1 = (np.asarray(a, np.float64) for a in (self.mean_, self.scale_, self.W1_))
        return [
            DenseLayer(W1 / scale[:, None], np.asarray(self.b1_, np.float64) - (mean / scale) @ W1, relu=True),
            DenseLayer(self.W2_, self.b2_),
        ]

    def params(self) -> dict:
        return {**self.get_params(), "class_weight": check_class_weight(self.class_weight)}

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean_, "scale": self.scale_, "W1": self.W1_, "b1": self.b1_, "W2": self.W2_,
            "b2": self.b2_, "examples": self.X_, "targets": self.y_,
        }

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray], labels: Sequence[str]) -> "DenseHead":
        head = cls(**{"class_weight": "none", **params})  # files from before class weights: unweighted
        head.mean_, head.scale_ = arrays["mean"], arrays["scale"]
        head.W1_, head.b1_, head.W2_, head.b2_ = arrays["W1"], arrays["b1"], arrays["W2"], arrays["b2"]
        head.X_, head.y_ = arrays["examples"], arrays["targets"]
        head.classes_ = np.asarray(list(labels))
        check_shapes(head.W2_, (None, len(labels)), "W2")
        return head

    @property
    def num_features(self) -> int:
        return int(self.W1_.shape[0])


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
