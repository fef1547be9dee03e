"""Grad-CAM heat maps, from a model that gives gradients (Selvaraju et al., 2017).

Grad-CAM weighs each channel of the last convolutional layer's activations
``A`` (``h×w×C``) by the mean gradient of the explained class's score with
respect to that channel, sums the weighted channels and keeps the positive
part: ``relu(Σ_c mean(∂y/∂A_c) · A_c)``. The coarse ``h×w`` map (7×7 for a
224×224 ImageNet model) is smoothed up to the input's size and mapped back
onto the photo like every other method's map. One forward and one backward
pass: tens of times cheaper than occlusion, but only for models whose
gradients imagerec can reach — Keras models, through
:meth:`imagerec.Recognizer.gradients`.

This module only does the arithmetic on NumPy arrays; the function that runs
the model and returns activations and gradients (:data:`GradientFn`) is
handed in, so nothing here imports Keras or a model format. The recognizer's
own :meth:`~imagerec.Recognizer.score` picks the class (its answer) and
gives its probability, so the label explained is the one ``predict`` gives.

>>> import numpy as np
>>> from PIL import Image
>>> from imagerec.core.preprocessing import Preprocessing
>>> def gradients(batch, index):      # a "network" whose channel 0 fires at cell (1, 2) of a 4×4 grid
...     activations = np.zeros((len(batch), 4, 4, 2), np.float32); activations[:, 1, 2, 0] = 3.0
...     grads = np.zeros_like(activations); grads[..., 0] = 1.0      # the class grows with channel 0
...     return activations, grads
>>> heat = grad_cam(Image.new("RGB", (64, 64)), gradients, lambda b: np.array([[0.8, 0.2]]),
...                 Preprocessing(size=(64, 64)), labels=["a", "b"])
>>> heat.label, heat.method, heat.runs, heat.peak
('a', 'grad-cam', 2, [39, 23])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from ..core.errors import UsageError
from ..core.images import resize
from ..core.preprocessing import Preprocessing
from .heatmap import HeatMap, finish, label_index

__all__ = ["METHOD", "GradientFn", "cam", "grad_cam"]

METHOD = "grad-cam"

# (preprocessed uint8 batch N×H×W×3, class index) -> (activations, gradients of the class's score
# with respect to them), both N×h×w×C float32: what a recognizer's ``gradients()`` returns.
GradientFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def grad_cam(
    photo: Image.Image,
    gradients: GradientFn,
    score: Callable[[np.ndarray], np.ndarray],
    preprocessing: Preprocessing,
    *,
    labels: Sequence[str],
    label: str | None = None,
    predictable: np.ndarray | None = None,
) -> HeatMap:
    """The Grad-CAM :class:`HeatMap` of ``photo`` for ``label`` (default: the best predictable class of ``score``)."""
    photo = photo.convert("RGB")
    seen = np.asarray(resize(photo, preprocessing), dtype=np.uint8)
    base = np.asarray(score(seen[None]), dtype=np.float32)[0]
    index = label_index(base, labels, label, predictable)
    activations, grads = gradients(seen[None], index)
    coarse = cam(np.asarray(activations, np.float32)[0], np.asarray(grads, np.float32)[0])
    height, width = seen.shape[:2]
    # Bilinear from cell centres to pixel centres: a smooth map whose peak is inside the hottest cell.
    on_input = np.asarray(Image.fromarray(coarse, "F").resize((width, height), Image.Resampling.BILINEAR),
                          np.float32)
    return finish(on_input, photo, preprocessing, labels=labels, index=index, score=float(base[index]),
                  method=METHOD, runs=2)


def cam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """``relu(Σ_c mean(gradients_c) · activations_c)`` for one image's ``h×w×C`` arrays, ``h×w`` float32.

    >>> a = np.stack([np.eye(2), 1 - np.eye(2)], axis=-1)      # two channels, opposite corners
    >>> cam(a, np.stack([np.ones((2, 2)), -np.ones((2, 2))], axis=-1)).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    if activations.ndim != 3 or activations.shape != gradients.shape:
        raise UsageError(f"Grad-CAM needs h×w×C activations and gradients of one shape, got "
                         f"{activations.shape} and {gradients.shape}")
    weights = gradients.mean(axis=(0, 1))
    return np.maximum(np.tensordot(activations, weights, axes=([2], [0])), 0).astype(np.float32)
