"""Keras 3 models (torch backend) to ONNX, once: converted, checked and cached.

Keras is for defining and training networks; predictions never run through
Keras eagerly (on the torch backend that is about 15× slower than ONNX
Runtime on the same model here). :func:`export_keras` turns a Keras 3
model into an ONNX file once, checks that ONNX Runtime's scores match
Keras's within :data:`EXPORT_TOLERANCE`, and caches the file keyed by the
model file's sha256 (or, for a model in memory, by a digest of its
configuration and weights), so the next load starts at once.

>>> from imagerec.formats.keras_onnx import EXPORT_TOLERANCE
>>> EXPORT_TOLERANCE
0.0001
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ModelFileError, UsageError
from ..core.fs import atomic_path
from ..data.views import prediction_views
from ..core.keras_backend import import_keras

__all__ = ["export_keras", "EXPORT_TOLERANCE", "keras_model_digest", "average_over_views", "apply_view_tensor"]

# Largest difference allowed between ONNX Runtime's and Keras's scores on
# the export check (probabilities; float32 arithmetic in a different order).
EXPORT_TOLERANCE = 1e-4
# Bump when the exported graph's layout changes so old caches are not reused.
_EXPORT_VERSION = 1

_EXPORT_LOCK = threading.Lock()


def keras_model_digest(model: Any) -> str:
    """sha256 over a Keras model's architecture and weights (for caching an export)."""
    digest = hashlib.sha256(str(_EXPORT_VERSION).encode())
    try:
        digest.update(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    except Exception:  # a subclassed model may not serialise its config; weights still identify it
        digest.update(type(model).__qualname__.encode())
    for weight in model.weights:
        digest.update(weight.path.encode() if hasattr(weight, "path") else b"")
        value = weight.value
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def export_keras(
    model: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    embedding_layer: str | None = None,
    output_name: str = "scores",
    flip_average: bool = False,
    shift_average: int = 0,
    check: bool = True,
    opset: int = 18,
) -> Path:
    """Export a Keras 3 model (a ``keras.Model`` or a ``.keras`` file) to ONNX, once.

    The graph takes the model's own float32 NHWC input and returns
    ``output_name`` (the model's output) and, when ``embedding_layer`` names
    a layer (default: a layer named ``"embedding"`` if there is one), that
    layer's output as ``"embedding"``. ``flip_average`` averages the scores
    of each image and its mirror image (test-time augmentation);
    ``shift_average`` also averages copies shifted by that many pixels, as
    :func:`imagerec.data.prediction_views` lays out.

    Where it goes: ``path`` if given; else in imagerec's cache folder
    (``onnx/`` beside the zoo's ``models/``), never beside the user's file:
    for a ``.keras`` file as ``<digest of its path>.<sha256[:16]>.onnx``
    (a changed file replaces its earlier export), for a model in memory
    keyed by :func:`keras_model_digest`. An existing export with the same
    key is reused without importing Keras's exporter. With ``check`` the export
    is verified: ONNX Runtime's outputs must match Keras's within
    :data:`EXPORT_TOLERANCE` on a fixed random batch, or ``ModelFileError``.
    """
    from .. import zoo

    source_file = None
    if isinstance(model, (str, os.PathLike)):
        source_file = Path(model)
        if not source_file.is_file():
            raise ModelFileError(f"{source_file}: no such model file", path=str(source_file))
        key = zoo.sha256_file(source_file)
    else:
        key = keras_model_digest(model)
    recipe = f"{key}:{embedding_layer}:{output_name}:{int(flip_average)}:{opset}:{_EXPORT_VERSION}"
    if shift_average:  # only then, so earlier exports keep their names
        recipe += f":shift{int(shift_average)}"
    stamp = hashlib.sha256(recipe.encode()).hexdigest()
    cache = zoo.cache_dir().parent / "onnx"
    if path is not None:
        dest = Path(path)
    elif source_file is not None:
        dest = cache / f"{_path_key(source_file)}.{stamp[:16]}.onnx"
    else:
        dest = cache / f"{stamp[:32]}.onnx"
    with _EXPORT_LOCK:
        if dest.is_file() and _export_stamp(dest) == stamp:
            return dest
        if source_file is not None:
            from .keras import load_keras_model

            model = load_keras_model(source_file)
        dest.parent.mkdir(parents=True, exist_ok=True)
        views = prediction_views(flip_average, shift_average)
        _export(model, dest, stamp, embedding_layer, output_name, views, check, opset)
        if source_file is not None and path is None:
            _remove_stale_exports(cache, _path_key(source_file), keep=dest)
            # Earlier versions cached beside the model file: those copies are never read again.
            _remove_stale_exports(source_file.parent, re.escape(source_file.stem), keep=None)
    return dest


def _path_key(source: Path) -> str:
    """The cache name of a model file's exports: a digest of its absolute path."""
    return hashlib.sha256(os.fspath(source.resolve()).encode()).hexdigest()[:16]


def _remove_stale_exports(folder: Path, prefix: str, keep: Path | None) -> None:
    """Delete imagerec's exports named ``<prefix>.<16 hex>.onnx`` in ``folder``, except ``keep``."""
    pattern = re.compile(prefix + r"\.[0-9a-f]{16}\.onnx")
    for candidate in folder.glob("*.onnx"):
        if candidate != keep and pattern.fullmatch(candidate.name) and _export_stamp(candidate) is not None:
            try:
                candidate.unlink(missing_ok=True)
            except OSError:  # a read-only folder: leaving it costs only disk space
                pass


def _export_stamp(path: Path) -> str | None:
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return {p.key: p.value for p in proto.metadata_props}.get("imagerec_export")
    except Exception:
        return None


def _export(model, dest: Path, stamp: str, embedding_layer, output_name, views, check, opset) -> None:
    import onnx
    import torch

    module, names, height, width = _export_module(model, embedding_layer, output_name, views)
    sample = torch.from_numpy(np.random.default_rng(0).uniform(0, 1, (2, height, width, 3)).astype(np.float32))
    try:
        with atomic_path(dest) as tmp:
            with warnings.catch_warnings(), torch.no_grad(), _layer_norm_from_traced_shapes(opset):
                warnings.simplefilter("ignore")  # tracer chatter about Python ints in Keras's shape code
                torch.onnx.export(
                    module,
                    (sample,),
                    str(tmp),
                    input_names=["images"],
                    output_names=names,
                    dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in names}},
                    opset_version=opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
            proto = onnx.load(str(tmp))
            entry = proto.metadata_props.add()
            entry.key, entry.value = "imagerec_export", stamp
            onnx.save(proto, str(tmp))
            if check:
                _check_export(module, tmp, names, sample)
    except ModelFileError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"cannot export the Keras model to ONNX ({first})", path=str(dest)) from exc


