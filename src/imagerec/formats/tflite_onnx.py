"""A TFLite image classifier (float or int8/uint8) converted to one ONNX graph.

``tflite2onnx`` (unmaintained since 2022) converts the old per-tensor uint8
zoo models only: it refuses per-channel int8 weights (TF2's post-training
quantisation, Teachable Machine's ``model.tflite``) and fails on float
models (``model_unquant.tflite``); ``tf2onnx`` needs TensorFlow. So the
flatbuffer is read here with the schema the LiteRT package ships
(``ai_edge_litert.schema_py_generated``) and written with ``onnx.helper``,
for the operators image classifiers use (:data:`OPERATORS`); any other
operator is a one-line :class:`~imagerec.core.errors.ModelFileError` naming it.

Quantised tensors become ONNX's QDQ form: a quantised activation is
``QuantizeLinear`` → ``DequantizeLinear`` of the float value the operator
computed, weights are integer initializers behind ``DequantizeLinear``
(per-channel where TFLite's are), biases int32. ONNX Runtime fuses these
patterns into its integer kernels (``QLinearConv``...), so it computes the
integer arithmetic TFLite does; the scores agree to the quantisation step.

Activations run as NCHW (ONNX's convolution layout): the NHWC input is
transposed once, and operators whose meaning depends on the layout
(``RESHAPE``, ``SQUEEZE``, ``FULLY_CONNECTED``...) see NHWC again. The batch
dimension is left free (``N``): TFLite's fixed batch of one becomes any batch.

>>> import numpy as np, onnxruntime
>>> from imagerec.zoo import fetch, get
>>> proto = tflite_to_onnx(fetch(get("mobilenet_v2").model).read_bytes())
>>> [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
(['image'], ['scores'])
>>> session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
>>> session.run(None, {"image": np.zeros((2, 224, 224, 3), np.uint8)})[0].shape
(2, 1001)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import ModelFileError

__all__ = ["OPERATORS", "OPSET", "tflite_to_onnx"]

OPSET = 17  # the reductions below take their axes as attributes (an input from opset 18)
_NCHW, _NHWC = (0, 3, 1, 2), (0, 2, 3, 1)


@dataclass
class _Tensor:
    """What the converter needs of one TFLite tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: np.ndarray | None  # quantisation: None for a float tensor
    zero_point: np.ndarray | None
    axis: int
    data: np.ndarray | None  # a constant's value (stored integers for a quantised constant)

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.dtype in (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.int32))


def tflite_to_onnx(model: bytes, extra_outputs: Mapping[str, str] | None = None, *, where: str = "the model") -> Any:
    """The ONNX ``ModelProto`` of the TFLite flatbuffer ``model`` (its first subgraph).

    The input is ``image``, uint8 N×H×W×3, for a uint8-input model (its
    quantisation does the scaling), or ``pixels``, float32 N×H×W×3, for a
    float model (the normalisation is the caller's;
    :func:`imagerec.export.onnx.with_uint8_input` puts it in front).
    The output ``scores`` is the model's own output; ``extra_outputs`` maps
    more graph output names to TFLite tensor names (``{"logits": ...}``).
    Every output is float32.
    ``where`` names the model in errors.
    """
    from ai_edge_litert import schema_py_generated as schema

    try:
        parsed = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
        graph = parsed.subgraphs[0]
    except Exception as exc:  # a damaged flatbuffer fails anywhere in the generated reader
        raise ModelFileError(f"{where}: not a TFLite model ({type(exc).__name__})") from exc
    return _Converter(parsed, graph, model, schema, where).convert(dict(extra_outputs or {}))


