"""Small array functions the models share: softmax and L2 normalisation.

>>> import numpy as np
>>> softmax(np.array([[0.0, 0.0]])).tolist()
[[0.5, 0.5]]
>>> [round(float(v), 3) for v in l2_normalize(np.array([[3.0, 4.0]]))[0]]
[0.6, 0.8]
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

__all__ = ["softmax", "l2_normalize"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (over the last axis), computed in float64 for stability; float32 out."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), float32."""
    X = np.asarray(embeddings, dtype=np.float32)
    if X.ndim != 2:
        raise UsageError(f"expected embeddings as an N×D array, got shape {X.shape}")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)