@contextlib.contextmanager
def _layer_norm_from_traced_shapes(opset: int):
    """Export ``aten::layer_norm`` whose ``normalized_shape`` Keras took from the traced input's shape.

    Keras's LayerNormalization (ConvNeXt) calls ``F.layer_norm(x, x.shape[-1:], ...)``; traced, that shape
    is computed, and torch's own symbolic refuses a computed ``normalized_shape``. Only its length matters
    (the normalised axes are the last ones), so the op becomes ONNX ``LayerNormalization`` on those axes.
    """
    import torch
    from torch.onnx import symbolic_helper

    def layer_norm(g, values, normalized_shape, weight, bias, eps, cudnn_enable):
        node = normalized_shape.node()
        if node.kind() == "prim::ListConstruct":
            count = len(list(node.inputs()))
        else:
            count = len(symbolic_helper._maybe_get_const(normalized_shape, "is"))  # noqa: SLF001 (torch's helper)
        if symbolic_helper._is_none(weight):  # noqa: SLF001
            raise ModelFileError("cannot export a layer normalisation without a scale to ONNX")
        inputs = [values, weight] + ([] if symbolic_helper._is_none(bias) else [bias])  # noqa: SLF001
        return g.op("LayerNormalization", *inputs, axis_i=-count, epsilon_f=symbolic_helper._parse_arg(eps, "f"))  # noqa: SLF001

    if opset < 17:  # ONNX LayerNormalization is opset 17
        yield
        return
    torch.onnx.register_custom_op_symbolic("aten::layer_norm", layer_norm, opset)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::layer_norm", opset)