class _Converter:
    """One conversion: TFLite tensors → ONNX value names, operators → nodes."""

    def __init__(self, parsed: Any, graph: Any, raw: bytes, schema: Any, where: str) -> None:
        self.schema, self.where = schema, where
        self.op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        self.parsed, self.graph, self.raw = parsed, graph, raw
        self.tensors = [self._tensor(t) for t in graph.tensors]
        self.nodes: list = []
        self.initializers: list = []
        self.values: dict[int, tuple[str, str]] = {}  # tensor → (float value's name, layout "nchw" | "nhwc")
        self.ints: dict[int, str] = {}  # quantised tensor → its integer value's name (NHWC/NCHW as its float value)
        self.count = 0

    # -- reading the flatbuffer ----------------------------------------------------------

    def _tensor(self, t: Any) -> _Tensor:
        types = self.schema.TensorType
        dtypes = {types.FLOAT32: np.float32, types.FLOAT16: np.float16, types.INT32: np.int32, types.UINT8: np.uint8,
                  types.INT8: np.int8, types.INT64: np.int64, types.INT16: np.int16, types.BOOL: np.bool_}
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        if t.type not in dtypes:
            raise ModelFileError(f"{self.where}: tensor {name!r} has a type the converter does not know ({t.type})")
        dtype = np.dtype(dtypes[t.type])
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
        q = t.quantization
        scale = zero_point = None
        axis = 0
        if q is not None and q.scale is not None and len(q.scale) > 0:
            scale = np.asarray(q.scale, np.float32)
            zero_point = np.asarray(q.zeroPoint if q.zeroPoint is not None else np.zeros(len(scale)), np.int64)
            axis = int(q.quantizedDimension)
        data = None
        buffer = self.parsed.buffers[t.buffer] if t.buffer < len(self.parsed.buffers) else None
        if buffer is not None:
            raw = None
            if buffer.data is not None and len(buffer.data):
                raw = np.asarray(buffer.data, np.uint8).tobytes()
            elif getattr(buffer, "offset", 0) > 1 and getattr(buffer, "size", 0):
                raw = self.raw[buffer.offset: buffer.offset + buffer.size]  # a large model's data after the flatbuffer
            if raw is not None:
                data = np.frombuffer(raw, dtype).reshape(shape)
        return _Tensor(name, shape, dtype, scale, zero_point, axis, data)

    # -- emitting ONNX -------------------------------------------------------------------

    def node(self, op: str, inputs: list[str], **attributes: Any) -> str:
        from onnx import helper

        self.count += 1
        output = f"{op.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def const(self, value: np.ndarray, hint: str = "const") -> str:
        from onnx import numpy_helper

        self.count += 1
        name = f"{hint}_{self.count}"
        value = np.asarray(value)  # (np.ascontiguousarray would turn a scalar into a 1-vector)
        self.initializers.append(numpy_helper.from_array(value if value.flags.c_contiguous else value.copy(), name))
        return name

    def qparams(self, tensor: _Tensor, per_axis: bool = False) -> list[str]:
        """The scale and zero-point initializers of a quantised tensor (a scalar pair unless ``per_axis``)."""
        zp_type = np.int32 if tensor.dtype == np.int32 else tensor.dtype
        if per_axis:
            return [self.const(tensor.scale, "scale"), self.const(tensor.zero_point.astype(zp_type), "zero_point")]
        return [self.const(np.float32(tensor.scale[0]), "scale"), self.const(np.asarray(tensor.zero_point[0], zp_type), "zero_point")]

    def constant(self, index: int, transpose: tuple[int, ...] | None = None, axis_after: int | None = None) -> str:
        """A constant tensor as a float value (quantised ones behind ``DequantizeLinear``), optionally transposed."""
        tensor = self.tensors[index]
        data = tensor.data if transpose is None else tensor.data.transpose(transpose)
        if tensor.quantized:
            per_axis = len(tensor.scale) > 1
            name = self.const(data, "weights")
            extra = {"axis": axis_after if axis_after is not None else tensor.axis} if per_axis else {}
            return self.node("DequantizeLinear", [name, *self.qparams(tensor, per_axis)], **extra)
        if tensor.dtype == np.float16:
            return self.const(data.astype(np.float32), "weights")
        return self.const(data, "weights")

    def emit(self, index: int, value: str, layout: str = "nhwc", activation: int = 0) -> None:
        """Record ``value`` (float) as tensor ``index``: its fused activation, then its quantisation (Q → DQ)."""
        value = self.activation(value, activation)
        tensor = self.tensors[index]
        if tensor.quantized:
            params = self.qparams(tensor)
            quantized = self.node("QuantizeLinear", [value, *params])
            self.ints[index] = quantized
            value = self.node("DequantizeLinear", [quantized, *params])
        self.values[index] = (value, layout)

    def activation(self, value: str, kind: int) -> str:
        functions = self.schema.ActivationFunctionType
        if kind == functions.NONE:
            return value
        if kind == functions.RELU:
            return self.node("Relu", [value])
        if kind == functions.RELU6:
            return self.node("Clip", [value, self.const(np.float32(0)), self.const(np.float32(6))])
        if kind == functions.RELU_N1_TO_1:
            return self.node("Clip", [value, self.const(np.float32(-1)), self.const(np.float32(1))])
        if kind == functions.TANH:
            return self.node("Tanh", [value])
        raise ModelFileError(f"{self.where}: the fused activation {kind} is not one the converter knows")

    def value(self, index: int, layout: str | None = None) -> str:
        """Tensor ``index`` as a float value, in ``layout`` when it is 4-d (constants are made on demand)."""
        if index not in self.values:
            tensor = self.tensors[index]
            if tensor.data is None:
                raise ModelFileError(f"{self.where}: tensor {tensor.name!r} is used before it is computed")
            nchw = layout == "nchw" and len(tensor.shape) == 4
            return self.constant(index, _NCHW if nchw else None)
        name, current = self.values[index]
        if layout is None or current == layout or len(self.tensors[index].shape) != 4:
            return name
        perm = _NCHW if layout == "nchw" else _NHWC
        if index in self.ints:  # transpose the integers, so DequantizeLinear stays next to the operator using it
            tensor = self.tensors[index]
            return self.node("DequantizeLinear", [self.node("Transpose", [self.ints[index]], perm=list(perm)),
                                                  *self.qparams(tensor)])
        return self.node("Transpose", [name], perm=list(perm))

    def layout(self, index: int) -> str:
        return self.values[index][1] if index in self.values else "nhwc"

    # -- the conversion ------------------------------------------------------------------

    def convert(self, extra_outputs: dict[str, str]) -> Any:
        from onnx import TensorProto, helper

        if len(self.graph.inputs) != 1:
            raise ModelFileError(f"{self.where}: expected one image input, found {len(self.graph.inputs)}")
        source = self.tensors[self.graph.inputs[0]]
        if len(source.shape) != 4 or source.shape[3] != 3:
            raise ModelFileError(f"{self.where}: expected an N×H×W×3 image input, got shape {list(source.shape)}")
        input_type = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.float32): TensorProto.FLOAT}.get(source.dtype)
        if input_type is None:
            raise ModelFileError(f"{self.where}: expected a uint8 or float32 input, got {source.dtype}")
        index = self.graph.inputs[0]
        input_name = "image" if input_type == TensorProto.UINT8 else "pixels"
        if source.quantized:
            self.ints[index] = input_name
            self.values[index] = (self.node("DequantizeLinear", [input_name, *self.qparams(source)]), "nhwc")
        else:
            self.values[index] = (input_name, "nhwc")
        for number, operator in enumerate(self.graph.operators):
            code = self.parsed.operatorCodes[operator.opcodeIndex]
            name = self.op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode))
            handler = OPERATORS.get(name)
            if handler is None:
                raise ModelFileError(
                    f"{self.where}: cannot convert TFLite operator {name} (operator {number}) to ONNX; "
                    f"imagerec's converter knows {', '.join(sorted(OPERATORS))}"
                )
            handler(self, operator, operator.builtinOptions)
        wanted = {"scores": self.tensors[self.graph.outputs[0]].name, **extra_outputs}
        by_name = {t.name: i for i, t in enumerate(self.tensors)}
        graph_outputs = []
        for output_name, tensor_name in wanted.items():
            if tensor_name not in by_name or by_name[tensor_name] not in self.values:
                raise ModelFileError(f"{self.where}: no computed tensor named {tensor_name!r}")
            index = by_name[tensor_name]
            self.nodes.append(helper.make_node("Identity", [self.value(index, "nhwc")], [output_name], name=output_name))
            dims = ["N", *self.tensors[index].shape[1:]]
            graph_outputs.append(helper.make_tensor_value_info(output_name, TensorProto.FLOAT, dims))
        image = helper.make_tensor_value_info(input_name, input_type, ["N", *source.shape[1:]])
        onnx_graph = helper.make_graph(_needed(self.nodes, set(wanted)), "tflite", [image], graph_outputs,
                                       self.initializers)
        proto = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="imagerec")
        _keep_used_initializers(proto)
        return proto


