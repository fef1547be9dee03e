"""Train a Keras network on a labelled image dataset: ``imagerec.train``.

>>> import imagerec, tempfile, os
>>> from imagerec.data import make_shapes
>>> root = make_shapes(tempfile.mkdtemp(), per_class=20, size=24)
>>> result = imagerec.train(root, arch="course_cnn", epochs=1, image_size=24, verbose=False,
...                         output=os.path.join(tempfile.mkdtemp(), "shapes.keras"))
>>> result.classes
['circle', 'cross', 'square', 'triangle']
>>> imagerec.load(result.path).labels == result.classes
True

What the loop does, and why:

* Images are decoded once into a uint8 array (cached on disk by
  :mod:`imagerec.data`); each batch is augmented on uint8 with one gather
  (:func:`imagerec.data.augment`), normalised with the same function the
  inference backend uses, and fed to the network.
* The network is a Keras model, and what is saved is that Keras model. The
  training step, though, runs the model's layers as PyTorch operations on
  the Keras variables themselves (:class:`TorchGraph`): Keras's own torch
  backend transposes every NHWC tensor around every convolution and
  computes batch norm from elementary ops, which made a training step about
  1.5× slower here than the same network in plain PyTorch (see
  ``bench/cifar10_train.py``). Layers the graph runner does not know are
  called through Keras unchanged, and the runner is checked against Keras's
  own output before training starts; if they disagree, Keras runs the model.
* The optimizer and loss are named as in Keras (``"adam"``, ``"sgd"``,
  ``"categorical_crossentropy"``...) and map onto their PyTorch
  equivalents with Keras's default hyper-parameters.
* The best epoch by validation accuracy is saved to ``output`` as soon as it
  is reached; a state file beside it (``<output>.state.pt``) is written
  after every epoch and on Ctrl-C, so ``resume=True`` continues where the
  run stopped (or extends a finished run to more epochs).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

# PyTorch's OpenMP threads spin while waiting for each other by default; on a
# machine shared with other work a spinning thread steals the core its
# partner needs, and small batch-norm steps measured 20-40x slower here.
# Passive waiting costs nothing measurable when the machine is idle. (Only
# effective if torch was not imported before imagerec.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ..data.datasets import Dataset, DatasetSource, load_dataset  # noqa: E402
from ..data.views import apply_view, prediction_views  # noqa: E402
from ..data.augment import augment  # noqa: E402
from ..core.errors import ImagerecError, OutputError, UsageError  # noqa: E402
from ..core.preprocessing import NORMALIZATIONS, Preprocessing
from ..core.preprocessing import normalization as normalization_table  # noqa: E402
from ..core.fs import prepare_output_folder  # noqa: E402
from .time_budget import CALIBRATION_STEPS, TimeBudget  # noqa: E402
from ..core.keras_backend import import_keras

__all__ = ["train", "TrainConfig", "TrainResult", "TorchGraph", "OPTIMIZERS", "LOSSES", "defaults_for"]

STATE_VERSION = 1

# The run's clock (a module attribute so that tests can drive it).
_clock = time.perf_counter

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "radam")
LOSSES = (
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "crossentropy",
    "categorical_focal_crossentropy",
    "categorical_hinge",
    "mean_squared_error",
)
SCHEDULES = ("constant", "onecycle", "linear", "cosine")
# Settings a resumed run may change: they say how long to go on, or how
# the arithmetic is done on this machine, not what is trained.
RESUMABLE_CHANGES = ("epochs", "patience", "max_minutes", "precision")

PRECISIONS = ("auto", "float32", "bfloat16")


@dataclass
class TrainConfig:
    """Every setting of a training run (saved with the model and in the resume state)."""

    arch: str = "fast_resnet"
    epochs: int = 10
    batch_size: int = 256
    image_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.375
    loss: str = "categorical_crossentropy"
    activation: str | None = None
    label_smoothing: float = 0.2
    weight_decay: float = 1.33e-3
    momentum: float = 0.85
    schedule: str = "onecycle"
    warmup: float = 0.23
    bias_lr_scale: float = 64.0
    lookahead: bool = True
    flip: bool = True
    translate: int = 2
    cutout: int = 0
    tta: bool = True
    tta_shift: int = 0
    val_fraction: float = 0.1
    seed: int = 0
    patience: int | None = None
    max_minutes: float | None = None
    normalization: str = "unit"
    precision: str = "auto"
    resize: str = "crop"
    arch_options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# What each architecture trains best with here (the course's choices for course_cnn).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "course_cnn": dict(
        epochs=30, batch_size=32, optimizer="adam", lr=1e-3, label_smoothing=0.0, weight_decay=0.0,
        schedule="constant", flip=False, translate=0, tta=False, patience=5, activation="relu",
        momentum=0.9, warmup=0.2, bias_lr_scale=1.0, lookahead=False,
    ),
    # airbench94's recipe, rescaled from batch 1024 to 256 so that every epoch
    # takes the same total step and weight decay: SGD-Nesterov at momentum
    # 0.85, a peak rate of 0.375 reached at 23 % of the run, decay of 5e-4 of
    # each weight per step at the peak (0.375 × 1.33e-3), batch-norm biases
    # learning 64× faster with the same decay, an exponential average of the
    # weights copied back every 20 steps over the last 70 % (lookahead).
    "fast_resnet": dict(
        epochs=10, batch_size=256, optimizer="sgd", lr=0.375, label_smoothing=0.2, weight_decay=1.33e-3,
        schedule="onecycle", flip=True, translate=2, tta=True, patience=None, activation="gelu",
        momentum=0.85, warmup=0.23, bias_lr_scale=64.0, lookahead=True,
    ),
    "custom": dict(
        epochs=10, batch_size=64, optimizer="adam", lr=1e-3, label_smoothing=0.0, weight_decay=0.0,
        schedule="constant", flip=True, translate=0, tta=False, patience=5, activation=None,
        momentum=0.9, warmup=0.2, bias_lr_scale=1.0, lookahead=False,
    ),
}

_DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "adagrad": 1e-2, "adadelta": 1.0,
               "adamax": 2e-3, "nadam": 1e-3, "radam": 1e-3}


def defaults_for(arch: str) -> dict[str, Any]:
    """The default settings :func:`train` uses for ``arch`` (a copy).

    >>> defaults_for("course_cnn")["optimizer"], defaults_for("course_cnn")["batch_size"]
    ('adam', 32)
    """
    return dict(_DEFAULTS.get(arch, _DEFAULTS["custom"]))


@dataclass
class TrainResult:
    """What a run produced: the model (Keras), where it was saved, and how it went."""

    model: Any
    path: Path
    classes: list[str]
    preprocessing: Preprocessing
    config: TrainConfig
    history: list[dict]
    best_epoch: int
    best_val_accuracy: float
    curves_path: Path | None
    state_path: Path
    seconds: float
    stopped: str  # "completed", "early_stopping", "time_budget"
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def recognizer(self, **settings: Any):
        """The saved model as a :class:`~imagerec.recognizer.Recognizer` (ONNX Runtime); ``settings`` as for ``configure``."""
        from ..formats.keras import load_recognizer

        return load_recognizer(self.path).configure(**settings)

    def metrics(self) -> dict:
        last = self.history[-1] if self.history else {}
        return {
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_val_accuracy,
            "epochs_run": len(self.history),
            "seconds": round(self.seconds, 2),
            "stopped": self.stopped,
            "final": last,
            "history": self.history,
        }


# -- running a Keras graph as torch operations -----------------------------


class TorchGraph:
    """Run a functional Keras model's layers as PyTorch ops on its own variables.

    4-d tensors flow as NCHW in channels-last memory (what PyTorch's CPU
    convolutions are fastest with); ``Flatten`` and any layer handed back to
    Keras see the NHWC view they expect, so the weights mean exactly what
    they mean to Keras. Batch-norm statistics are updated in the Keras
    variables, so after training the Keras model *is* the trained model.
    """

    def __init__(self, model: Any) -> None:
        keras = import_keras()
        if not isinstance(model, keras.Model) or not hasattr(model, "_run_through_graph") or not model.inputs:
            raise UsageError("TorchGraph needs a functional Keras model")
        self.model = model
        self._fns: dict[int, Callable] = {}
        self.fallback_layers: list[str] = []
        self.training = False

    def __call__(self, images, training: bool):
        self.training = training
        return self.model._run_through_graph([images], operation_fn=self._operation)

    def _operation(self, layer):
        key = id(layer)
        if key not in self._fns:
            self._fns[key] = self._compile(layer)
        fn = self._fns[key]
        return lambda *args, **kwargs: fn(*args)

    def _compile(self, layer) -> Callable:
        import torch
        import torch.nn.functional as F

        kind = type(layer).__name__
        if kind == "Conv2D" and layer.data_format == "channels_last" and layer.groups == 1:
            kernel_size = tuple(layer.kernel_size)
            if layer.padding == "valid":
                padding: Any = 0
            elif all(k % 2 == 1 for k in kernel_size) and tuple(layer.strides) == (1, 1):
                padding = tuple(((k - 1) * d) // 2 for k, d in zip(kernel_size, layer.dilation_rate))
            else:
                return self._fallback(layer)
            act = _torch_activation(layer.activation)
            if act is None:
                return self._fallback(layer)
            strides, dilation = tuple(layer.strides), tuple(layer.dilation_rate)

            def conv(x):
                kernel = layer.kernel.value.permute(3, 2, 0, 1)
                bias = layer.bias.value if layer.use_bias else None
                return act(F.conv2d(x, kernel, bias, strides, padding, dilation))

            return conv
        if kind == "Dense":
            act = _torch_activation(layer.activation)
            if act is None:
                return self._fallback(layer)

            def dense(x):
                if x.dim() != 2:
                    return _nchw_call(layer, x, self.training)
                y = x @ layer.kernel.value
                if layer.use_bias:
                    y = y + layer.bias.value
                return act(y)

            return dense
        if kind == "BatchNormalization" and layer.axis in (-1, 3) and not layer.synchronized:
            momentum, epsilon = 1.0 - float(layer.momentum), float(layer.epsilon)

            def batch_norm(x):
                if x.dim() != 4 and x.dim() != 2:
                    return _nchw_call(layer, x, self.training)
                return F.batch_norm(
                    x,
                    layer.moving_mean.value,
                    layer.moving_variance.value,
                    layer.gamma.value if layer.scale else None,
                    layer.beta.value if layer.center else None,
                    training=self.training and layer.trainable,
                    momentum=momentum,
                    eps=epsilon,
                )

            return batch_norm
        if kind in ("MaxPooling2D", "AveragePooling2D") and layer.padding == "valid" and layer.data_format == "channels_last":
            pool = F.max_pool2d if kind == "MaxPooling2D" else F.avg_pool2d
            size, strides = tuple(layer.pool_size), tuple(layer.strides)
            return lambda x: pool(x, size, strides)
        if kind in ("GlobalMaxPooling2D", "GlobalAveragePooling2D") and layer.data_format == "channels_last":
            if layer.keepdims:
                return self._fallback(layer)
            if kind == "GlobalMaxPooling2D":
                return lambda x: torch.amax(x, dim=(2, 3))
            return lambda x: torch.mean(x, dim=(2, 3))
        if kind == "Activation":
            act = _torch_activation(layer.activation)
            return act if act is not None else self._fallback(layer)
        if kind == "Dropout":
            rate = float(layer.rate)
            return lambda x: F.dropout(x, rate, self.training) if rate > 0 else x
        if kind == "Add":
            def add(inputs):
                total = inputs[0]
                for other in inputs[1:]:
                    total = total + other
                return total

            return add
        if kind == "Flatten":
            return lambda x: (x.permute(0, 2, 3, 1) if x.dim() == 4 else x).reshape(x.shape[0], -1)
        if kind == "Rescaling":
            scale, offset = layer.scale, layer.offset
            if np.ndim(scale) == 0 and np.ndim(offset) == 0:
                return lambda x: x * float(scale) + float(offset)
        return self._fallback(layer)

    def _fallback(self, layer) -> Callable:
        self.fallback_layers.append(layer.name)
        return lambda x: _nchw_call(layer, x, self.training)


def _nchw_call(layer, x, training: bool):
    """Call a Keras layer on executor tensors: 4-d tensors are NCHW here, NHWC to Keras."""
    def to_keras(t):
        return t.permute(0, 2, 3, 1) if hasattr(t, "dim") and t.dim() == 4 else t

    def from_keras(t):
        return t.permute(0, 3, 1, 2) if hasattr(t, "dim") and t.dim() == 4 else t

    args = [to_keras(t) for t in x] if isinstance(x, (list, tuple)) else to_keras(x)
    try:
        out = layer(args, training=training)
    except TypeError:
        out = layer(args)
    if isinstance(out, (list, tuple)):
        return type(out)(from_keras(t) for t in out)
    return from_keras(out)


def _torch_activation(fn) -> Callable | None:
    """The PyTorch op for a Keras activation function (None: let Keras run it)."""
    import torch
    import torch.nn.functional as F

    name = getattr(fn, "__name__", None)
    table: dict[str, Callable] = {
        "linear": lambda x: x,
        "relu": F.relu,
        "gelu": F.gelu,  # Keras's default gelu is the exact (erf) form, as is torch's
        "elu": F.elu,
        "selu": F.selu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "silu": F.silu,
        "swish": F.silu,
        "softplus": F.softplus,
        "softsign": F.softsign,
        "relu6": F.relu6,
        "hard_sigmoid": F.hardsigmoid,
        "mish": F.mish,
        "leaky_relu": lambda x: F.leaky_relu(x, 0.2),  # Keras's default slope
        "exponential": torch.exp,
        "softmax": lambda x: torch.softmax(x, dim=1 if x.dim() == 4 else -1),
        "log_softmax": lambda x: torch.log_softmax(x, dim=1 if x.dim() == 4 else -1),
    }
    return table.get(name)


# -- optimisation pieces -----------------------------------------------------


def _make_optimizer(
    name: str, params: list, norm_params: list, lr: float, weight_decay: float, momentum: float, norm_lr_scale: float = 1.0
):
    """The optimizer over two groups: batch-norm parameters learn ``norm_lr_scale``
    times faster, with their weight decay divided by as much, so that every
    parameter loses the same fraction to decay per step. Each group's
    ``lr_scale`` says how its rate follows the schedule."""
    import torch

    groups = [
        {"params": params, "weight_decay": weight_decay, "lr_scale": 1.0},
        {"params": norm_params, "weight_decay": weight_decay / norm_lr_scale, "lr_scale": norm_lr_scale},
    ]
    groups = [group for group in groups if group["params"]]
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    name = name.lower()
    # Keras's defaults where they differ from PyTorch's (epsilon 1e-7, rmsprop rho 0.9).
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, eps=1e-7)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, eps=1e-7)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=1e-7)
    if name == "adagrad":
        return torch.optim.Adagrad(groups, lr=lr, eps=1e-7, initial_accumulator_value=0.1)
    if name == "adadelta":
        return torch.optim.Adadelta(groups, lr=lr, rho=0.95, eps=1e-7)
    if name == "adamax":
        return torch.optim.Adamax(groups, lr=lr, eps=1e-7)
    if name == "nadam":
        return torch.optim.NAdam(groups, lr=lr, eps=1e-7)
    if name == "radam":
        return torch.optim.RAdam(groups, lr=lr, eps=1e-7)
    raise UsageError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


class _Lookahead:
    """An exponential average of the weights (and batch-norm statistics),
    copied back into the model every few steps over the last 70 % of the run.

    The averaging strengthens as training ends (the decay rises with the
    cube of progress), so the model moves fast early and settles late; it
    is airbench's variant of the Lookahead optimizer. Steps are counted so
    that each epoch sees the same averaging whatever the batch size.
    """

    START = 0.3  # fraction of the run before averaging begins

    def __init__(self, variables: list, batch_size: int) -> None:
        self.variables = [v for v in variables if v.is_floating_point()]
        self.every = max(1, round(5 * 1024 / batch_size))
        self.base = 0.95 ** (batch_size / 1024 * self.every)  # 0.95 per 1024 images
        self.average: list | None = None

    def after_step(self, step: int, total_steps: int) -> None:
        import torch

        progress = step / max(1, total_steps)
        if progress < self.START or step % self.every:
            return
        with torch.no_grad():
            if self.average is None:
                self.average = [v.detach().clone() for v in self.variables]
                return
            decay = self.base * progress**3
            for average, variable in zip(self.average, self.variables):
                average.lerp_(variable, 1 - decay)
                variable.copy_(average)

    def copy_back(self) -> None:
        import torch

        if self.average is None:
            return
        with torch.no_grad():
            for average, variable in zip(self.average, self.variables):
                variable.copy_(average)


def whiten_from_data(model: Any, images: np.ndarray, normalization: str, *, limit: int = 5000, eps: float = 5e-4) -> bool:
    """Set a model's ``"whiten"`` convolution from the patch statistics of ``images``
    and freeze its kernel; return whether the model has one.

    Each k×k×3 patch, centred on the mean patch, is projected on the
    eigenvectors of the patch covariance and divided by the square root of
    the eigenvalue (plus ``eps`` of the average variance, so that noise is
    not blown up); a second set of filters gives the negated projections,
    so the activation after it keeps both signs. The output over the
    training images then has (nearly) unit covariance: the network starts
    from decorrelated pixels instead of having to learn to decorrelate them.

    >>> from imagerec.architectures import fast_resnet
    >>> model = fast_resnet(input_shape=(16, 16, 3), num_classes=2, widths=(8,))
    >>> pictures = np.random.default_rng(0).integers(0, 256, (50, 16, 16, 3)).astype(np.uint8)
    >>> whiten_from_data(model, pictures, "unit"), model.get_layer("whiten").kernel.trainable
    (True, False)
    """
    import torch

    try:
        layer = model.get_layer("whiten")
    except ValueError:
        return False
    kh, kw, channels, filters = layer.kernel.shape
    dims = kh * kw * channels
    if filters != 2 * dims:
        return False
    picked = images[np.random.default_rng(0).permutation(len(images))[:limit]]
    total, outer, count = np.zeros(dims), np.zeros((dims, dims)), 0
    for start in range(0, len(picked), 500):
        x = torch.from_numpy(np.ascontiguousarray(picked[start:start + 500])).permute(0, 3, 1, 2).float()
        x = normalization_table(normalization).torch(x).permute(0, 2, 3, 1).numpy().astype(np.float64)
        height, width = x.shape[1] - kh + 1, x.shape[2] - kw + 1
        # The patch as Keras lays out a kernel: rows, then columns, then channels.
        patches = np.concatenate(
            [x[:, dy:dy + height, dx:dx + width, :] for dy in range(kh) for dx in range(kw)], axis=-1
        ).reshape(-1, dims)
        total += patches.sum(axis=0)
        outer += patches.T @ patches
        count += len(patches)
    mean = total / count
    covariance = outer / count - np.outer(mean, mean)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues = np.clip(eigenvalues, 0, None) + eps * max(np.trace(covariance) / dims, 1e-12)
    projections = (eigenvectors / np.sqrt(eigenvalues)).T[::-1]  # one row per filter, largest variance first
    weights = np.concatenate([projections, -projections])
    kernel = weights.T.reshape(kh, kw, channels, filters).astype(np.float32)
    layer.kernel.assign(kernel)
    if layer.use_bias:
        layer.bias.assign((-(weights @ mean)).astype(np.float32))
    layer.kernel.trainable = False
    return True


def _make_loss(name: str, label_smoothing: float, num_classes: int, outputs_logits: bool) -> Callable:
    import torch
    import torch.nn.functional as F

    name = name.lower()
    if name not in LOSSES:
        raise UsageError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")

    def log_probs(out):
        return torch.log_softmax(out, dim=-1) if outputs_logits else torch.log(out.clamp_min(1e-7))

    def soft_targets(targets):
        one_hot = F.one_hot(targets, num_classes).to(torch.float32)
        return one_hot * (1 - label_smoothing) + label_smoothing / num_classes

    if name in ("categorical_crossentropy", "sparse_categorical_crossentropy", "crossentropy"):
        def crossentropy(out, targets):
            if outputs_logits:
                return F.cross_entropy(out, targets, label_smoothing=label_smoothing)
            return -(soft_targets(targets) * log_probs(out)).sum(dim=-1).mean()

        return crossentropy
    if name == "categorical_focal_crossentropy":
        def focal(out, targets, gamma: float = 2.0, alpha: float = 0.25):
            logp = log_probs(out)
            p = logp.exp()
            return -(alpha * soft_targets(targets) * (1 - p) ** gamma * logp).sum(dim=-1).mean()

        return focal
    if name == "categorical_hinge":
        def hinge(out, targets):
            p = torch.softmax(out, dim=-1) if outputs_logits else out
            y = soft_targets(targets)
            pos = (y * p).sum(dim=-1)
            neg = ((1 - y) * p).amax(dim=-1)
            return F.relu(neg - pos + 1).mean()

        return hinge

    def mse(out, targets):
        p = torch.softmax(out, dim=-1) if outputs_logits else out
        return ((p - soft_targets(targets)) ** 2).mean()

    return mse


def _lr_factor(schedule: str, progress: float, warmup: float) -> float:
    """Multiplier on the peak learning rate at ``progress`` ∈ [0, 1] of the run."""
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    # onecycle: linear warm-up from 20 % of the peak, then linear decay to 0.
    if warmup > 0 and progress < warmup:
        return 0.2 + 0.8 * progress / warmup
    return max(0.0, (1.0 - progress) / max(1e-9, 1.0 - warmup))


# -- the public entry point ----------------------------------------------------


def train(
    data: DatasetSource,
    *,
    arch: str = "fast_resnet",
    model: Any = None,
    output: str | os.PathLike[str] = "model.keras",
    epochs: int | None = None,
    batch_size: int | None = None,
    image_size: int = 32,
    optimizer: str | None = None,
    lr: float | None = None,
    loss: str = "categorical_crossentropy",
    activation: str | None = None,
    label_smoothing: float | None = None,
    weight_decay: float | None = None,
    schedule: str | None = None,
    augment_flip: bool | None = None,
    translate: int | None = None,
    cutout: int = 0,
    tta: bool | None = None,
    tta_shift: int = 0,
    lookahead: bool | None = None,
    val_fraction: float = 0.1,
    val_data: DatasetSource | None = None,
    seed: int = 0,
    patience: int | None = -1,
    max_minutes: float | None = None,
    normalization: str = "unit",
    precision: str = "auto",
    resume: bool = False,
    verbose: bool | None = None,
    workers: int | None = None,
    threads: int | None = None,
    callbacks: Iterable[Callable[[str, dict], None]] = (),
    **arch_options: Any,
) -> TrainResult:
    """Train a network on labelled images and save it as a ``.keras`` file.

    ``data`` is anything :func:`imagerec.data.load_dataset` reads (a class
    folder, a CSV, a ``.tar.gz``, a dict) or a :class:`~imagerec.data.Dataset`.
    A stratified ``val_fraction`` is held out (from ``seed``) unless
    ``val_data`` is given. ``arch`` names a builder in
    :mod:`imagerec.architectures` (extra keyword arguments go to it), or pass
    your own functional Keras ``model`` (``N×H×W×3`` in, softmax out).
    Settings left as ``None`` take the architecture's defaults
    (:func:`defaults_for`). ``patience`` epochs without a better validation
    accuracy stop the run (``None`` or 0: never; ``-1``: the architecture's default).
    ``max_minutes`` fits the run to that many minutes of wall clock, counted
    from this call: the number of epochs, and the learning-rate schedule with
    it, is chosen from the run's measured speed so that it ends annealed in
    time (:mod:`imagerec.training.time_budget`); ``epochs``, if given, is then the most it runs.
    ``cutout`` greys out a random square of that side in every training
    image (:func:`imagerec.data.augment`); ``tta_shift`` adds views shifted
    by that many pixels to the test-time average
    (:func:`imagerec.data.prediction_views`), at three times the prediction cost.
    ``precision="auto"`` runs the convolutions and matrix products in
    bfloat16 (weights, batch-norm statistics and the loss stay float32) on
    CPUs with bfloat16 matrix units (Intel AMX or AVX-512 BF16), where
    training is about 3× faster, and in float32 elsewhere; ``"float32"`` and
    ``"bfloat16"`` force one.
    ``resume`` continues from ``<output>.state.pt``. ``threads`` sets
    PyTorch's thread count (default: the cores this process may use; on a
    machine busy with other work, 1 can be much faster, as threads that
    wait for each other get descheduled). ``callbacks`` are called
    as ``fn(event, info)`` for ``"step"`` events (epoch, step, running loss,
    the step's learning rate ``lr``), ``"epoch"`` events (the epoch's record)
    and, with ``max_minutes``, ``"plan"`` events (the epochs now planned, after
    ``epoch`` epochs and ``step`` steps, and the expected ``epoch_seconds``).

    Returns a :class:`TrainResult`; the best epoch's model is at ``output``,
    its learning curves at ``<output stem>.curves.png``.
    """
    started = _clock()
    output = Path(output)
    if output.suffix.lower() != ".keras":
        raise UsageError(f"{output}: the output must be a .keras file")
    # Fail now, not after the first epoch, if the model cannot be written there.
    prepare_output_folder(output.parent, what="the model")
    if output.is_dir():
        raise OutputError(f"{output}: is a folder; give a file name ending in .keras for the model", path=str(output))
    state_path = output.with_name(output.name + ".state.pt")
    arch_name = "custom" if model is not None else arch
    if model is None and arch not in ("course_cnn", "fast_resnet"):
        from ..architectures import ARCHITECTURES

        if arch not in ARCHITECTURES:
            raise UsageError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    base = defaults_for(arch_name)
    chosen_optimizer = (optimizer or base["optimizer"]).lower()
    if chosen_optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {chosen_optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if loss.lower() not in LOSSES:
        raise UsageError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    if lr is None:
        lr = base["lr"] if chosen_optimizer == base["optimizer"] else _DEFAULT_LR[chosen_optimizer]
        if chosen_optimizer == base["optimizer"] == "sgd" and batch_size:
            # The linear scaling rule: the same step per image at any batch size.
            lr *= batch_size / base["batch_size"]
    config = TrainConfig(
        arch=arch_name,
        epochs=int(epochs if epochs is not None else base["epochs"]),
        batch_size=int(batch_size or base["batch_size"]),
        image_size=int(image_size),
        optimizer=chosen_optimizer,
        lr=float(lr),
        loss=loss.lower(),
        activation=activation or base["activation"],
        label_smoothing=float(base["label_smoothing"] if label_smoothing is None else label_smoothing),
        weight_decay=float(base["weight_decay"] if weight_decay is None else weight_decay),
        schedule=schedule or base["schedule"],
        momentum=float(base["momentum"]),
        warmup=float(base["warmup"]),
        bias_lr_scale=float(base["bias_lr_scale"]),
        lookahead=bool(base["lookahead"] if lookahead is None else lookahead),
        flip=bool(base["flip"] if augment_flip is None else augment_flip),
        translate=int(base["translate"] if translate is None else translate),
        cutout=int(cutout),
        tta=bool(base["tta"] if tta is None else tta),
        tta_shift=int(tta_shift),
        val_fraction=float(val_fraction),
        seed=int(seed),
        patience=base["patience"] if patience == -1 else (patience or None),
        max_minutes=max_minutes,
        normalization=normalization,
        precision=precision,
        arch_options=dict(arch_options),
    )
    _validate(config)

    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    if val_data is not None:
        train_set = dataset
        val_set = val_data if isinstance(val_data, Dataset) else load_dataset(val_data)
        if val_set.classes != train_set.classes:
            raise UsageError(
                f"the validation classes {val_set.classes} differ from the training classes {train_set.classes}"
            )
    else:
        train_set, val_set = dataset.split(config.val_fraction, seed=config.seed)
    preprocessing = Preprocessing(size=(config.image_size, config.image_size), resize=config.resize,
                                  normalization=config.normalization)
    progress = False if verbose is False else None  # quiet means no decode bar either (--json)
    # In memory: random access every step. Every class needs a readable training image.
    x_train = np.array(train_set.arrays(preprocessing, workers=workers, progress=progress, require_every_class=True))
    x_val = np.array(val_set.arrays(preprocessing, workers=workers, progress=progress)) if len(val_set) else None
    y_train, y_val = train_set.targets, val_set.targets
    classes = list(dataset.classes)

    import torch

    from ..core.pipeline import default_workers

    torch.set_num_threads(threads or default_workers())
    torch.manual_seed(config.seed)
    keras_model = model if model is not None else _build(config, len(classes))
    _check_model(keras_model, config, len(classes))
    if model is None:
        whiten_from_data(keras_model, x_train, config.normalization)
    runner = _Runner(keras_model, config, len(classes))

    trainer = _Trainer(
        runner, config, classes, preprocessing, output, state_path,
        x_train, y_train, x_val, y_val, _data_digest(train_set, val_set), verbose, list(callbacks),
        started=started, epochs_cap=epochs,
    )
    if resume:
        trainer.load_state()
    elif state_path.exists():
        state_path.unlink()
    trainer.fit()
    result = trainer.finish(_clock() - started)
    result.skipped = list(dict.fromkeys([*dataset.skipped, *train_set.skipped, *val_set.skipped]))
    return result


def _validate(config: TrainConfig) -> None:
    resolve_precision(config.precision)
    if config.epochs < 1:
        raise UsageError(f"epochs must be at least 1, got {config.epochs}")
    if config.batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {config.batch_size}")
    if not 8 <= config.image_size <= 1024:
        raise UsageError(f"image size must be between 8 and 1024 pixels, got {config.image_size}")
    if config.arch != "custom":
        from ..architectures import min_image_size

        smallest = min_image_size(config.arch, **config.arch_options)
        if config.image_size < smallest:
            raise UsageError(
                f"{config.arch} needs an image size of at least {smallest} pixels, got {config.image_size} "
                f"(use --image-size {smallest} or more)"
            )
    if config.schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {config.schedule!r}; choose from {', '.join(SCHEDULES)}")
    if config.max_minutes is not None and not (config.max_minutes > 0 and math.isfinite(config.max_minutes)):
        raise UsageError(f"the time budget must be a positive number of minutes, got {config.max_minutes}")
    if config.lr <= 0 or not math.isfinite(config.lr):
        raise UsageError(f"the learning rate must be a positive number, got {config.lr}")
    if not 0 <= config.cutout < config.image_size:
        raise UsageError(f"cutout must be between 0 and the image size - 1 ({config.image_size - 1}), got {config.cutout}")
    if not 0 <= config.tta_shift <= config.image_size // 4:
        raise UsageError(f"the test-time shift must be between 0 and a quarter of the image size "
                         f"({config.image_size // 4} pixels), got {config.tta_shift}")
    if not 0 <= config.label_smoothing < 1:
        raise UsageError(f"label smoothing must be in [0, 1), got {config.label_smoothing}")

    if config.normalization not in NORMALIZATIONS:
        raise UsageError(f"unknown normalization {config.normalization!r}; expected one of {', '.join(NORMALIZATIONS)}")


def _build(config: TrainConfig, num_classes: int):
    from ..architectures import build

    kwargs = dict(config.arch_options)
    if config.activation:
        kwargs.setdefault("activation", config.activation)
    return build(config.arch, input_shape=(config.image_size, config.image_size, 3), num_classes=num_classes, **kwargs)


def _check_model(model: Any, config: TrainConfig, num_classes: int) -> None:
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None
    if shape is None or len(shape) != 4 or shape[3] != 3:
        raise UsageError(f"the model must take N×H×W×3 images, it takes {shape}")
    if tuple(shape[1:3]) != (config.image_size, config.image_size):
        raise UsageError(
            f"the model takes {shape[1]}×{shape[2]} images but image size is {config.image_size}; "
            "pass image_size to match"
        )
    outputs = model.outputs[0].shape[-1]
    if outputs != num_classes:
        raise UsageError(f"the model has {outputs} outputs but the dataset has {num_classes} classes")


def _data_digest(train_set: Dataset, val_set: Dataset) -> str:
    digest = hashlib.sha256()
    for part in (train_set, val_set):
        digest.update(json.dumps([part.paths, part.targets.tolist(), part.classes]).encode())
    return digest.hexdigest()


def resolve_precision(precision: str) -> str:
    """``"float32"`` or ``"bfloat16"``: what ``precision`` means on this machine.

    >>> resolve_precision("float32")
    'float32'
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bfloat16" if cpu_has_bfloat16_units() else "float32"


