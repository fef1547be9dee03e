"""Exports to ONNX: one graph from uint8 NHWC images to ``scores`` (and ``confidence``).

- A trained ``.keras`` network: its ONNX export (with its test-time views)
  behind the normalisation's nodes (from
  :meth:`~imagerec.core.preprocessing.Normalization.onnx`).
- A recognizer learned on a zoo backbone: the int8 TFLite backbone converted
  by :mod:`imagerec.formats.tflite_onnx` (a QDQ graph ONNX Runtime runs with
  the same integer arithmetic), then the head.
- A recognizer learned on a Keras-application backbone (``keras:...``, or a
  Keras zoo model such as ``mobilenet_v3_large``): the backbone's own cached
  ONNX export behind its normalisation, then the head.
- A Keras zoo model by name: its cached ONNX export behind its
  normalisation, the classifier's ``scores`` only.
- A TFLite classifier (an int8 zoo model by name, an imported or Teachable
  Machine ``.tflite``): converted by :mod:`imagerec.formats.tflite_onnx`
  (int8 as QDQ), behind the normalisation for a float model; ``scores``,
  and the ``logits`` / ``confidence`` imagerec scores a zoo model / an
  exported learned recognizer from.

The head is appended from what it describes — L2 normalisation of the
embedding, its :class:`~imagerec.transfer.heads.DenseLayer` list, a softmax
(``scores``), and with a threshold the largest output of its confidence
layer (``confidence``) — so any head exports without this module knowing it.

>>> import onnx
>>> from onnx import TensorProto, helper
>>> x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 2, 2, 3])
>>> y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 2, 2, 3])
>>> graph = helper.make_graph([helper.make_node("Identity", ["pixels"], ["out"])], "g", [x], [y])
>>> proto = with_uint8_input(helper.make_model(graph), "tf")
>>> [i.name for i in proto.graph.input], [n.op_type for n in proto.graph.node]
(['image'], ['Cast', 'Mul', 'Add', 'Identity', 'Identity'])
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ..core.errors import ModelFileError, UsageError
from ..core.preprocessing import normalization
from .check import Written
from .sources import KerasZooModel, LearnedSource, TFLiteModel, TrainedNetwork

__all__ = ["trained_to_onnx", "learned_on_zoo_to_onnx", "learned_on_keras_to_onnx", "keras_zoo_to_onnx",
           "tflite_model_to_onnx", "with_uint8_input", "append_head"]


# -- the exports --------------------------------------------------------------------------


def trained_to_onnx(source: TrainedNetwork, path: Path) -> Written:
    """A trained network: uint8 N×H×W×3 → normalisation → the network (→ test-time average) → ``scores``."""
    import onnx

    from ..formats.keras_onnx import export_keras

    with tempfile.TemporaryDirectory(prefix="imagerec-export-") as folder:
        float_graph = export_keras(source.model, Path(folder) / "float.onnx", flip_average=source.flip_average,
                                   shift_average=source.shift_average)
        proto = onnx.load(str(float_graph))
    proto = with_uint8_input(proto, source.preprocessing.normalization)
    _set_info(proto, source.info("N"))
    onnx.save(proto, str(path))
    return _written(path, "N", ("scores",))


def learned_on_zoo_to_onnx(source: LearnedSource, path: Path) -> Written:
    """A recognizer learned on an int8 zoo backbone: the converted backbone, then the head."""
    model_path, spec = source.zoo_backbone()
    proto, embedding = _tflite_backbone(model_path, spec.embedding_tensor)
    return _with_head(source, proto, embedding, path, "N")


def learned_on_keras_to_onnx(source: LearnedSource, path: Path) -> Written:
    """A recognizer learned on a Keras application: its cached ONNX export behind the normalisation, then the head."""
    import onnx

    backend = source.recognizer.backend
    backbone_path = getattr(backend, "path", None)
    if backbone_path is None or "embedding" not in backend.outputs:
        raise UsageError("this learned recognizer's Keras backbone has no ONNX file with an 'embedding' output")
    proto = with_uint8_input(onnx.load(str(backbone_path)), backend.normalization)
    return _with_head(source, proto, "embedding", path, "N")


def keras_zoo_to_onnx(source: KerasZooModel, path: Path) -> Written:
    """A Keras zoo model: its cached ONNX export (made when it was loaded) behind its normalisation, ``scores`` only."""
    import onnx

    backend = source.recognizer.backend
    proto = with_uint8_input(onnx.load(str(backend.path)), backend.normalization)
    _keep_outputs(proto, {"scores"})  # the embedding output is for learning, not for this file's users
    _set_info(proto, source.info("N"))
    onnx.save(proto, str(path))
    return _written(path, "N", ("scores",))


def tflite_model_to_onnx(source: TFLiteModel, path: Path) -> Written:
    """A TFLite classifier: its graph converted (QDQ for int8), uint8 N×H×W×3 in, the normalisation inside."""
    import onnx

    from ..formats.tflite_onnx import tflite_to_onnx

    proto = tflite_to_onnx(source.path.read_bytes(), source.extra_tensors(), where=str(source.path))
    if proto.graph.input[0].name != "image":  # a float model: uint8 pixels → its normalisation → the graph
        proto = with_uint8_input(proto, source.recognizer.backend.normalization)
    outputs = tuple(output.name for output in proto.graph.output)
    _set_info(proto, source.info("N", outputs))
    onnx.save(proto, str(path))
    return _written(path, "N", outputs)


def _with_head(source: LearnedSource, proto, embedding: str, path: Path, batch: str) -> Written:
    import onnx

    confidence = source.head.confidence_layer() if source.thresholded else None
    proto = append_head(proto, embedding, source.head.dense_layers(), confidence)
    outputs = ("scores", "confidence") if confidence is not None else ("scores",)
    _set_info(proto, source.info(batch, outputs))
    onnx.save(proto, str(path))
    return _written(path, batch, outputs)


def _written(path: Path, batch: str, outputs: tuple[str, ...]) -> Written:
    from ..formats.onnx import load_exported_onnx

    # Checked as it will be used: opened by imagerec's own loader of exported files.
    exported = load_exported_onnx(path, num_threads=1)
    return Written(f"image: uint8 {batch}×H×W×3", outputs, exported.score)


def _set_info(proto, info: dict) -> None:
    entry = proto.metadata_props.add()
    entry.key, entry.value = "imagerec", json.dumps(info)


# -- graph surgery -----------------------------------------------------------------------


def _image_input(graph):
    """The graph's one real input (initializers may be listed as inputs too)."""
    initializer_names = {init.name for init in graph.initializer}
    real = [value for value in graph.input if value.name not in initializer_names]
    if len(real) != 1:
        raise ModelFileError(f"expected an ONNX graph with one image input, got {len(real)}")
    return real[0]


