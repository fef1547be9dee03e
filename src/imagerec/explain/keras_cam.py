"""The gradients Grad-CAM needs, from a Keras model run on the PyTorch backend (torch autograd).

:func:`keras_gradients` turns a Keras model into a
:data:`~imagerec.explain.gradcam.GradientFn`: it normalises the uint8 batch
as the model expects (``core.preprocessing``'s one table), runs the model
eagerly on torch tensors, captures the output of the last layer whose output
is still a spatial map (``h×w×C`` with ``h, w > 1``: the last convolutional
block) and differentiates the explained class's pre-softmax score with
respect to it. A final softmax (a ``Dense``/``Activation`` layer with
``activation="softmax"``, or a ``Softmax`` layer) is turned off in the model
it is given — Grad-CAM is defined on the class score, and a saturated
softmax would give vanishing gradients — so the model becomes the
function's own (its weights are also frozen: only the feature map is
differentiated, so the layers before it run as plain inference): hand it a
model built for it, never one used elsewhere.

Model formats (``formats/``) hand recognizers a lazy source of this function
(:func:`lazy_keras_gradients`), so Keras is imported and the model built
only when a Grad-CAM is asked for; this module imports nothing above ``core``.

>>> from imagerec.core.keras_backend import import_keras
>>> keras = import_keras()
>>> inputs = keras.Input((16, 16, 3))
>>> features = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
>>> outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(features))
>>> gradients = keras_gradients(keras.Model(inputs, outputs), "unit")
>>> activations, grads = gradients(np.zeros((1, 16, 16, 3), np.uint8), 1)
>>> activations.shape, grads.shape
((1, 16, 16, 4), (1, 16, 16, 4))
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core.errors import UsageError
from ..core.keras_backend import import_keras
from ..core.preprocessing import normalization as normalization_table
from .gradcam import GradientFn

__all__ = ["dense_top", "keras_gradients", "lazy_keras_gradients", "target_layer"]


def keras_gradients(model: Any, normalization: str, *, layer: str | None = None,
                    top: Callable[[], Callable[[Any], Any]] | None = None) -> GradientFn:
    """The Grad-CAM gradient function of ``model`` (see the module doc); ``layer`` names the map layer.

    ``top``, for a model whose output is an embedding (a learned
    recognizer's backbone), returns the torch function from that output to
    the class scores (:func:`dense_top`); it is asked again at every call,
    so a head that learns more examples is explained as it is now.
    """
    keras = import_keras()
    import torch

    target = _leaf(model, layer) if layer is not None else target_layer(model)
    if top is None:
        _score_before_softmax(keras, model)
    for variable in model.variables:  # no gradient for any weight: only for the feature map
        variable.trainable = False
    captured: dict[str, Any] = {}
    original = target.call

    def capturing(*args: Any, **kwargs: Any) -> Any:
        # A fresh leaf of the autograd graph: only the layers after the map are recorded and
        # differentiated, so a Grad-CAM costs about one inference, not a training step.
        output = original(*args, **kwargs).detach().requires_grad_(True)
        captured["map"] = output
        return output

    # An instance attribute: only this model's layer records its output, other models are untouched.
    target.call = capturing
    norm = normalization_table(normalization)
    lock = threading.Lock()  # the captured output is the model's own state: one pass at a time

    def gradients(batch: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        inputs = torch.from_numpy(norm.numpy(np.asarray(batch)))
        with lock, torch.enable_grad():
            captured.clear()
            scores = model(inputs, training=False)
            scores = scores[0] if isinstance(scores, (list, tuple)) else scores
            if top is not None:
                scores = top()(scores)
            feature_map = captured.get("map")
            if feature_map is None or not feature_map.requires_grad:
                raise UsageError(f"layer {target.name!r} of the Keras model gave no gradient to explain with")
            (grads,) = torch.autograd.grad(scores[:, int(index)].sum(), feature_map)
            return feature_map.detach().cpu().numpy().astype(np.float32), grads.cpu().numpy().astype(np.float32)

    return gradients


def lazy_keras_gradients(build: Callable[[], Any], normalization: str, *,
                         top: Callable[[], Callable[[Any], Any]] | None = None) -> Callable[[], GradientFn]:
    """A zero-argument source of :func:`keras_gradients` that builds the model (``build()``) on first use only."""
    lock = threading.Lock()
    made: list[GradientFn] = []
    refused: list[UsageError] = []  # a model Grad-CAM cannot explain is not rebuilt at every photo

    def source() -> GradientFn:
        with lock:
            if refused:
                raise refused[0]
            if not made:
                try:
                    made.append(keras_gradients(build(), normalization, top=top))
                except UsageError as exc:
                    refused.append(exc)
                    raise
            return made[0]

    return source


def dense_top(layers: Sequence[Any]) -> Callable[[Any], Any]:
    """The class scores of a learned head as a torch function of the embedding: L2-normalise, then
    ``x @ weights + bias`` per layer (ReLU where ``relu``); a softmax of the result is the head's
    ``predict_proba`` (what a head's ``dense_layers()`` describes, as the exports use it).

    >>> import torch
    >>> from types import SimpleNamespace
    >>> layer = SimpleNamespace(weights=np.eye(2, dtype=np.float32) * 3, bias=np.zeros(2, np.float32), relu=False)
    >>> dense_top([layer])(torch.tensor([[4.0, 0.0]])).tolist()
    [[3.0, 0.0]]
    """
    import torch

    weights = [(torch.from_numpy(np.asarray(layer.weights, np.float32)),
                torch.from_numpy(np.asarray(layer.bias, np.float32)), bool(layer.relu)) for layer in layers]

    def scores(embedding: Any) -> Any:
        x = embedding.reshape(embedding.shape[0], -1)
        x = x / torch.clamp(torch.linalg.vector_norm(x, dim=1, keepdim=True), min=1e-12)
        for kernel, bias, relu in weights:
            x = x @ kernel + bias
            x = torch.relu(x) if relu else x
        return x

    return scores


def target_layer(model: Any) -> Any:
    """The last layer (nested models searched too) whose output is a spatial map ``N×h×w×C``, ``h, w > 1``."""
    found = None
    for layer in _leaves(model):
        if type(layer).__name__ == "InputLayer":  # the pixels themselves are no feature map
            continue
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):  # never called, or called more than once
            continue
        if len(shape) == 4 and all(isinstance(side, int) and side > 1 for side in shape[1:3]):
            found = layer
    if found is None:
        raise UsageError("the Keras model has no convolutional feature map to explain with Grad-CAM")
    return found


def _leaves(model: Any) -> list[Any]:
    """Every layer in order, nested models replaced by their own layers."""
    out = []
    for layer in getattr(model, "layers", []):
        out.extend(_leaves(layer) if getattr(layer, "layers", None) else [layer])
    return out


def _leaf(model: Any, name: str) -> Any:
    for layer in _leaves(model):
        if layer.name == name:
            return layer
    raise UsageError(f"the Keras model has no layer named {name!r}")


def _score_before_softmax(keras: Any, model: Any) -> None:
    """Turn off a final softmax, so the class's score (not its saturating probability) is differentiated."""
    last = model
    while getattr(last, "layers", None):
        last = last.layers[-1]
    if getattr(getattr(last, "activation", None), "__name__", "") == "softmax":
        last.activation = keras.activations.linear
    elif type(last).__name__ == "Softmax":
        last.call = lambda inputs, *args, **kwargs: inputs
