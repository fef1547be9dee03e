"""Keras 3 model builders: the course's CNN and a small, fast residual network.

Every builder is a plain function with keyword arguments that returns an
uncompiled ``keras.Model`` taking ``N×H×W×3`` float images (normalised as
:mod:`imagerec.training` does: ``"unit"``, pixels / 255, by default) and
returning class probabilities. The layer before the classifier is named
``"embedding"`` (exported as the model's embedding output) and the
pre-softmax scores ``"logits"`` (the training loop uses them for a
numerically stable loss). Only standard Keras layers are used, so saved
models load in Keras's safe mode with no custom code.

>>> from imagerec.architectures import build, course_cnn
>>> model = course_cnn(input_shape=(32, 32, 3), num_classes=10, activation="elu")
>>> model.output_shape
(None, 10)
>>> build("fast_resnet", input_shape=(32, 32, 3), num_classes=4).get_layer("embedding").output.shape
(None, 256)

A user's own model works everywhere a built one does, as long as it takes
``N×H×W×3`` images and ends in a softmax over the classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .core.errors import UsageError
from .core.keras_backend import import_keras

__all__ = ["ARCHITECTURES", "build", "course_cnn", "fast_resnet", "logits_model", "min_image_size"]


def _check_activation(activation: str) -> None:
    keras = import_keras()
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"unknown activation {activation!r} (try relu, elu, gelu, selu, tanh, swish...)") from exc


def course_cnn(
    *,
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    activation: str = "relu",
    width: int = 32,
    dense: int = 512,
    dropout: bool = True,
) -> Any:
    """The course's CIFAR-10 network: two conv blocks, a dense layer, softmax.

    Conv(32) → Conv(32) → MaxPool → Dropout 0.25 → Conv(64) → Conv(64) →
    MaxPool → Dropout 0.25 → Dense(512) → Dropout 0.5 → Dense(classes,
    softmax). ``activation`` is any Keras activation name; ``width`` scales
    the convolutions (32 as taught), ``dense`` the hidden layer.

    >>> course_cnn(num_classes=3, activation="tanh").count_params() > 1_000_000
    True
    """
    keras = import_keras()
    layers = keras.layers
    _check_activation(activation)
    inputs = keras.Input(tuple(input_shape), name="images")
    x = layers.Conv2D(width, 3, padding="same", activation=activation, name="conv1")(inputs)
    x = layers.Conv2D(width, 3, activation=activation, name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    if dropout:
        x = layers.Dropout(0.25, name="dropout1")(x)
    x = layers.Conv2D(width * 2, 3, padding="same", activation=activation, name="conv3")(x)
    x = layers.Conv2D(width * 2, 3, activation=activation, name="conv4")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    if dropout:
        x = layers.Dropout(0.25, name="dropout2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense, activation=activation, name="embedding")(x)
    if dropout:
        x = layers.Dropout(0.5, name="dropout3")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    outputs = layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name="course_cnn")


def fast_resnet(
    *,
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    widths: Sequence[int] = (64, 256, 256),
    stem: int = 0,
    whiten_kernel: int = 2,
    activation: str = "gelu",
    residual: bool = False,
    logit_scale: float = 1 / 9,
) -> Any:
    """A small, fast network for 32–64 px pictures on a CPU, after the
    CIFAR-10 speed runs (airbench, the DAWNBench ResNet-9).

    What those runs found works: a first layer that *whitens* the pixels
    (a fixed ``whiten_kernel``² convolution with ``2·3·whiten_kernel²``
    filters; :func:`imagerec.train` sets it from the training images'
    patch statistics and does not train it); few wide stages rather than
    many thin ones; per width in ``widths`` a stage of conv → max-pool →
    BN → act → conv → BN → act, pooling right after the first convolution
    so the second runs at a quarter of the cost; batch norm without a
    learned scale (it only fights the weight decay); convolutions that
    start as the identity on their first input channels (an implicit
    residual, so no shortcuts are needed: ``residual=True`` adds them);
    then a global max-pool (the ``"embedding"``) and a bias-free dense
    layer whose outputs are multiplied by ``logit_scale`` (large logits
    early in training make the loss spiky). ``stem=N`` replaces the
    whitening layer by an ordinary learned 3×3 convolution of N channels.
    Train it with label smoothing, a one-cycle schedule, flip and translate
    augmentation — the defaults of :func:`imagerec.train` for it.

    >>> model = fast_resnet(num_classes=10)
    >>> model.count_params() < 2_000_000, model.get_layer("whiten").kernel.shape
    (True, (2, 2, 3, 24))
    """
    keras = import_keras()
    layers = keras.layers
    _check_activation(activation)
    if not widths:
        raise UsageError("fast_resnet needs at least one stage width")
    if stem <= 0 and whiten_kernel < 1:
        raise UsageError(f"whiten_kernel must be at least 1, got {whiten_kernel}")

    def conv_bn(x, filters: int, name: str, pool: bool = False):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
        if pool:
            x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
        # Momentum 0.6 (as in the speed runs) lets the running statistics keep
        # up with weights that change fast under a short, high-rate schedule.
        x = layers.BatchNormalization(momentum=0.6, epsilon=1e-5, scale=False, name=f"{name}_bn")(x)
        return layers.Activation(activation, name=f"{name}_act")(x)

    inputs = keras.Input(tuple(input_shape), name="images")
    if stem > 0:
        x = conv_bn(inputs, stem, "stem")
    else:
        channels = int(input_shape[-1])
        x = layers.Conv2D(2 * channels * whiten_kernel**2, whiten_kernel, name="whiten")(inputs)
        x = layers.Activation(activation, name="whiten_act")(x)
    for i, width in enumerate(widths, start=1):
        x = conv_bn(x, width, f"stage{i}a", pool=True)
        y = conv_bn(x, width, f"stage{i}b")
        x = layers.Add(name=f"stage{i}_add")([x, y]) if residual else y
    x = layers.GlobalMaxPooling2D(name="embedding")(x)
    x = layers.Dense(num_classes, use_bias=False, name="classifier")(x)
    logits = layers.Rescaling(logit_scale, name="logits")(x)
    outputs = layers.Activation("softmax", name="probabilities")(logits)
    model = keras.Model(inputs, outputs, name="fast_resnet")
    _identity_init(model)
    return model


def _identity_init(model: Any) -> None:
    """Start the weights where the speed runs start them.

    Kernels are scaled from Keras's Glorot-uniform bound √(6 / (fan_in +
    fan_out)) to PyTorch's 1 / √fan_in, the scale the recipe was tuned at (a
    smaller start is a larger effective step for weights under batch norm).
    Then each stage convolution passes its first input channels straight
    through (a centred 1 on the diagonal) while its other filters keep the
    random start. Done on the weights, so the saved model needs no custom code.
    """
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Dense") or layer.name == "whiten":
            continue
        kernel = np.array(layer.kernel.numpy())
        fan_out = kernel.shape[-1]
        fan_in = kernel.size // fan_out
        kernel *= (1 / np.sqrt(fan_in)) / np.sqrt(6 / (fan_in + fan_out))
        if kind == "Conv2D" and layer.name != "stem_conv":
            height, width, inputs, outputs = kernel.shape
            n = min(inputs, outputs)
            kernel[:, :, :, :n] = 0.0
            kernel[height // 2, width // 2, np.arange(n), np.arange(n)] = 1.0
        layer.kernel.assign(kernel)


ARCHITECTURES: dict[str, Callable[..., Any]] = {"course_cnn": course_cnn, "fast_resnet": fast_resnet}


def min_image_size(name: str, **options: Any) -> int:
    """The smallest square image side (pixels) the architecture ``name`` can be built for.

    ``course_cnn`` loses 2 pixels in each unpadded convolution and halves the
    size in each of its two poolings (10 → 8 → 4 → 2 → 1); ``fast_resnet``
    loses ``whiten_kernel - 1`` pixels in its whitening layer, then halves
    the size once per stage (``widths``). Unknown names give 1.

    >>> min_image_size("course_cnn"), min_image_size("fast_resnet"), min_image_size("fast_resnet", widths=(16, 32), stem=8)
    (10, 9, 4)
    """
    if name == "course_cnn":
        return 10
    if name == "fast_resnet":
        widths = options.get("widths", (64, 256, 256))
        lost = 0 if options.get("stem", 0) > 0 else int(options.get("whiten_kernel", 2)) - 1
        return 2 ** max(1, len(tuple(widths))) + lost
    return 1


def build(name: str, **kwargs: Any) -> Any:
    """Build the architecture registered as ``name`` with keyword arguments.

    >>> build("course_cnn", num_classes=2, input_shape=(16, 16, 3)).name
    'course_cnn'
    """
    try:
        builder = ARCHITECTURES[name]
    except KeyError:
        raise UsageError(f"unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}") from None
    shape = kwargs.get("input_shape")
    if shape is not None and len(shape) >= 2:
        smallest = min_image_size(name, **kwargs)
        if min(int(shape[0]), int(shape[1])) < smallest:
            raise UsageError(
                f"{name} needs images of at least {smallest}×{smallest} pixels, got {shape[0]}×{shape[1]} "
                f"(use an image size of {smallest} or more)"
            )
    try:
        return builder(**kwargs)
    except UsageError:
        raise
    except ValueError as exc:  # Keras's own shape errors: say which settings do not fit
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot build {name} with {_describe(kwargs)}: {first[:300]}") from exc


def _describe(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in kwargs.items()) or "its defaults"


def logits_model(model: Any) -> Any:
    """A view of ``model`` that outputs its pre-softmax scores (shares the layers and weights).

    Uses the layer named ``"logits"``; a model without one whose last layer
    is a softmax activation gets the input of that layer; otherwise the
    model itself is returned (its outputs are then treated as probabilities).
    """
    keras = import_keras()
    names = {layer.name for layer in model.layers}
    if "logits" in names:
        return keras.Model(model.inputs, model.get_layer("logits").output)
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if type(last).__name__ == "Activation" and getattr(activation, "__name__", "") == "softmax":
        return keras.Model(model.inputs, last.input)
    return model
