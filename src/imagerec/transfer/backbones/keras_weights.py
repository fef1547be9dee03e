"""ImageNet weights for Keras's MobileNetV2, rebuilt from the zoo's LiteRT model.

Keras downloads its ImageNet weights from the internet on first use. Where
that is not possible, the zoo's ``mobilenet_v2_tf2`` file (MobileNet V2
trained in TensorFlow 2, post-training quantised to int8) holds the same
network: :func:`weights_from_zoo` reads each convolution's int8 kernel and
int32 bias from the flatbuffer, dequantises them with their per-channel
scales, and writes a ``.weights.h5`` file for
``keras.applications.MobileNetV2(include_top=False)``. The LiteRT file has
batch normalisation folded into the convolutions, so each Keras
``BatchNormalization`` layer is set to the identity plus the folded bias;
training it again (fine-tuning) starts from that.

Measured on the shared photos: the rebuilt float model's pooled embedding
has cosine similarity 0.996–0.999 with the int8 model's (the gap is the
int8 rounding of the activations).

>>> from imagerec.transfer.backbones.keras_weights import weights_from_zoo
>>> path = weights_from_zoo()  # doctest: +SKIP
>>> backbone = get_backbone("keras:MobileNetV2", weights="zoo")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ... import zoo
from ...core.errors import ModelFileError, UsageError
from ...core.fs import atomic_path
from ...core.keras_backend import import_keras

__all__ = ["SOURCES", "weights_from_zoo", "zoo_weights_digest", "read_convolutions"]

# Which zoo model can seed which Keras application. Bump the version when the
# conversion changes, so cached files and learned heads are not reused.
SOURCES: dict[str, str] = {"MobileNetV2": "mobilenet_v2_tf2"}
_VERSION = 1


def zoo_weights_digest(application: str) -> str:
    """sha256 naming the zoo file and the conversion: what a head learned on these weights depends on."""
    model = _source(application)
    return hashlib.sha256(f"{application}:{model.model.sha256}:v{_VERSION}".encode()).hexdigest()


def _source(application: str):
    if application not in SOURCES:
        raise UsageError(
            f"weights='zoo' exists for {', '.join(SOURCES)} only, not {application!r}; "
            "pass 'imagenet' or a weights file"
        )
    return zoo.get(SOURCES[application])


def read_convolutions(model_bytes: bytes) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Every ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` of a LiteRT model, in execution order.

    Returns ``(kind, kernel, bias)`` with float kernels in Keras's layout
    (``kh×kw×in×out`` for a convolution, ``kh×kw×channels×1`` for a depthwise one).
    """
    from ai_edge_litert import schema_py_generated as schema

    if bytes(model_bytes[4:8]) != b"TFL3":
        raise ModelFileError("not a LiteRT model file (no TFL3 identifier)")
    try:
        parsed = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    except Exception as exc:  # a truncated file fails anywhere in the parser
        raise ModelFileError(f"not a readable LiteRT model file ({type(exc).__name__})") from exc
    if not parsed.subgraphs:
        raise ModelFileError("the LiteRT model file has no graph")
    codes = {
        schema.BuiltinOperator.CONV_2D: "conv", schema.BuiltinOperator.DEPTHWISE_CONV_2D: "depthwise",
    }
    graph = parsed.subgraphs[0]
    found = []
    for op in graph.operators:
        code = parsed.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin not in codes:
            continue
        kernel = _dequantize(parsed, graph.tensors[op.inputs[1]])
        bias = _dequantize(parsed, graph.tensors[op.inputs[2]])
        if codes[builtin] == "conv":  # LiteRT: out×kh×kw×in
            kernel = kernel.transpose(1, 2, 3, 0)
        else:  # LiteRT: 1×kh×kw×channels
            kernel = kernel[0][..., None]
        found.append((codes[builtin], kernel.astype(np.float32), bias.astype(np.float32)))
    return found


def _dequantize(parsed, tensor) -> np.ndarray:
    from ai_edge_litert import schema_py_generated as schema

    dtypes = {schema.TensorType.INT8: np.int8, schema.TensorType.UINT8: np.uint8,
              schema.TensorType.INT32: np.int32, schema.TensorType.FLOAT32: np.float32}
    if tensor.type not in dtypes:
        raise ModelFileError(f"unexpected weight type {tensor.type} in tensor {tensor.name!r}")
    data = parsed.buffers[tensor.buffer].data
    if data is None:
        raise ModelFileError(f"tensor {tensor.name!r} holds no constant weights")
    values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtypes[tensor.type]).reshape(tensor.shape)
    q = tensor.quantization
    if tensor.type == schema.TensorType.FLOAT32 or q is None or q.scale is None or len(q.scale) == 0:
        return values.astype(np.float64)
    scale = np.asarray(q.scale, np.float64)
    zero = np.asarray(q.zeroPoint, np.float64) if q.zeroPoint is not None else np.zeros_like(scale)
    if len(scale) > 1:  # per-channel: one scale along the quantised axis
        shape = [1] * values.ndim
        shape[q.quantizedDimension] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (values.astype(np.float64) - zero) * scale


def weights_from_zoo(
    application: str = "MobileNetV2", *, output: str | os.PathLike[str] | None = None, rebuild: bool = False
) -> Path:
    """Write (once) and return the ``.weights.h5`` file of ``application`` rebuilt from its zoo model.

    The file is cached under imagerec's cache folder by :func:`zoo_weights_digest`
    (``rebuild`` writes it again); it is written under a temporary name and
    renamed when complete, so an interrupted run never leaves a half-written
    file behind.
    """
    spec = _source(application)
    path = Path(output) if output is not None else (
        zoo.cache_dir().parent / "keras-weights" / f"{application}-zoo-{zoo_weights_digest(application)[:16]}.weights.h5"
    )
    if path.is_file() and output is None and not rebuild:
        return path
    convolutions = read_convolutions(zoo.fetch(spec.model).read_bytes())
    model = _keras_model(application)
    _transplant(model, convolutions, spec.name)
    with atomic_path(path) as partial:
        model.save_weights(str(partial))
    return path


def _keras_model(application: str):
    keras = import_keras()
    return getattr(keras.applications, application)(include_top=False, weights=None, input_shape=(224, 224, 3))


def _transplant(model, convolutions: list[tuple[str, np.ndarray, np.ndarray]], source: str) -> None:
    keras = import_keras()
    layers = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    # The zoo file ends with the ImageNet classifier (a 1×1 convolution); the
    # backbone has no top, so its convolutions are the file's first ones.
    if len(convolutions) < len(layers):
        raise ModelFileError(f"{source} has {len(convolutions)} convolutions; {model.name} needs {len(layers)}")
    following = {id(layer): after for layer, after in zip(model.layers, model.layers[1:])}
    for layer, (kind, kernel, bias) in zip(layers, convolutions):
        if tuple(layer.kernel.shape) != kernel.shape:
            raise ModelFileError(
                f"{source}'s convolutions do not match {model.name}: layer {layer.name} wants a "
                f"{tuple(layer.kernel.shape)} kernel, the file has {kernel.shape}"
            )
        layer.kernel.assign(kernel)
        norm = following.get(id(layer))
        if not isinstance(norm, keras.layers.BatchNormalization):
            raise ModelFileError(f"{model.name}: layer {layer.name} is not followed by batch normalisation")
        # Identity normalisation, (x − 0) / √(var + ε) · 1 + β = x + bias: the fold undone exactly.
        ones = np.ones_like(bias)
        norm.set_weights([ones, bias, np.zeros_like(bias), ones - norm.epsilon])
