"""Exports to TensorFlow Lite: one graph from a uint8 1×H×W×3 image to ``scores`` (and ``confidence``).

- A trained ``.keras`` network, a Keras zoo model by name, or a recognizer
  learned on a Keras application (``keras:...`` or a Keras zoo model; its
  one Keras model, :mod:`imagerec.export.keras`): the
  Keras model behind its normalisation layer, converted by litert-torch (a
  Keras model on the torch backend is a PyTorch module; no TensorFlow is
  involved; ``pip install 'imagerec[tflite]'``).
- A TFLite classifier (an int8 zoo model by name, an imported or
  Teachable Machine ``.tflite``): the model itself — a zoo model byte for
  byte (``imagerec.load`` knows it by its sha256), any other with
  imagerec's metadata (labels, preprocessing), so it loads without a
  labels file or option beside it.
- A recognizer learned on an int8 zoo backbone: the zoo's own ``.tflite``
  with the head appended to its flatbuffer (:func:`append_head`): the
  embedding is dequantised, L2-normalised and run through the head's dense
  layers and a softmax, and the backbone's own classifier, no longer
  needed, is dropped. No converter runs, so the backbone's integer
  arithmetic is exactly the one the head was learned on.

The exported file carries an ``imagerec`` metadata entry (labels,
preprocessing, threshold) that :func:`imagerec.load` reads back.

>>> import os
>>> from imagerec.transfer.heads import DenseLayer
>>> path = os.path.join(os.environ.get("IMAGEREC_MODEL_DIR", "../shared/models"), "mobilenet_v2_1.0_224_quant.tflite")
>>> head = [DenseLayer(np.ones((1280, 2)) / 1280, np.zeros(2))]
>>> model = append_head(open(path, "rb").read(), "MobilenetV2/Logits/AvgPool", head, None, {"labels": ["a", "b"]})
>>> from imagerec.backends.litert import LiteRTBackend
>>> LiteRTBackend(model).run(np.zeros((1, 224, 224, 3), np.uint8))["scores"].round(3).tolist()
[[0.5, 0.5]]
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.errors import ModelFileError, UsageError
from ..core.keras_backend import import_keras
from ..data.views import PredictionView
from .check import Written
from .keras import learned_keras_model, normalization_layer
from .sources import NO_VIEWS, KerasZooModel, LearnedSource, TFLiteModel, TrainedNetwork

__all__ = ["trained_to_tflite", "learned_on_zoo_to_tflite", "learned_on_keras_to_tflite", "keras_zoo_to_tflite",
           "tflite_model_to_tflite", "append_head"]

_INPUT = "image: uint8 1×H×W×3"


# -- the exports --------------------------------------------------------------------------


def trained_to_tflite(source: TrainedNetwork, path: Path) -> Written:
    """A trained network: uint8 1×H×W×3 → normalisation → the network (→ test-time average) → ``scores``."""
    keras = import_keras()
    inputs = keras.Input((*source.preprocessing.size, 3), name="image")
    network = keras.Model(inputs, source.model(normalization_layer(keras, source.preprocessing.normalization)(inputs)))
    _convert(network, source.preprocessing.size, source.views, path, source.description)
    path.write_bytes(_with_info(path.read_bytes(), source.info("1")))
    return _written(path, ("scores",))


def keras_zoo_to_tflite(source: KerasZooModel, path: Path) -> Written:
    """A Keras zoo model: uint8 1×H×W×3 → normalisation → the application with its weights → ``scores``."""
    keras = import_keras()
    inputs = keras.Input((*source.preprocessing.size, 3), name="image")
    normalized = normalization_layer(keras, source.preprocessing.normalization)(inputs)
    network = keras.Model(inputs, source.keras_model()(normalized))
    _convert(network, source.preprocessing.size, NO_VIEWS, path, source.description)
    path.write_bytes(_with_info(path.read_bytes(), source.info("1")))
    return _written(path, ("scores",))


def learned_on_keras_to_tflite(source: LearnedSource, path: Path) -> Written:
    """A recognizer learned on a Keras application: its one Keras model (with the ``confidence`` output when
    it has an "unknown" threshold), converted."""
    confidence = source.head.confidence_layer() if source.thresholded else None
    model, size = learned_keras_model(source, confidence)
    _convert(model, size, NO_VIEWS, path, source.description)
    outputs = ("scores", "confidence") if confidence is not None else ("scores",)
    # The converter numbers its outputs; imagerec's loader finds them by name, as in append_head's files.
    path.write_bytes(_with_info(_name_outputs(path.read_bytes(), outputs), source.info("1", outputs)))
    return _written(path, outputs)


def learned_on_zoo_to_tflite(source: LearnedSource, path: Path) -> Written:
    """A recognizer learned on an int8 zoo backbone: the zoo model with the head appended."""
    model_path, spec = source.zoo_backbone()
    confidence = source.head.confidence_layer() if source.thresholded else None
    outputs = ("scores", "confidence") if confidence is not None else ("scores",)
    path.write_bytes(append_head(model_path.read_bytes(), spec.embedding_tensor, source.head.dense_layers(),
                                 confidence, source.info("1", outputs)))
    return _written(path, outputs)


def tflite_model_to_tflite(source: TFLiteModel, path: Path) -> Written:
    """A TFLite classifier as it is: a zoo model's bytes, or the file carrying imagerec's metadata."""
    model = source.path.read_bytes()
    outputs = ("scores", "confidence") if source.thresholded else ("scores",)
    if source.spec is None:  # a zoo model's copy is known by its sha256; metadata would change it
        model = _with_info(model, source.info("1", outputs))
    path.write_bytes(model)
    return _written(path, outputs)


def _written(path: Path, outputs: tuple[str, ...]) -> Written:
    from ..formats.tflite import load_tflite

    # Checked as it will be used: opened by imagerec's own loader, which reads the metadata back.
    return Written(_INPUT, outputs, load_tflite(path, num_threads=1).score)


def _name_outputs(model: bytes, names: Sequence[str]) -> bytes:
    """``model`` with its outputs' tensors named ``names``, in order (one subgraph, no signatures naming them)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    parsed = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph = parsed.subgraphs[0]
    if len(graph.outputs) != len(names):
        raise ModelFileError(f"the converted model has {len(graph.outputs)} outputs, expected {len(names)}")
    for index, name in zip(graph.outputs, names):
        graph.tensors[index].name = name
    parsed.signatureDefs = []  # they name the converter's outputs
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _with_info(model: bytes, info: dict) -> bytes:
    """``model`` carrying ``info`` as its ``imagerec`` metadata, which :func:`imagerec.load` reads back."""
    from ..backends.litert import with_metadata

    return with_metadata(model, "imagerec", json.dumps(info).encode())


