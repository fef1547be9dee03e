"""Why did the model say that? Heat maps of the regions that drove an answer, by occlusion or Grad-CAM.

Two methods, one :class:`HeatMap`:

- ``"occlusion"`` (:mod:`.occlusion`): hide squares of the input and score
  the hidden copies through the model's own scoring callable. Works for any
  model; 82 model runs.
- ``"grad-cam"`` (:mod:`.gradcam`): the class score's gradients on the last
  convolutional feature map. Needs a model that gives gradients (Keras
  models; :mod:`.keras_cam` makes the gradient function); one forward and
  one backward pass.

:func:`explain` picks between them (``method="auto"``: Grad-CAM when a
gradient source is given, else occlusion) and always says which it used
(``HeatMap.method``). This package sits below the recognizer (it imports
only ``core``): :meth:`imagerec.Recognizer.explain` passes its own
:meth:`~imagerec.Recognizer.score` and :meth:`~imagerec.Recognizer.gradients`.

>>> import numpy as np
>>> from PIL import Image
>>> from imagerec.core.preprocessing import Preprocessing
>>> photo = Image.new("RGB", (60, 60), (128, 128, 128))
>>> photo.paste((255, 0, 0), (40, 40, 60, 60))
>>> redness = lambda batch: np.stack([(batch[..., 0] > 200).mean(axis=(1, 2))] * 2, axis=1) / 2
>>> heat = explain(photo, redness, Preprocessing(size=(30, 30)), labels=["red", "other"], method="auto")
>>> heat.method, heat.peak[0] >= 40 and heat.peak[1] >= 40
('occlusion', True)
>>> explain(photo, redness, Preprocessing(size=(30, 30)), labels=["red", "other"], method="grad-cam")
Traceback (most recent call last):
imagerec.core.errors.UsageError: this model gives no gradients (only Keras models do: .keras, .h5, Keras zoo models, heads on Keras backbones); use method "occlusion" or "auto"
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from ..core.errors import UsageError
from ..core.preprocessing import Preprocessing
from .gradcam import GradientFn, grad_cam
from .heatmap import HeatMap, check_label
from .occlusion import GREY, ScoreFn, explain_photo

__all__ = ["GREY", "METHODS", "GradientFn", "HeatMap", "ScoreFn", "check_label", "check_method", "explain",
           "explain_photo", "grad_cam"]

METHODS = ("auto", "occlusion", "grad-cam")


def check_method(method: str) -> str:
    """``method`` if it is one of :data:`METHODS`, else a one-line ``UsageError``."""
    if method not in METHODS:
        raise UsageError(f"unknown explanation method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def explain(
    photo: Image.Image,
    score: ScoreFn,
    preprocessing: Preprocessing,
    *,
    labels: Sequence[str],
    label: str | None = None,
    predictable: np.ndarray | None = None,
    method: str = "auto",
    gradients: Callable[[], GradientFn | None] | None = None,
    batch_size: int = 16,
) -> HeatMap:
    """The :class:`HeatMap` of ``photo`` by ``method`` (``auto``, ``occlusion``, ``grad-cam``).

    ``gradients``, when given, returns the model's :data:`GradientFn` (or
    None when it has none); it is only called for Grad-CAM, since making it
    may build a Keras model. With ``auto``, a model whose gradients cannot
    make a Grad-CAM (no convolutional feature map) is explained by occlusion.
    """
    check_method(method)
    if method != "occlusion":
        try:
            function = gradients() if gradients is not None else None
        except UsageError:  # e.g. a Keras model with no convolutional feature map
            if method == "grad-cam":
                raise
            function = None
        if function is not None:
            return grad_cam(photo, function, score, preprocessing, labels=labels, label=label,
                            predictable=predictable)
        if method == "grad-cam":
            raise UsageError('this model gives no gradients (only Keras models do: .keras, .h5, Keras zoo models, '
                             'heads on Keras backbones); use method "occlusion" or "auto"')
    return explain_photo(photo, score, preprocessing, labels=labels, label=label, predictable=predictable,
                         batch_size=batch_size)