# -- operators --------------------------------------------------------------------------------


def _pads(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
          same: bool) -> list[int]:
    """ONNX ``pads`` (top, left, bottom, right) of TFLite's SAME padding (more at the end), or none for VALID."""
    if not same:
        return [0, 0, 0, 0]
    begins, ends = [], []
    for length, k, s, d in zip(size, kernel, stride, dilation):
        out = -(-length // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - length, 0)
        begins.append(total // 2)
        ends.append(total - total // 2)
    return begins + ends


def _conv(c: _Converter, op: Any, options: Any, depthwise: bool = False) -> None:
    source, weights = c.tensors[op.inputs[0]], c.tensors[op.inputs[1]]
    if weights.data is None:
        raise ModelFileError(f"{c.where}: convolution weights that are not constants cannot be converted")
    kernel = weights.shape[1:3]
    stride, dilation = (options.strideH, options.strideW), (options.dilationHFactor, options.dilationWFactor)
    same = options.padding == c.schema.Padding.SAME
    attributes = {"kernel_shape": list(kernel), "strides": list(stride), "dilations": list(dilation),
                  "pads": _pads(source.shape[1:3], kernel, stride, dilation, same)}
    if depthwise:  # 1×KH×KW×(C·M) → (C·M)×1×KH×KW, one group per input channel
        w = c.constant(op.inputs[1], (3, 0, 1, 2), axis_after=0)
        attributes["group"] = source.shape[3]
    else:  # O×KH×KW×I → O×I×KH×KW
        w = c.constant(op.inputs[1], (0, 3, 1, 2), axis_after=0)
    inputs = [c.value(op.inputs[0], "nchw"), w]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        inputs.append(c.constant(op.inputs[2], axis_after=0))
    c.emit(op.outputs[0], c.node("Conv", inputs, **attributes), "nchw", options.fusedActivationFunction)


def _pool(c: _Converter, op: Any, options: Any, kind: str) -> None:
    source = c.tensors[op.inputs[0]]
    kernel, stride = (options.filterHeight, options.filterWidth), (options.strideH, options.strideW)
    pads = _pads(source.shape[1:3], kernel, stride, (1, 1), options.padding == c.schema.Padding.SAME)
    extra = {"count_include_pad": 0} if kind == "AveragePool" else {}  # TFLite averages over the real pixels only
    pooled = c.node(kind, [c.value(op.inputs[0], "nchw")], kernel_shape=list(kernel), strides=list(stride),
                    pads=pads, **extra)
    c.emit(op.outputs[0], pooled, "nchw", options.fusedActivationFunction)


def _binary(c: _Converter, op: Any, options: Any, kind: str) -> None:
    a, b = op.inputs[0], op.inputs[1]
    rank = {i: len(c.tensors[i].shape) for i in (a, b)}
    # NCHW when an operand already is, and the other is 4-d too, or a constant scalar / per-channel vector.
    fits = all(rank[i] == 4 or (i not in c.values and rank[i] <= 1) for i in (a, b))
    layout = "nchw" if fits and any(c.layout(i) == "nchw" for i in (a, b) if i in c.values) else "nhwc"

    def operand(index: int) -> str:
        if index not in c.values and layout == "nchw" and rank[index] == 1:
            # a per-channel constant [C] broadcasts over NHWC's last axis: C×1×1 does so in NCHW
            return c.node("Reshape", [c.constant(index), c.const(np.array([-1, 1, 1], np.int64), "shape")])
        return c.value(index, layout)

    activation = getattr(options, "fusedActivationFunction", 0) if options is not None else 0
    c.emit(op.outputs[0], c.node(kind, [operand(a), operand(b)]), layout, activation)


def _mean(c: _Converter, op: Any, options: Any) -> None:
    source = c.tensors[op.inputs[0]]
    axes = [int(a) % len(source.shape) for a in np.ravel(c.tensors[op.inputs[1]].data)]
    keep = bool(options.keepDims) if options is not None else False
    nchw = len(source.shape) == 4 and c.layout(op.inputs[0]) == "nchw"
    if nchw and not keep and sorted(axes) != [1, 2]:
        nchw = False  # a partial reduction keeps NHWC order
    mapped = [_NCHW.index(a) for a in axes] if nchw else axes
    value = c.value(op.inputs[0], "nchw" if nchw else "nhwc")
    if nchw and sorted(axes) == [1, 2]:
        reduced = c.node("GlobalAveragePool", [value])  # what ONNX Runtime runs as an integer kernel too
        if not keep:
            reduced = c.node("Reshape", [reduced, c.const(np.array([0, -1], np.int64), "shape")])
    else:
        reduced = c.node("ReduceMean", [value], axes=mapped, keepdims=int(keep))
    c.emit(op.outputs[0], reduced, "nchw" if nchw and keep else "nhwc")


def _reshape(c: _Converter, op: Any, options: Any) -> None:
    source, target = c.tensors[op.inputs[0]], c.tensors[op.outputs[0]]
    if len(op.inputs) > 1 and op.inputs[1] >= 0 and c.tensors[op.inputs[1]].data is not None:
        shape = [int(v) for v in np.ravel(c.tensors[op.inputs[1]].data)]
    elif options is not None and options.newShape is not None and len(options.newShape):
        shape = [int(v) for v in options.newShape]
    else:
        shape = list(target.shape)
    if shape and source.shape and shape[0] == source.shape[0] == 1:
        shape[0] = 0  # the batch stays the batch, whatever its size
    reshaped = c.node("Reshape", [c.value(op.inputs[0], "nhwc"), c.const(np.array(shape, np.int64), "shape")])
    c.emit(op.outputs[0], reshaped, "nhwc")


def _squeeze(c: _Converter, op: Any, options: Any) -> None:
    source = c.tensors[op.inputs[0]]
    dims = [int(d) % len(source.shape) for d in (options.squeezeDims if options is not None and options.squeezeDims is not None else [])]
    dims = dims or [i for i, d in enumerate(source.shape) if d == 1 and i > 0]
    squeezed = c.node("Squeeze", [c.value(op.inputs[0], "nhwc"), c.const(np.array(dims, np.int64), "axes")])
    c.emit(op.outputs[0], squeezed, "nhwc")


def _fully_connected(c: _Converter, op: Any, options: Any) -> None:
    weights = c.tensors[op.inputs[1]]
    kept = options is not None and options.keepNumDims and len(c.tensors[op.inputs[0]].shape) > 2
    if weights.data is None or kept:
        raise ModelFileError(f"{c.where}: a FULLY_CONNECTED layer with computed weights or kept dimensions "
                             "cannot be converted")
    flat = c.node("Reshape", [c.value(op.inputs[0], "nhwc"), c.const(np.array([-1, weights.shape[1]], np.int64), "shape")])
    inputs = [flat, c.constant(op.inputs[1], axis_after=0)]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        inputs.append(c.constant(op.inputs[2], axis_after=0))
    activation = options.fusedActivationFunction if options is not None else 0
    c.emit(op.outputs[0], c.node("Gemm", inputs, transB=1), "nhwc", activation)


def _softmax(c: _Converter, op: Any, options: Any) -> None:
    value = c.value(op.inputs[0], "nhwc")
    beta = float(options.beta) if options is not None else 1.0
    if beta != 1.0:
        value = c.node("Mul", [value, c.const(np.float32(beta))])
    c.emit(op.outputs[0], c.node("Softmax", [value], axis=-1), "nhwc")


def _pad(c: _Converter, op: Any, options: Any) -> None:
    source = c.tensors[op.inputs[0]]
    paddings = np.asarray(c.tensors[op.inputs[1]].data, np.int64).reshape(-1, 2)
    nchw = len(source.shape) == 4 and c.layout(op.inputs[0]) == "nchw"
    if nchw:
        paddings = paddings[list(_NCHW)]
    pads = c.const(np.concatenate([paddings[:, 0], paddings[:, 1]]).astype(np.int64), "pads")
    # Quantised tensors pad with their zero point, which stands for 0.0.
    padded = c.node("Pad", [c.value(op.inputs[0], "nchw" if nchw else "nhwc"), pads, c.const(np.float32(0))])
    c.emit(op.outputs[0], padded, "nchw" if nchw else "nhwc")


def _transpose(c: _Converter, op: Any, options: Any) -> None:
    perm = [int(v) for v in np.ravel(c.tensors[op.inputs[1]].data)]  # TFLite's order, on the tensor as TFLite has it
    c.emit(op.outputs[0], c.node("Transpose", [c.value(op.inputs[0], "nhwc")], perm=perm), "nhwc")


def _concatenation(c: _Converter, op: Any, options: Any) -> None:
    first = c.tensors[op.inputs[0]]
    axis = int(options.axis) % len(first.shape)
    nchw = len(first.shape) == 4 and all(c.layout(i) == "nchw" for i in op.inputs if i in c.values)
    values = [c.value(i, "nchw" if nchw else "nhwc") for i in op.inputs]
    joined = c.node("Concat", values, axis=_NCHW.index(axis) if nchw else axis)
    c.emit(op.outputs[0], joined, "nchw" if nchw else "nhwc", options.fusedActivationFunction)


def _l2_normalization(c: _Converter, op: Any, options: Any) -> None:
    # TFLite divides by max(‖x‖, 1e-6) over the last axis.
    value = c.value(op.inputs[0], "nhwc")
    norm = c.node("ReduceL2", [value], axes=[-1], keepdims=1)  # opset 17: axes is an attribute
    norm = c.node("Max", [norm, c.const(np.float32(1e-6))])
    c.emit(op.outputs[0], c.node("Div", [value, norm]), "nhwc", getattr(options, "fusedActivationFunction", 0))


def _reduce_max(c: _Converter, op: Any, options: Any) -> None:
    source = c.tensors[op.inputs[0]]
    axes = [int(a) % len(source.shape) for a in np.ravel(c.tensors[op.inputs[1]].data)]
    keep = int(bool(options.keepDims)) if options is not None else 0
    c.emit(op.outputs[0], c.node("ReduceMax", [c.value(op.inputs[0], "nhwc")], axes=axes, keepdims=keep), "nhwc")


def _unary(kind: str, **attributes: Any) -> Callable[[_Converter, Any, Any], None]:
    def convert(c: _Converter, op: Any, options: Any) -> None:
        layout = c.layout(op.inputs[0])
        inputs = [c.value(op.inputs[0], layout)]
        if kind == "Clip":
            inputs += [c.const(np.float32(attributes["low"])), c.const(np.float32(attributes["high"]))]
        c.emit(op.outputs[0], c.node(kind, inputs), layout)

    return convert


def _quantize(c: _Converter, op: Any, options: Any) -> None:
    # float → quantised, or a requantisation: either way the float value is quantised with the output's parameters.
    layout = c.layout(op.inputs[0])
    c.emit(op.outputs[0], c.node("Identity", [c.value(op.inputs[0], layout)]), layout)


def _dequantize(c: _Converter, op: Any, options: Any) -> None:
    layout = c.layout(op.inputs[0])
    if op.inputs[0] not in c.values:  # float16 or int8 weights stored for a float model
        value = c.constant(op.inputs[0])
        layout = "nhwc"
    else:
        value = c.value(op.inputs[0], layout)
    c.emit(op.outputs[0], c.node("Identity", [value]), layout)


# TFLite builtin operator → its conversion.
OPERATORS: dict[str, Callable[[_Converter, Any, Any], None]] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": lambda c, op, options: _conv(c, op, options, depthwise=True),
    "AVERAGE_POOL_2D": lambda c, op, options: _pool(c, op, options, "AveragePool"),
    "MAX_POOL_2D": lambda c, op, options: _pool(c, op, options, "MaxPool"),
    "ADD": lambda c, op, options: _binary(c, op, options, "Add"),
    "SUB": lambda c, op, options: _binary(c, op, options, "Sub"),
    "MUL": lambda c, op, options: _binary(c, op, options, "Mul"),
    "MEAN": _mean,
    "RESHAPE": _reshape,
    "SQUEEZE": _squeeze,
    "FULLY_CONNECTED": _fully_connected,
    "SOFTMAX": _softmax,
    "PAD": _pad,
    "CONCATENATION": _concatenation,
    "TRANSPOSE": _transpose,
    "RELU": _unary("Relu"),
    "RELU6": _unary("Clip", low=0.0, high=6.0),
    "LOGISTIC": _unary("Sigmoid"),
    "TANH": _unary("Tanh"),
    "HARD_SWISH": _unary("HardSwish"),
    "L2_NORMALIZATION": _l2_normalization,
    "REDUCE_MAX": _reduce_max,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
}


def _needed(nodes: list, outputs: set[str]) -> list:
    """The nodes the ``outputs`` depend on, in order (a classifier's unused branches are dropped)."""
    needed, keep = set(outputs), []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    return keep[::-1]


def _keep_used_initializers(proto: Any) -> None:
    used = {name for node in proto.graph.node for name in node.input}
    kept = [init for init in proto.graph.initializer if init.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
