"""Run a Keras model's training step as PyTorch operations: :class:`TorchGraph` and :class:`ModelRunner`.

Keras's own torch backend transposes every NHWC tensor around every
convolution and computes batch norm from elementary ops, which made a
training step about 1.5× slower here than the same network in plain
PyTorch (``bench/cifar10_train.py --overhead``). :class:`TorchGraph` runs the
model's layers as PyTorch ops on the Keras variables themselves, so what is
trained and saved is still the Keras model. Layers it does not know are
called through Keras unchanged; :class:`ModelRunner` checks the graph against
Keras's own output before training and lets Keras run the model if they
disagree.

Keras private API, used only here: ``Functional._run_through_graph`` (walks
the functional graph calling a function per layer — the hook TorchGraph
replaces each layer's call through) and ``Layer._flatten_layers`` (every
nested layer, to find the batch norms). Both exist in Keras 3.0–3.x; if a
Keras release drops them, ``TorchGraph`` refuses the model and
:class:`ModelRunner` falls back to calling the model through Keras.

>>> from imagerec.architectures import course_cnn
>>> import numpy as np
>>> runner = ModelRunner(course_cnn(input_shape=(16, 16, 3), num_classes=3, width=4, dense=8), image_size=16)
>>> runner.engine, runner.outputs_logits
('torch-graph', True)
>>> tuple(runner.forward(np.zeros((2, 16, 16, 3), np.uint8), training=False).shape)
(2, 3)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..architectures import logits_model
from ..core.errors import UsageError
from ..core.keras_backend import import_keras
from ..core.preprocessing import normalization as normalization_table
from .config import resolve_precision

__all__ = ["ModelRunner", "TorchGraph"]


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
        # Only a functional model has a graph to walk (Keras private API: see the module doc).
        if not isinstance(model, keras.Model) or not hasattr(model, "_run_through_graph") or not model.inputs:
            raise UsageError("TorchGraph needs a functional Keras model")
        self.model = model
        self._fns: dict[int, Callable] = {}
        self.fallback_layers: list[str] = []
        self.training = False

    def __call__(self, images, training: bool):
        self.training = training
        # Keras private API: the functional graph calls operation_fn(layer)(*inputs) per layer.
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



class ModelRunner:
    """A Keras model's forward pass for training and evaluation, on uint8 batches.

    Runs through :class:`TorchGraph` when it computes what Keras computes
    (``engine == "torch-graph"``), else through Keras (``"keras"``). The
    outputs are the model's pre-softmax scores when it has them
    (``outputs_logits``; :func:`imagerec.architectures.logits_model`), else
    its probabilities. ``precision`` is a :data:`~imagerec.training.config.PRECISIONS`
    name: ``"bfloat16"`` runs the convolutions and matrix products under
    autocast; weights and outputs stay float32.
    """

    def __init__(self, model: Any, *, image_size: int, normalization: str = "unit", precision: str = "float32") -> None:
        self.model = model
        self.image_size = int(image_size)
        self.normalization = normalization_table(normalization)
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
        self.bfloat16 = resolve_precision(precision) == "bfloat16"

    def _agrees(self, graph: TorchGraph) -> bool:
        """The graph runner must compute what Keras computes (inference mode)."""
        import torch

        size = self.image_size
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
        return self.normalization.torch(x)

    def forward(self, batch: np.ndarray, training: bool):
        """The model's float32 outputs (scores or probabilities, see ``outputs_logits``) for a uint8 batch."""
        import torch

        x = self.to_input(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
            if self.graph is not None:
                out = self.graph(x, training=training)
            else:
                out = self.scores_model(x.permute(0, 2, 3, 1), training=training)
        return out.float()

    def parameter_groups(self) -> tuple[list, list]:
        """The trainable tensors: (all but the batch norms' parameters, the batch norms' parameters).

        >>> from imagerec.architectures import fast_resnet
        >>> runner = ModelRunner(fast_resnet(input_shape=(16, 16, 3), num_classes=2, widths=(8, 16)), image_size=16)
        >>> params, norms = runner.parameter_groups()
        >>> len(norms), all(p.dim() == 1 for p in norms)     # four batch norms' biases (no scales)
        (4, True)
        """
        # Keras private API (see the module doc): every nested layer, sub-models included.
        norm_ids = {
            id(v) for layer in self.model._flatten_layers() if type(layer).__name__ == "BatchNormalization"
            for v in layer.trainable_variables
        }
        trainable = self.model.trainable_variables
        return [v.value for v in trainable if id(v) not in norm_ids], [v.value for v in trainable if id(v) in norm_ids]

    def variables(self) -> list:
        """Every variable of the model as a torch tensor (weights, batch-norm statistics, counters)."""
        return [v.value for v in self.model.variables]