# -- Keras model → TFLite, by litert-torch -----------------------------------------------


def _convert(network: Any, size: tuple[int, int], views: Sequence[PredictionView], path: Path, what: str) -> None:
    """Write ``network`` (a Keras model on 0–255 float pixels) as a TFLite graph taking uint8 images."""
    try:
        import litert_torch
    except ImportError as exc:
        raise UsageError(
            f"{what}: exporting a Keras network to tflite needs litert-torch; "
            "install it with pip install 'imagerec[tflite]' (or use --format onnx)"
        ) from exc
    import torch

    from ..formats.keras_onnx import average_over_views

    class Uint8Images(torch.nn.Module):
        """uint8 NHWC pixels → float → the network on each test-time view → their weighted mean."""

        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, images):
            return average_over_views(self.network, images.to(torch.float32), views)

    try:
        # The converter prints progress lines on stdout; the CLI prints its own result.
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            edge = litert_torch.convert(Uint8Images().eval(), (torch.zeros((1, *size, 3), dtype=torch.uint8),))
            edge.export(str(path))
    except Exception as exc:  # the converter's errors share no base class
        raise ModelFileError(f"{what}: litert-torch could not convert the model ({exc})", path=what) from exc


# -- a head appended to a TFLite flatbuffer ----------------------------------------------
#
# The zoo model is unpacked with the schema's object API (ModelT), new tensors,
# buffers and operators are appended to its one subgraph, and it is packed
# again. Operators must stay in execution order; constant tensors own a buffer
# holding their bytes, activations an empty one.