def _prepend_input(proto, name: str, elem_type: int, dims: list, nodes: list, constants: list) -> None:
    """Replace the graph's image input by ``name``, fed through ``nodes`` (which must produce the old input)."""
    from onnx import helper

    graph = proto.graph
    graph.input.remove(_image_input(graph))
    graph.input.insert(0, helper.make_tensor_value_info(name, elem_type, dims))
    graph.initializer.extend(constants)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)


def with_uint8_input(proto, normalization_name: str):
    """``proto`` (one float NHWC image input) taking uint8 images, the normalisation inside the graph."""
    from onnx import TensorProto, helper

    old = _image_input(proto.graph)
    dims = [d.dim_param or d.dim_value for d in old.type.tensor_type.shape.dim]
    cast = helper.make_node("Cast", ["image"], ["imagerec/image_float"], to=TensorProto.FLOAT, name="imagerec/cast")
    nodes, constants = normalization(normalization_name).onnx("imagerec/image_float", old.name, prefix="imagerec/normalization")
    _prepend_input(proto, "image", TensorProto.UINT8, dims, [cast, *nodes], constants)
    return proto


def _tflite_backbone(model_path: Path, embedding_tensor: str):
    """An int8 TFLite backbone converted to ONNX (QDQ, uint8 NHWC images in, any batch); its embedding's name."""
    from ..formats.tflite_onnx import tflite_to_onnx

    return tflite_to_onnx(model_path.read_bytes(), {"embedding": embedding_tensor}, where=str(model_path)), "embedding"