def _export_module(model, embedding_layer, output_name, views):
    keras = import_keras()
    import torch

    if not model.inputs and not getattr(model, "built", False):
        raise UsageError("the Keras model has no known input shape; build or call it once before exporting")
    shape = tuple(model.inputs[0].shape) if model.inputs else tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int) or not isinstance(shape[2], int):
        raise UsageError(f"expected a model taking fixed-size N×H×W×3 images, got input shape {shape}")
    if embedding_layer is None and any(layer.name == "embedding" for layer in model.layers):
        embedding_layer = "embedding"
    graph = model
    names = [output_name]
    if embedding_layer is not None:
        try:
            layer = model.get_layer(embedding_layer)
        except ValueError as exc:
            raise UsageError(f"the model has no layer named {embedding_layer!r}") from exc
        graph = keras.Model(model.inputs, [model.outputs[0], layer.output])
        names.append("embedding")

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.graph = graph

        def forward(self, images):
            return average_over_views(self.graph, images, views)

    module = Exported()
    module.eval()
    return module, names, shape[1], shape[2]


def average_over_views(network, images, views):
    """The weighted mean of ``network``'s outputs (one tensor, or each of several) over test-time ``views``.

    >>> import torch
    >>> from imagerec.data import prediction_views
    >>> double = lambda x, training=False: x * 2
    >>> float(average_over_views(double, torch.ones(1, 4, 4, 3), prediction_views(True, 1)).mean())
    2.0
    """
    total = None
    for view in views:
        outputs = network(apply_view_tensor(images, view), training=False)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        weighted = [out if view.weight == 1 else out * view.weight for out in outputs]
        total = weighted if total is None else [a + b for a, b in zip(total, weighted)]
    return tuple(total) if len(total) > 1 else total[0]


def apply_view_tensor(images, view):
    """:func:`imagerec.data.apply_view` on an NHWC float tensor, in operations ONNX and TFLite converters translate.

    >>> import torch
    >>> from imagerec.data import PredictionView, apply_view
    >>> x = torch.arange(9.0).reshape(1, 3, 3, 1)
    >>> view = PredictionView(-1, -1, True, 1.0)
    >>> bool((apply_view_tensor(x, view).numpy() == apply_view(x.numpy(), view)).all())
    True
    """
    import torch

    out = images
    if view.dy or view.dx:
        pad = max(abs(view.dy), abs(view.dx))
        height, width = images.shape[1], images.shape[2]
        padded = torch.nn.functional.pad(images.permute(0, 3, 1, 2), (pad, pad, pad, pad), mode="reflect")
        out = padded[:, :, pad + view.dy:pad + view.dy + height, pad + view.dx:pad + view.dx + width].permute(0, 2, 3, 1)
    if view.mirrored:
        out = torch.flip(out, dims=[2])
    return out


def _check_export(module, path: Path, names: list[str], sample) -> None:
    import onnxruntime as ort
    import torch

    with torch.no_grad():
        expected = module(sample)
    expected = [e.detach().cpu().numpy() for e in (expected if isinstance(expected, tuple) else (expected,))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(names, {"images": sample.numpy()})
    for name, want, have in zip(names, expected, got):
        scale = max(1.0, float(np.abs(want).max()))  # embeddings may be large; compare relatively
        error = float(np.abs(want - have).max()) / scale
        if not error <= EXPORT_TOLERANCE:
            raise ModelFileError(
                f"the ONNX export's {name!r} differs from Keras by {error:.2e} (tolerance {EXPORT_TOLERANCE:.0e}); "
                "the model uses an operation the exporter does not translate faithfully",
                path=str(path),
            )