def append_head(model: bytes, embedding_tensor: str, layers, confidence, info: dict) -> bytes:
    """A TFLite model whose outputs are the head's ``scores`` (and ``confidence``).

    ``layers`` are :class:`~imagerec.transfer.heads.DenseLayer` objects run
    on the L2-normalised ``embedding_tensor``; ``confidence`` is a layer
    whose largest output is the confidence, or None; ``info`` becomes the
    ``imagerec`` metadata.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from ..backends.litert import set_metadata

    parsed = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph = parsed.subgraphs[0]
    names = [t.name.decode() if isinstance(t.name, bytes) else t.name for t in graph.tensors]
    if embedding_tensor not in names:
        raise ModelFileError(f"the backbone has no tensor named {embedding_tensor!r}")
    embedding = names.index(embedding_tensor)
    dim = int(np.prod(graph.tensors[embedding].shape[1:]))
    batch = int(graph.tensors[embedding].shape[0])

    def buffer(data: bytes | None) -> int:
        entry = schema.BufferT()
        entry.data = list(data) if data else None
        parsed.buffers.append(entry)
        return len(parsed.buffers) - 1

    def tensor(name: str, shape, kind=schema.TensorType.FLOAT32, data: np.ndarray | None = None) -> int:
        entry = schema.TensorT()
        entry.name = name
        entry.shape = list(shape)
        entry.type = kind
        entry.buffer = buffer(None if data is None else np.ascontiguousarray(data).tobytes())
        graph.tensors.append(entry)
        return len(graph.tensors) - 1

    def opcode(code: int) -> int:
        # Builtin codes above 127 live in builtinCode only; deprecatedBuiltinCode caps at 127.
        for index, existing in enumerate(parsed.operatorCodes):
            if max(existing.builtinCode, existing.deprecatedBuiltinCode) == code:
                return index
        entry = schema.OperatorCodeT()
        entry.builtinCode = code
        entry.deprecatedBuiltinCode = min(code, 127)
        entry.version = 1
        parsed.operatorCodes.append(entry)
        return len(parsed.operatorCodes) - 1

    def operator(code: int, inputs, outputs, options_type=0, options=None) -> None:
        entry = schema.OperatorT()
        entry.opcodeIndex = opcode(code)
        entry.inputs, entry.outputs = list(inputs), list(outputs)
        entry.builtinOptionsType, entry.builtinOptions = options_type, options
        graph.operators.append(entry)

    def fully_connected(source: int, layer, name: str) -> int:
        options = schema.FullyConnectedOptionsT()
        options.fusedActivationFunction = (
            schema.ActivationFunctionType.RELU if layer.relu else schema.ActivationFunctionType.NONE
        )
        weights = layer.weights.T  # FULLY_CONNECTED takes D_out × D_in
        w = tensor(f"{name}/weights", weights.shape, data=weights)
        b = tensor(f"{name}/bias", layer.bias.shape, data=layer.bias)
        out = tensor(name, (batch, weights.shape[0]))
        operator(schema.BuiltinOperator.FULLY_CONNECTED, [source, w, b], [out], schema.BuiltinOptions.FullyConnectedOptions, options)
        return out

    op = schema.BuiltinOperator
    source = graph.tensors[embedding]
    if source.type == schema.TensorType.FLOAT32:
        as_float = embedding
    else:
        as_float = tensor("imagerec/embedding_float", source.shape)
        operator(op.DEQUANTIZE, [embedding], [as_float])
    flat = tensor("imagerec/embedding", (batch, dim))
    shape = tensor("imagerec/embedding_shape", (2,), schema.TensorType.INT32, np.array([batch, dim], np.int32))
    reshape_options = schema.ReshapeOptionsT()
    reshape_options.newShape = [batch, dim]
    operator(op.RESHAPE, [as_float, shape], [flat], schema.BuiltinOptions.ReshapeOptions, reshape_options)
    normalized = tensor("imagerec/embedding_l2", (batch, dim))
    operator(op.L2_NORMALIZATION, [flat], [normalized], schema.BuiltinOptions.L2NormOptions, schema.L2NormOptionsT())
    current = normalized
    for number, layer in enumerate(layers):
        current = fully_connected(current, layer, f"imagerec/head_{number}")
    scores = tensor("scores", (batch, layers[-1].weights.shape[1]))
    softmax_options = schema.SoftmaxOptionsT()
    softmax_options.beta = 1.0
    operator(op.SOFTMAX, [current], [scores], schema.BuiltinOptions.SoftmaxOptions, softmax_options)
    outputs = [scores]
    if confidence is not None:
        cosine = fully_connected(normalized, confidence, "imagerec/cosine")
        axis = tensor("imagerec/class_axis", (1,), schema.TensorType.INT32, np.array([1], np.int32))
        best = tensor("confidence", (batch,))
        reducer = schema.ReducerOptionsT()
        reducer.keepDims = False
        operator(op.REDUCE_MAX, [cosine, axis], [best], schema.BuiltinOptions.ReducerOptions, reducer)
        outputs.append(best)
    graph.outputs = outputs
    _drop_unused_operators(parsed, graph)
    parsed.signatureDefs = []  # they name the old outputs
    set_metadata(parsed, "imagerec", json.dumps(info).encode())
    builder = flatbuffers.Builder(len(model) + (1 << 20))
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _drop_unused_operators(parsed, graph) -> None:
    """Remove operators nothing downstream of the outputs needs, and free their weights."""
    needed = set(graph.outputs)
    keep = [False] * len(graph.operators)
    for index in range(len(graph.operators) - 1, -1, -1):  # operators are stored in execution order
        operator = graph.operators[index]
        if any(out in needed for out in operator.outputs):
            keep[index] = True
            needed.update(i for i in operator.inputs if i >= 0)
    dropped = [op for op, kept in zip(graph.operators, keep) if not kept]
    graph.operators = [op for op, kept in zip(graph.operators, keep) if kept]
    still_used = {i for op in graph.operators for i in (*op.inputs, *op.outputs)} | set(graph.inputs) | set(graph.outputs)
    for operator in dropped:
        for index in (*operator.inputs, *operator.outputs):
            if index >= 0 and index not in still_used:
                buffer = graph.tensors[index].buffer
                if buffer > 0:
                    parsed.buffers[buffer].data = None  # the dead classifier's weights take no space
