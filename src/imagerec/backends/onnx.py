"""Run ``.onnx`` image models with ONNX Runtime.

:class:`OnnxBackend` takes the usual ``N×H×W×3`` uint8 batch and applies the
model's normalisation (:mod:`imagerec.core.preprocessing`) itself, so floats
never leave the backend. Keras models reach it through
:func:`imagerec.formats.keras_onnx.export_keras`.

>>> from imagerec.backends.onnx import OnnxBackend
>>> OnnxBackend.__name__
'OnnxBackend'
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from ..core.errors import ModelFileError, UsageError
from ..core.preprocessing import normalization as _normalization

__all__ = ["OnnxBackend"]

class OnnxBackend:
    """An ``.onnx`` image model behind the :class:`~imagerec.backends.Backend` protocol.

    Graph outputs are found by name: ``"scores"`` (else the first output),
    ``"embedding"``, ``"logits"`` and ``"confidence"`` (a learned recognizer's
    export) when present; ``output_names`` maps
    other names onto those roles. Inputs may be NHWC or NCHW, uint8 or
    float; a graph with a fixed batch size is run image by image.
    ``num_threads`` defaults to the cores this process may use.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | bytes,
        *,
        normalization: str = "uint8",
        num_threads: int | None = None,
        output_names: Mapping[str, str] | None = None,
    ) -> None:
        import onnxruntime as ort

        from ..core.pipeline import default_workers

        self._normalize = _normalization(normalization)
        self.normalization = normalization
        where = "<bytes>" if isinstance(path, (bytes, bytearray)) else os.fspath(path)
        self.path = where
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or default_workers()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle threads spinning for work steal the cores their partners need on
        # a shared machine: fast_resnet, batch 250, two threads, busy machine:
        # 140 images/s spinning, 300 without.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                path if isinstance(path, (bytes, bytearray)) else where, options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            if not isinstance(path, (bytes, bytearray)) and not os.path.isfile(where):
                raise ModelFileError(f"{where}: no such model file", path=where) from exc
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelFileError(f"{where}: not a usable ONNX model ({first})", path=where) from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelFileError(f"{where}: expected an image model with one input, found {len(inputs)}", path=where)
        self._input = inputs[0]
        shape = list(self._input.shape)
        if len(shape) != 4:
            raise ModelFileError(f"{where}: expected a 4-d image input, got shape {shape}", path=where)
        self._channels_first = shape[1] == 3 and shape[3] != 3
        height, width = (shape[2], shape[3]) if self._channels_first else (shape[1], shape[2])
        if not (isinstance(height, int) and isinstance(width, int)):
            raise ModelFileError(f"{where}: the input size must be fixed, got shape {shape}", path=where)
        self.input_size = (height, width)
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self._uint8_input = self._input.type == "tensor(uint8)"
        graph_outputs = [o.name for o in self._session.get_outputs()]
        roles: dict[str, str] = {}
        for name in ("scores", "embedding", "logits", "confidence"):
            if name in graph_outputs:
                roles[name] = name
        for role, name in (output_names or {}).items():
            if name not in graph_outputs:
                raise ModelFileError(f"{where}: no output named {name!r} (outputs: {', '.join(graph_outputs)})", path=where)
            roles[role] = name
        roles.setdefault("scores", graph_outputs[0])
        self._roles = roles
        self.outputs = tuple(roles)
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)

    def __repr__(self) -> str:
        return f"OnnxBackend({self.path!r}, input={self.input_size}, outputs={self.outputs})"

    def output_dim(self, name: str = "scores") -> int:
        """Size of the last axis of output ``name`` (e.g. the number of classes)."""
        target = self._roles[name]
        for output in self._session.get_outputs():
            if output.name == target:
                size = output.shape[-1]
                if isinstance(size, int):
                    return size
        return int(self.run(np.zeros((1, *self.input_size, 3), np.uint8), (name,))[name].shape[-1])

    def run(self, batch: np.ndarray, outputs: Sequence[str] = ("scores",)) -> dict[str, np.ndarray]:
        """Run on an ``N×H×W×3`` uint8 batch; one float32 array per requested output."""
        unknown = [name for name in outputs if name not in self._roles]
        if unknown:
            raise UsageError(f"{self.path}: no {', '.join(unknown)} output (available: {', '.join(self.outputs)})")
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
            raise UsageError(f"expected an N×H×W×3 uint8 batch, got {batch.dtype} {batch.shape}")
        if tuple(batch.shape[1:3]) != self.input_size:
            raise UsageError(f"{self.path}: the model takes {self.input_size} images, got {tuple(batch.shape[1:3])}")
        feed = batch if self._uint8_input and self.normalization == "uint8" else self._normalize.numpy(batch)
        if self._channels_first:
            feed = np.ascontiguousarray(feed.transpose(0, 3, 1, 2))
        names = [self._roles[name] for name in outputs]
        if self._fixed_batch is None or self._fixed_batch == len(feed):
            results = self._session.run(names, {self._input.name: feed})
        elif self._fixed_batch == 1:
            pieces = [self._session.run(names, {self._input.name: feed[i : i + 1]}) for i in range(len(feed))]
            results = [np.concatenate([p[j] for p in pieces]) for j in range(len(names))]
        else:
            raise ModelFileError(f"{self.path}: the model takes batches of exactly {self._fixed_batch}", path=self.path)
        return {
            name: np.asarray(value, dtype=np.float32).reshape(len(batch), -1) for name, value in zip(outputs, results)
        }