def cpu_has_bfloat16_units() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX or
    AVX-512 BF16, as Linux reports them); elsewhere bfloat16 is emulated, and slower."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"amx_bf16", "avx512_bf16"} & flags)
    except OSError:
        pass
    return False


class _Runner:
    """The model's forward pass for training and evaluation (torch graph or Keras)."""

    def __init__(self, model: Any, config: TrainConfig, num_classes: int) -> None:
        from ..architectures import logits_model

        self.model = model
        self.config = config
        self.scores_model = logits_model(model)
        self.outputs_logits = self.scores_model is not model
        self.graph: TorchGraph | None = None
        try:
            graph = TorchGraph(self.scores_model)
            if self._agrees(graph):
                self.graph = graph
        except (UsageError, AttributeError, TypeError, ValueError):
            self.graph = None
        self.engine = "torch-graph" if self.graph is not None else "keras"
        self.bfloat16 = resolve_precision(config.precision) == "bfloat16"

    def _agrees(self, graph: TorchGraph) -> bool:
        """The graph runner must compute what Keras computes (inference mode)."""
        import torch

        size = self.config.image_size
        sample = np.random.default_rng(0).integers(0, 256, (2, size, size, 3)).astype(np.uint8)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras notes that the input is not wrapped like its Input's name
            ours = graph(self.to_input(sample), training=False)
            theirs = self.scores_model(self.to_input(sample).permute(0, 2, 3, 1), training=False)
        ours, theirs = ours.detach().numpy(), theirs.detach().numpy()
        scale = max(1.0, float(np.abs(theirs).max()))
        return bool(np.abs(ours - theirs).max() / scale < 1e-4)

    def to_input(self, batch: np.ndarray):
        """uint8 NHWC numpy → normalised float NCHW (channels-last memory) torch tensor."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
        return normalization_table(self.config.normalization).torch(x)

    def forward(self, batch: np.ndarray, training: bool):
        import torch

        x = self.to_input(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
            if self.graph is not None:
                out = self.graph(x, training=training)
            else:
                out = self.scores_model(x.permute(0, 2, 3, 1), training=training)
        return out.float()

    def parameters(self) -> list:
        return [v.value for v in self.model.trainable_variables]

    def parameter_groups(self) -> tuple[list, list]:
        """The trainable tensors: (batch-norm parameters excluded, batch-norm parameters)."""
        norm_ids = {
            id(v) for layer in self.model._flatten_layers() if type(layer).__name__ == "BatchNormalization"
            for v in layer.trainable_variables
        }
        trainable = self.model.trainable_variables
        return [v.value for v in trainable if id(v) not in norm_ids], [v.value for v in trainable if id(v) in norm_ids]

    def variables(self) -> list:
        return [v.value for v in self.model.variables]


class _Trainer:
    def __init__(self, runner: _Runner, config: TrainConfig, classes, preprocessing, output: Path, state_path: Path,
                 x_train, y_train, x_val, y_val, data_digest: str, verbose, callbacks, *,
                 started: float, epochs_cap: int | None) -> None:
        import torch

        self.runner, self.config, self.classes = runner, config, classes
        self.preprocessing, self.output, self.state_path = preprocessing, output, state_path
        self.x_train, self.y_train, self.x_val, self.y_val = x_train, y_train, x_val, y_val
        self.data_digest = data_digest
        self.verbose = sys.stderr.isatty() if verbose is None else bool(verbose)
        self.callbacks = callbacks
        self.batch_size = min(config.batch_size, len(x_train))
        self.steps_per_epoch = max(1, len(x_train) // self.batch_size)
        self.optimizer = _make_optimizer(config.optimizer, *runner.parameter_groups(), config.lr, config.weight_decay,
                                         config.momentum, config.bias_lr_scale)
        self.lookahead = _Lookahead(runner.variables(), self.batch_size) if config.lookahead else None
        self.first_mirror = np.random.default_rng([config.seed, 1]).random(len(x_train)) < 0.5
        self.loss_fn = _make_loss(config.loss, config.label_smoothing, len(classes), runner.outputs_logits)
        self.epoch = 0  # completed epochs
        self.step = 0  # steps done in the current epoch
        self.partial: dict[str, float] = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "seconds": 0.0}
        self.history: list[dict] = []
        self.best_accuracy = -1.0
        self.best_epoch = 0
        self.best_weights: list | None = None
        self.stopped = "completed"
        self.elapsed_before = 0.0
        self.planned = config.epochs  # the epochs the schedule spans (fitted to a time budget, if any)
        self.started = started  # when train() was called: a time budget counts from there
        self.epochs_cap = epochs_cap
        self.budget: TimeBudget | None = None
        self._torch = torch

    # -- state -----------------------------------------------------------

    def state(self) -> dict:
        return {
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "model": _model_signature(self.runner.model),
            "classes": self.classes,
            "data": self.data_digest,
            "epoch": self.epoch,
            "step": self.step,
            "partial": dict(self.partial),
            "weights": [v.detach().clone() for v in self.runner.variables()],
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
            "best_accuracy": self.best_accuracy,
            "best_epoch": self.best_epoch,
            "best_weights": self.best_weights,
            "elapsed": self.elapsed_before + self._elapsed(),
            "planned": self.planned,
        }

    def save_state(self) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.state_path.name}-", dir=self.state_path.parent)
        os.close(fd)
        try:
            self._torch.save(self.state(), tmp)
            os.chmod(tmp, 0o644)  # mkstemp makes files private; these are meant to be shared
            os.replace(tmp, self.state_path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def load_state(self) -> None:
        torch = self._torch
        if not self.state_path.is_file():
            raise UsageError(f"{self.state_path}: no saved state to resume from (train once without --resume)")
        try:
            state = torch.load(self.state_path, weights_only=True)  # never unpickles arbitrary objects
        except Exception as exc:
            raise ImagerecError(f"{self.state_path}: unreadable resume state ({exc}); delete it to start over",
                                path=str(self.state_path)) from exc
        if state.get("version") != STATE_VERSION:
            raise ImagerecError(f"{self.state_path}: resume state version {state.get('version')} is not "
                                f"{STATE_VERSION}; delete it to start over", path=str(self.state_path))
        if state["classes"] != self.classes or state["data"] != self.data_digest:
            raise UsageError(f"{self.state_path}: saved for a different dataset or split; "
                             "resume with the same data, --val-fraction and --seed (or delete the state)")
        self._check_same_run(state)
        with torch.no_grad():
            for variable, value in zip(self.runner.variables(), state["weights"]):
                variable.copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.partial = dict(state["partial"])
        self.history = list(state["history"])
        self.best_accuracy, self.best_epoch = float(state["best_accuracy"]), int(state["best_epoch"])
        self.best_weights = state["best_weights"]
        self.elapsed_before = float(state["elapsed"])
        if self.epochs_cap is None or self.config.max_minutes is not None:
            # Go on with the saved plan (a time budget's, say), unless --epochs sets a new one.
            self.planned = self.config.epochs = int(state.get("planned", self.planned))
        self._say(f"resuming at epoch {self.epoch + 1}" + (f", step {self.step}" if self.step else ""))

    def _check_same_run(self, state: dict) -> None:
        """Refuse to resume a run whose settings or model differ from the saved ones, naming what differs."""
        def plain(value: Any) -> Any:  # tuples and lists compare equal, as they do once saved as JSON
            return json.loads(json.dumps(value, sort_keys=True, default=str))

        saved, current = state["config"], self.config.to_dict()
        # A setting added after the state was saved had its default then.
        saved = {**{f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}, **saved}
        differ = [key for key in current
                  if key not in RESUMABLE_CHANGES and plain(saved.get(key)) != plain(current[key])]
        if differ:
            was = ", ".join(f"{key}={saved.get(key)!r}" for key in differ)
            now = ", ".join(f"{key}={current[key]!r}" for key in differ)
            raise UsageError(f"{self.state_path}: the run used {was}, not {now}; resume with the same settings "
                             "(only epochs, patience and the time budget may change) or delete the state")
        difference = _model_difference(state.get("model"), _model_signature(self.runner.model),
                                       [tuple(w.shape) for w in state["weights"]],
                                       [tuple(v.shape) for v in self.runner.variables()])
        if difference:
            raise UsageError(f"{self.state_path}: the model differs from the saved run's ({difference}); "
                             "resume with the same model and settings or delete the state")

    # -- the loop ----------------------------------------------------------

    def _elapsed(self) -> float:
        return _clock() - self._start if hasattr(self, "_start") else 0.0

    def _say(self, text: str) -> None:
        if self.verbose:
            print(text, file=sys.stderr, flush=True)

    def _emit(self, event: str, info: dict) -> None:
        for callback in self.callbacks:
            callback(event, info)

    def _start_budget(self) -> None:
        """Fit the run to ``max_minutes``, counting what earlier sessions of a resumed run used."""
        config = self.config
        if config.max_minutes is None:
            return
        views = len(prediction_views(config.tta, config.tta_shift))
        val_images = 0 if self.x_val is None else len(self.x_val)
        self.budget = TimeBudget(
            config.max_minutes * 60, start=self.started - self.elapsed_before, steps_per_epoch=self.steps_per_epoch,
            cap=self.epochs_cap, eval_batches=val_images * views / self.batch_size, constant=config.schedule == "constant",
        )

    def _replan(self) -> bool:
        """Fit the plan to the time left; return whether another epoch fits (at an epoch boundary)."""
        planned = self.budget.plan(epoch=self.epoch, step=self.step, planned=self.planned, now=_clock())
        if planned != self.planned:
            seconds = self.budget.epoch_seconds()
            self._say(f"time budget of {self.config.max_minutes:g} minutes: {planned} epochs "
                      f"(about {seconds:.{0 if seconds >= 10 else 1}f} s each)")
            self._emit("plan", {"epoch": self.epoch, "step": self.step, "epochs": planned, "epoch_seconds": seconds})
            self.planned = planned
        self.config.epochs = self.planned  # saved with the model: the epochs the schedule spanned
        return self.planned > self.epoch

    def fit(self) -> None:
        self._start = _clock()
        config = self.config
        self._start_budget()
        if self.epoch >= self.planned:
            self._say(f"already trained for {self.epoch} epochs; pass more --epochs to continue")
            return
        try:
            while self.epoch < self.planned:
                epoch_start = _clock()
                record = self._run_epoch()
                self.history.append(record)
                self._emit("epoch", dict(record))
                improved = record.get("val_accuracy", record["accuracy"]) > self.best_accuracy
                if improved:
                    self.best_accuracy = record.get("val_accuracy", record["accuracy"])
                    self.best_epoch = record["epoch"]
                    self.best_weights = [v.detach().clone() for v in self.runner.variables()]
                    self._save_model(checkpoint=True)
                self.save_state()
                if config.patience is not None and record["epoch"] - self.best_epoch >= config.patience:
                    self.stopped = "early_stopping"
                    self._say(f"stopping: no better validation accuracy for {config.patience} epochs")
                    break
                if self.budget is not None:
                    self.budget.epoch_done(_clock() - epoch_start)
                    if not self._replan():
                        break
            if self.budget is not None and self.stopped == "completed" and (
                    self.epochs_cap is None or self.planned < self.epochs_cap):
                self.stopped = "time_budget"
                self._say(f"{self.planned} epochs fitted the time budget of {config.max_minutes:g} minutes")
        except KeyboardInterrupt:
            self.save_state()
            self._say(f"interrupted: state saved to {self.state_path}; run again with --resume to continue")
            raise

    def _run_epoch(self) -> dict:
        torch = self._torch
        config = self.config
        rng = np.random.default_rng([config.seed, self.epoch])
        order = rng.permutation(len(self.x_train))
        with _EpochBar(self.epoch + 1, self.planned, self.steps_per_epoch, self.verbose) as bar:
            bar.update(self.step, self.partial)
            while self.step < self.steps_per_epoch:
                total_steps = self.planned * self.steps_per_epoch
                tick = _clock()
                index = order[self.step * self.batch_size:(self.step + 1) * self.batch_size]
                step_rng = np.random.default_rng([config.seed, self.epoch, self.step])
                # Alternating flip: each image is mirrored in every other epoch (which
                # ones first is fixed by the seed), so both views are seen equally.
                mirror = self.first_mirror[index] ^ bool(self.epoch % 2)
                images = augment(self.x_train[index], step_rng, flip=config.flip, translate=config.translate, mirror=mirror,
                                 cutout=config.cutout)
                targets = torch.from_numpy(self.y_train[index])
                progress = (self.epoch * self.steps_per_epoch + self.step) / total_steps
                for group in self.optimizer.param_groups:
                    group["lr"] = config.lr * group["lr_scale"] * _lr_factor(config.schedule, progress, config.warmup)
                self.optimizer.zero_grad(set_to_none=True)
                out = self.runner.forward(images, training=True)
                loss = self.loss_fn(out, targets)
                if not torch.isfinite(loss):
                    raise ImagerecError(
                        f"the loss became {loss.item()} at epoch {self.epoch + 1}, step {self.step + 1}; "
                        "lower the learning rate (--lr)"
                    )
                loss.backward()
                self.optimizer.step()
                if self.lookahead is not None:
                    self.lookahead.after_step(self.epoch * self.steps_per_epoch + self.step + 1, total_steps)
                self.step += 1
                self.partial["loss"] += loss.item() * len(index)
                self.partial["correct"] += float((out.argmax(dim=-1) == targets).sum())
                self.partial["seen"] += len(index)
                self.partial["seconds"] += _clock() - tick
                bar.update(self.step, self.partial)
                self._emit("step", {"epoch": self.epoch + 1, "step": self.step, "loss": self.partial["loss"] / self.partial["seen"],
                                    "lr": self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0]["lr_scale"]})
                if self.budget is not None:
                    self.budget.step_done(_clock() - tick)
                    if self.budget.overhead is None and len(self.budget.durations) == CALIBRATION_STEPS:
                        self._replan()  # the first plan, from this session's first steps
            if self.lookahead is not None:
                self.lookahead.copy_back()  # validate and checkpoint the averaged weights
            record = {
                "epoch": self.epoch + 1,
                "loss": self.partial["loss"] / max(1, self.partial["seen"]),
                "accuracy": self.partial["correct"] / max(1, self.partial["seen"]),
                "train_seconds": self.partial["seconds"],
                "images_per_second": self.partial["seen"] / max(1e-9, self.partial["seconds"]),
            }
            if self.x_val is not None and len(self.x_val):
                tick = _clock()
                val_loss, val_accuracy = self.evaluate(self.x_val, self.y_val)
                record.update(val_loss=val_loss, val_accuracy=val_accuracy, val_seconds=_clock() - tick)
            record["elapsed"] = self.elapsed_before + self._elapsed()
            bar.finish(record)
        self.epoch += 1
        self.step = 0
        self.partial = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "seconds": 0.0}
        return record

    def probabilities(self, images: np.ndarray, batch: int | None = None) -> np.ndarray:
        torch = self._torch
        batch = batch or evaluation_batch(images.shape[1:3])
        views = prediction_views(self.config.tta, self.config.tta_shift)
        chunks = []
        with torch.no_grad():
            for start in range(0, len(images), batch):
                part = images[start:start + batch]
                out = sum(view.weight * self._probs(self.runner.forward(apply_view(part, view), training=False))
                          for view in views)
                chunks.append(out.numpy())
        return np.concatenate(chunks)

    def _probs(self, out):
        return self._torch.softmax(out, dim=-1) if self.runner.outputs_logits else out

    def evaluate(self, images: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
        probs = self.probabilities(images)
        picked = probs[np.arange(len(targets)), targets]
        loss = float(-np.log(np.clip(picked, 1e-7, 1)).mean())
        return loss, float((probs.argmax(axis=1) == targets).mean())

    # -- results -------------------------------------------------------------

    def _save_model(self, checkpoint: bool) -> None:
        from ..formats.keras import save_model

        metrics = {
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_accuracy,
            "epochs_run": len(self.history),
            "history": self.history,
            "engine": self.runner.engine,
            "checkpoint": checkpoint,
        }
        save_model(self.runner.model, self.output, classes=self.classes, preprocessing=self.preprocessing,
                   config=self.config.to_dict(), metrics=metrics, flip_average=self.config.tta,
                   shift_average=self.config.tta_shift)

    def finish(self, seconds: float) -> TrainResult:
        torch = self._torch
        if self.best_weights is not None:
            with torch.no_grad():
                for variable, value in zip(self.runner.variables(), self.best_weights):
                    variable.copy_(value)
        self._save_model(checkpoint=False)
        curves = _plot_curves(self.history, self.output.with_name(self.output.stem + ".curves.png"))
        self._say(f"saved {self.output} (best epoch {self.best_epoch}, validation accuracy {self.best_accuracy:.2%})")
        return TrainResult(
            model=self.runner.model, path=self.output, classes=self.classes, preprocessing=self.preprocessing,
            config=self.config, history=self.history, best_epoch=self.best_epoch,
            best_val_accuracy=self.best_accuracy, curves_path=curves, state_path=self.state_path,
            seconds=seconds, stopped=self.stopped,
        )


def evaluation_batch(image_size: Sequence[int]) -> int:
    """Images per forward pass when scoring: about 256 CIFAR-sized images' worth of pixels, 32 to 256.

    Big batches of big images spill out of the CPU's caches: MobileNetV2 at
    160 px scored 10 images/s in batches of 500 and 76 in batches of 32;
    fast_resnet at 32 px, 559 images/s at 500 and 613 at 256.

    >>> evaluation_batch((32, 32)), evaluation_batch((64, 64)), evaluation_batch((160, 160))
    (256, 64, 32)
    """
    height, width = (int(v) for v in image_size)
    return int(max(32, min(256, 256 * 32 * 32 // max(1, height * width))))


def _model_signature(model: Any) -> list[str]:
    """Each layer's class, configuration (without its name) and weight shapes, as JSON strings.

    Layer names are left out: Keras numbers unnamed layers per process, so
    the same model built twice gets different names.
    """
    signature = []
    for layer in model.layers:
        try:
            config = {k: v for k, v in layer.get_config().items() if k != "name"}
        except Exception:  # a layer that cannot describe itself is compared by its weights only
            config = {}
        entry = {"layer": type(layer).__name__, "config": config, "weights": [list(w.shape) for w in layer.weights]}
        signature.append(json.dumps(entry, sort_keys=True, default=str))
    return signature


def _model_difference(saved: list[str] | None, current: list[str], saved_shapes: list[tuple],
                      current_shapes: list[tuple]) -> str | None:
    """What differs between two model signatures (or weight shapes, for states without one), or None."""
    if saved is not None and saved != current:
        if len(saved) != len(current):
            return f"{len(saved)} layers then, {len(current)} now"
        for number, (was, now) in enumerate(zip(saved, current), start=1):
            if was == now:
                continue
            was_d, now_d = json.loads(was), json.loads(now)
            if was_d["layer"] != now_d["layer"]:
                return f"layer {number} was a {was_d['layer']}, now a {now_d['layer']}"
            for key in sorted(set(was_d["config"]) | set(now_d["config"])):
                if was_d["config"].get(key) != now_d["config"].get(key):
                    return (f"layer {number} ({now_d['layer']}) had {key}={was_d['config'].get(key)!r}, "
                            f"now {now_d['config'].get(key)!r}")
            return f"layer {number} ({now_d['layer']}) had weights {was_d['weights']}, now {now_d['weights']}"
    if len(saved_shapes) != len(current_shapes):
        return f"{len(saved_shapes)} weight tensors then, {len(current_shapes)} now"
    for was, now in zip(saved_shapes, current_shapes):
        if was != now:
            return f"a weight of shape {list(was)} is {list(now)} now"
    return None


class _EpochBar:
    """One rich progress bar per epoch (loss, accuracy, images/s) on a terminal; a line otherwise."""

    def __init__(self, epoch: int, epochs: int, steps: int, verbose: bool) -> None:
        self.epoch, self.epochs, self.steps, self.verbose = epoch, epochs, steps, verbose
        self.bar = None
        self.task = None

    def __enter__(self) -> "_EpochBar":
        if self.verbose and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn(f"epoch {self.epoch}/{self.epochs}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=Console(stderr=True),
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=self.steps, stats="")
        return self

    def update(self, step: int, partial: Mapping[str, float]) -> None:
        if self.bar is None or not partial["seen"]:
            return
        stats = (f"loss {partial['loss'] / partial['seen']:.4f}  acc {partial['correct'] / partial['seen']:.2%}  "
                 f"{partial['seen'] / max(1e-9, partial['seconds']):.0f} img/s")
        self.bar.update(self.task, completed=step, stats=stats)

    def finish(self, record: dict) -> None:
        text = (f"epoch {record['epoch']}/{self.epochs}: loss {record['loss']:.4f}  acc {record['accuracy']:.2%}  "
                f"{record['images_per_second']:.0f} img/s")
        if "val_accuracy" in record:
            text += f"  val_loss {record['val_loss']:.4f}  val_acc {record['val_accuracy']:.2%}"
        if self.bar is not None:
            self.bar.update(self.task, completed=self.steps, stats=text.split(": ", 1)[1])
        elif self.verbose:
            print(text, file=sys.stderr, flush=True)

    def __exit__(self, *exc_info) -> None:
        if self.bar is not None:
            self.bar.stop()


def _plot_curves(history: list[dict], path: Path) -> Path | None:
    """Loss and accuracy per epoch (training and validation) as a PNG."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h["loss"] for h in history], "o-", label="training")
    right.plot(epochs, [h["accuracy"] for h in history], "o-", label="training")
    if "val_loss" in history[-1]:
        left.plot(epochs, [h.get("val_loss", np.nan) for h in history], "o-", label="validation")
        right.plot(epochs, [h.get("val_accuracy", np.nan) for h in history], "o-", label="validation")
    left.set(title="loss", xlabel="epoch")
    right.set(title="accuracy", xlabel="epoch", ylim=(0, 1))
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        figure.savefig(tmp, dpi=100)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; these are meant to be shared
        os.replace(tmp, path)
    finally:
        plt.close(figure)
        Path(tmp).unlink(missing_ok=True)
    return path