def append_head(proto, embedding: str, layers, confidence=None):
    """Add L2 normalisation, the head's ``layers``, softmax ``scores`` (and ``confidence``); prune the rest.

    ``layers`` are :class:`~imagerec.transfer.heads.DenseLayer` objects;
    ``confidence``, a layer whose largest output is the confidence, or None.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=11)
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    batch = batch_dim.dim_param or batch_dim.dim_value or "N"
    nodes, constants = [], []

    def const(name: str, value, dtype=np.float32) -> str:
        constants.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(op: str, inputs, output: str, **attributes) -> str:
        nodes.append(helper.make_node(op, list(inputs), [output], name=output, **attributes))
        return output

    def reduce(op: str, source: str, output: str, keepdims: int) -> str:
        if opset >= 18:  # axes moved from an attribute to an input
            return node(op, [source, const(f"{output}/axes", [1], np.int64)], output, keepdims=keepdims)
        return node(op, [source], output, axes=[1], keepdims=keepdims)

    def dense(source: str, layer, name: str) -> str:
        current = node("MatMul", [source, const(f"{name}/weights", layer.weights)], f"{name}/matmul")
        current = node("Add", [current, const(f"{name}/bias", layer.bias)], name)
        return node("Relu", [current], f"{name}/relu") if layer.relu else current

    # Only what the embedding needs stays: a backbone's own classifier (a Keras zoo model's "scores") goes.
    backbone = _needed_nodes(list(graph.node), {embedding})
    del graph.node[:]
    graph.node.extend(backbone)
    stale = [info for info in graph.value_info if info.name in ("scores", "confidence")]
    for info in stale:
        graph.value_info.remove(info)
    flat = node("Reshape", [embedding, const("imagerec/flat_shape", [0, -1], np.int64)], "imagerec/embedding")
    norm = reduce("ReduceL2", flat, "imagerec/embedding_norm", 1)
    norm = node("Max", [norm, const("imagerec/epsilon", 1e-12)], "imagerec/embedding_norm_safe")
    current = normalized = node("Div", [flat, norm], "imagerec/embedding_l2")
    for number, layer in enumerate(layers):
        current = dense(current, layer, f"imagerec/head_{number}")
    node("Softmax", [current], "scores", axis=1)
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, layers[-1].weights.shape[1]])]
    if confidence is not None:
        reduce("ReduceMax", dense(normalized, confidence, "imagerec/cosine"), "confidence", 0)
        outputs.append(helper.make_tensor_value_info("confidence", TensorProto.FLOAT, [batch]))
    del graph.output[:]
    graph.output.extend(outputs)
    graph.node.extend(nodes)
    graph.initializer.extend(constants)
    _keep_outputs(proto, {o.name for o in outputs})
    return proto


def _keep_outputs(proto, names: set[str]) -> None:
    """Keep only the graph outputs ``names``, and the nodes and initializers they need."""
    graph = proto.graph
    kept_outputs = [o for o in graph.output if o.name in names]
    del graph.output[:]
    graph.output.extend(kept_outputs)
    kept = _needed_nodes(list(graph.node), names)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for n in graph.node for name in n.input}
    keep_init = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep_init)


def _needed_nodes(nodes, outputs: set[str]):
    """The nodes the ``outputs`` depend on, in their original (topological) order."""
    needed = set(outputs)
    keep = [False] * len(nodes)
    for index in range(len(nodes) - 1, -1, -1):
        if any(output in needed for output in nodes[index].output):
            keep[index] = True
            needed.update(nodes[index].input)
    return [n for n, kept in zip(nodes, keep) if kept]
