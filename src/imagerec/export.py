"""Export a trained or learned recognizer as one standalone model file, checked.

What can be exported here, and how:

=====================================  ===============================================  =========================
source                                 ``onnx``                                         ``tflite``
=====================================  ===============================================  =========================
``.keras`` (trained with imagerec)     one graph: uint8 NHWC images → the model's       the same graph, converted by
                                       normalisation → network → ``scores``             litert-torch (``imagerec[tflite]``)
``.imagerec`` / learned recognizer     one graph: uint8 NHWC images → the int8         one graph: the int8 backbone
on a zoo (int8 TFLite) backbone        backbone (QDQ, via tflite2onnx) → the head       + the head (+ ``confidence``)
learned on a Keras-application         one graph: uint8 images → normalisation →       the ``keras`` export's model,
backbone (``keras:MobileNetV2``...)    the backbone's ONNX export → the head            converted by litert-torch
=====================================  ===============================================  =========================

``keras`` is offered for recognizers learned on a Keras-application backbone:
one Keras model (normalisation as a fixed 1×1 convolution → the application
→ L2 normalisation → the head's Dense layers → softmax) that takes raw 0–255
pixels, saved with imagerec's metadata so ``imagerec.load`` reads it back. A
``.keras`` model already is one, and an int8 TFLite backbone has no Keras
equivalent.

For a zoo backbone the ONNX graph is the backbone converted by
``tflite2onnx`` (a QDQ graph ONNX Runtime runs with the same integer
arithmetic: identical scores on the shared photos) with the head added as
ONNX nodes.

Every export is checked before it is kept: the exported file is run on
sample images (``samples``; without them, fixed synthetic images) and its
scores must match the original's — the Keras model itself, or the learned
recognizer — within ``tolerance`` (default :data:`TOLERANCE`, the largest
absolute difference of any class probability). A file that fails the check
is deleted and :class:`~imagerec.core.errors.ModelFileError` says by how much.

>>> import imagerec, tempfile, os
>>> shots = "../shared/photos/few-shot"
>>> model = imagerec.learn({"cat": [f"{shots}/cat_train_0.bmp"], "dog": [f"{shots}/dog_train_0.bmp"]},
...                        head="imprint", threshold=None, cache=False)
>>> result = export(model, "tflite", os.path.join(tempfile.mkdtemp(), "pets.tflite"))
>>> result.check.ok, result.check.max_abs_diff < TOLERANCE
(True, True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .core.errors import ModelFileError, UsageError
from .core.images import ImageSource, load_image, stack
from .core.preprocessing import Preprocessing
from .core.keras_backend import import_keras

__all__ = ["export", "ExportResult", "ExportCheck", "FORMATS", "TOLERANCE", "synthetic_samples"]

FORMATS = ("onnx", "tflite", "keras")
# Largest allowed difference of any class probability between the exported
# file and the original on the sample images.
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportCheck:
    """How the exported file compared with the original on sample images."""

    samples: int
    sample_source: str  # "given" or "synthetic"
    max_abs_diff: float
    top1_agree: int
    tolerance: float
    confidence_max_abs_diff: float | None = None

    @property
    def ok(self) -> bool:
        within = self.max_abs_diff <= self.tolerance
        if self.confidence_max_abs_diff is not None:
            within = within and self.confidence_max_abs_diff <= self.tolerance
        return bool(within)


@dataclass(frozen=True)
class ExportResult:
    """The exported file, its format and its check."""

    path: Path
    format: str
    source: str
    labels_path: Path | None
    check: ExportCheck
    inputs: str
    outputs: tuple[str, ...]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        data["labels_path"] = str(self.labels_path) if self.labels_path else None
        data["check"] = {**asdict(self.check), "ok": self.check.ok}
        data["outputs"] = list(self.outputs)
        return data


def synthetic_samples(size: tuple[int, int] = (224, 224), count: int = 8) -> list[np.ndarray]:
    """Fixed, varied test pictures (noise, gradients, stripes) for when no photos are given.

    >>> [image.shape for image in synthetic_samples((4, 6), 2)]
    [(4, 6, 3), (4, 6, 3)]
    """
    rng = np.random.default_rng(1234)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    images = []
    for index in range(count):
        kind = index % 4
        if kind == 0:
            image = rng.integers(0, 256, (height, width, 3))
        elif kind == 1:
            image = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1), (xx + yy) % 256], axis=2)
        elif kind == 2:
            period = 4 + index
            image = np.where(((xx // period + yy // period) % 2)[..., None] == 1, rng.integers(0, 256, 3), rng.integers(0, 256, 3))
        else:
            image = np.clip(rng.normal(128, 60, (height // 8 + 1, width // 8 + 1, 3)), 0, 255).repeat(8, 0).repeat(8, 1)[:height, :width]
        images.append(np.ascontiguousarray(image, dtype=np.uint8))
    return images


def export(
    model: Any,
    format: str,
    output: str | os.PathLike[str] | None = None,
    *,
    samples: Sequence[ImageSource] | None = None,
    tolerance: float = TOLERANCE,
) -> ExportResult:
    """Export ``model`` (a ``.keras`` / ``.imagerec`` path or a learned Recognizer) as ``format``.

    ``output`` defaults to the source file's name with the new suffix (in
    the current folder for a recognizer in memory). Class names are also
    written beside it as ``<name>.labels.txt``, one a line.
    """
    if format not in FORMATS:
        raise UsageError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    source, kind = _open_source(model)
    if kind == "learned" and source.metadata["backbone"].get("kind") == "pooled":
        # Two networks and a mirrored copy are not one graph the converters take.
        raise UsageError(
            f"a recognizer learned on the pooled backbone {source.metadata['backbone'].get('name')!r} cannot be "
            "exported; learn it on mobilenet_v2 or a keras: backbone to export it"
        )
    named = Path(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else source
    if format == "keras":
        if kind == "learned" and source.metadata["backbone"].get("kind") == "keras":
            return _learned_to_keras(source, _destination(output, named, ".keras"), samples, tolerance)
        raise UsageError(
            "export to keras is for recognizers learned on a Keras backbone (imagerec learn --backbone "
            "keras:MobileNetV2); a .keras model already is a Keras file, and an int8 TFLite backbone has no "
            "Keras equivalent: use --format onnx or --format tflite"
        )
    if kind == "keras":
        if format == "tflite":
            return _keras_to_tflite(Path(source), _destination(output, source, ".tflite"), samples, tolerance)
        return _keras_to_onnx(Path(source), _destination(output, source, ".onnx"), samples, tolerance)
    if format == "onnx":
        return _learned_to_onnx(source, _destination(output, named, ".onnx"), samples, tolerance)
    return _learned_to_tflite(source, _destination(output, named, ".tflite"), samples, tolerance)


# -- sources ---------------------------------------------------------------------------


def _open_source(model: Any) -> tuple[Any, str]:
    from .recognizer import Recognizer

    if isinstance(model, Recognizer):
        if getattr(model, "head", None) is None or not model.metadata.get("backbone"):
            raise UsageError(
                f"{model.name!r} is not a learned recognizer; export takes a .keras file or a recognizer made "
                "by imagerec.learn (or its .imagerec file)"
            )
        return model, "learned"
    path = Path(os.fspath(model))
    suffix = path.suffix.lower()
    if suffix == ".keras":
        if not path.is_file():
            raise ModelFileError(f"{path}: no such model file", path=str(path))
        return path, "keras"
    if suffix == ".imagerec":
        import imagerec

        return imagerec.load(path), "learned"
    raise UsageError(
        f"{path}: cannot export this model; expected a .keras file (trained) or a .imagerec file (learned)"
    )


def _describe(source: Any) -> str:
    return str(source) if isinstance(source, Path) else repr(getattr(source, "name", "model"))


def _destination(output, source: Any, suffix: str) -> Path:
    if output is not None:
        dest = Path(output)
        if dest.suffix.lower() != suffix:
            raise UsageError(f"{dest}: the output of a {suffix[1:]} export must end in {suffix}")
        return dest
    if isinstance(source, Path):
        return source.with_suffix(suffix)
    return Path(f"{source.name}{suffix}")


@contextlib.contextmanager
def _scratch_beside(dest: Path):
    """A temporary file in ``dest``'s folder (so the final rename is atomic), removed unless renamed into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.stem}-", suffix=dest.suffix.lower(), dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _sample_arrays(samples, preprocessing: Preprocessing) -> tuple[np.ndarray, str]:
    if samples:
        return stack([load_image(s, preprocessing) for s in samples]), "given"
    return stack([load_image(a, preprocessing) for a in synthetic_samples(preprocessing.size)]), "synthetic"


def _finish(tmp: Path, dest: Path, labels: Sequence[str], check: ExportCheck, what: str) -> Path:
    if not check.ok:
        tmp.unlink(missing_ok=True)
        extra = (
            f", confidence by {check.confidence_max_abs_diff:.2e}" if check.confidence_max_abs_diff is not None else ""
        )
        raise ModelFileError(
            f"{dest}: the exported {what} differs from the original by {check.max_abs_diff:.2e} in probability"
            f"{extra} (tolerance {check.tolerance:.0e}) on {check.samples} sample images; not written",
            path=str(dest),
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)
    labels_path = dest.with_suffix(".labels.txt")
    labels_path.write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
    return labels_path


def _compare(expected: np.ndarray, got: np.ndarray, samples: int, source: str, tolerance: float, confidence=None) -> ExportCheck:
    return ExportCheck(
        samples=samples,
        sample_source=source,
        max_abs_diff=float(np.abs(expected - got).max()),
        top1_agree=int((expected.argmax(1) == got.argmax(1)).sum()),
        tolerance=tolerance,
        confidence_max_abs_diff=confidence,
    )


# -- Keras -> ONNX ---------------------------------------------------------------------


def _trained_keras(path: Path) -> tuple[Any, Preprocessing, dict, list[str]]:
    """A trained ``.keras`` file's model, preprocessing, test-time averaging (``{"flip_average", "shift_average"}``) and class names."""
    from .formats.keras import load_keras_model, read_metadata

    metadata = read_metadata(path) or {}
    model = load_keras_model(path)
    shape = tuple(model.inputs[0].shape)
    preprocessing = (
        Preprocessing.from_dict(metadata["preprocessing"])
        if metadata.get("preprocessing")
        else Preprocessing(size=(int(shape[1]), int(shape[2])), normalization="unit")
    )
    tta = {"flip_average": bool(metadata.get("flip_average", False)),
           "shift_average": int(metadata.get("shift_average", 0))}
    classes = metadata.get("classes") or [f"class_{i}" for i in range(int(model.outputs[0].shape[-1]))]
    return model, preprocessing, tta, list(classes)


def _keras_to_onnx(path: Path, dest: Path, samples, tolerance: float) -> ExportResult:
    import onnx

    from .backends.onnx import OnnxBackend
    from .formats.keras_onnx import export_keras
    from .core.preprocessing import normalize

    model, preprocessing, tta, classes = _trained_keras(path)
    with tempfile.TemporaryDirectory(prefix="imagerec-export-") as folder:
        float_graph = export_keras(model, Path(folder) / "float.onnx", **tta)
        proto = onnx.load(str(float_graph))
    proto = _with_uint8_input(proto, preprocessing.normalization)
    _set_onnx_metadata(proto, _trained_info(path, preprocessing, tta, classes, "N"))
    with _scratch_beside(dest) as tmp:
        onnx.save(proto, str(tmp))
        batch, source = _sample_arrays(samples, preprocessing)
        expected = _keras_scores(model, normalize(batch, preprocessing.normalization), _views(tta))
        got = OnnxBackend(tmp, normalization="uint8", num_threads=1).run(batch, ("scores",))["scores"]
        check = _compare(expected, got, len(batch), source, tolerance)
        labels_path = _finish(tmp, dest, classes, check, "ONNX model")
    return ExportResult(dest, "onnx", str(path), labels_path, check, "image: uint8 N×H×W×3", ("scores",))


def _trained_info(path: Path, preprocessing: Preprocessing, tta: dict, classes, batch: str) -> dict:
    """What an exported trained network's file says about itself (its ``imagerec`` metadata)."""
    return {
        "labels": list(classes),
        "preprocessing": preprocessing.to_dict(),
        "outputs": ["scores"],
        "input": f"image: uint8 {batch}×H×W×3 RGB, resized as 'preprocessing' says; normalisation is inside the graph",
        **tta,
        "source": path.name,
    }


# -- Keras -> TFLite (litert-torch) ------------------------------------------------------


def _keras_to_tflite(path: Path, dest: Path, samples, tolerance: float) -> ExportResult:
    """One TFLite graph: uint8 1×H×W×3 → normalisation → the network (→ test-time average) → ``scores``."""
    keras = import_keras()
    from .backends.litert import LiteRTBackend
    from .core.preprocessing import normalize

    model, preprocessing, tta, classes = _trained_keras(path)
    inputs = keras.Input((*preprocessing.size, 3), name="image")
    network = keras.Model(inputs, model(_keras_normalization(keras, preprocessing.normalization)(inputs)))
    with _scratch_beside(dest) as tmp:
        _convert_to_tflite(network, preprocessing.size, _views(tta), tmp, str(path))
        tmp.write_bytes(_with_tflite_info(tmp.read_bytes(), _trained_info(path, preprocessing, tta, classes, "1")))
        batch, source = _sample_arrays(samples, preprocessing)
        expected = _keras_scores(model, normalize(batch, preprocessing.normalization), _views(tta))
        got = LiteRTBackend(tmp, num_threads=1).run(batch, ("scores",))["scores"]
        check = _compare(expected, got, len(batch), source, tolerance)
        labels_path = _finish(tmp, dest, classes, check, "TFLite model")
    return ExportResult(dest, "tflite", str(path), labels_path, check, "image: uint8 1×H×W×3", ("scores",))


def _convert_to_tflite(network, size: tuple[int, int], views, dest: Path, what: str) -> None:
    """Write ``network`` (a Keras model on 0–255 float pixels) as a TFLite graph taking uint8 images.

    A Keras model on the torch backend is a PyTorch module, so litert-torch
    converts it directly; no TensorFlow is involved.
    """
    try:
        import litert_torch
    except ImportError as exc:
        raise UsageError(
            f"{what}: exporting a Keras network to tflite needs litert-torch; "
            "install it with pip install 'imagerec[tflite]' (or use --format onnx)"
        ) from exc
    import torch

    from .formats.keras_onnx import average_over_views

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
            edge.export(str(dest))
    except Exception as exc:  # the converter's errors share no base class
        raise ModelFileError(f"{what}: litert-torch could not convert the model ({exc})", path=what) from exc


def _views(tta: dict):
    from .data.views import prediction_views

    return prediction_views(tta["flip_average"], tta["shift_average"])


_NO_VIEWS = _views({"flip_average": False, "shift_average": 0})  # the image as it is, weight 1


def _keras_scores(model, x: np.ndarray, views) -> np.ndarray:
    """What the exported graph must reproduce: the weighted mean of the model's scores over ``views``."""
    keras = import_keras()
    from .data.views import apply_view

    scores = sum(view.weight * keras.ops.convert_to_numpy(model(apply_view(x, view), training=False)) for view in views)
    return np.asarray(scores, np.float32).reshape(len(x), -1)


def _with_uint8_input(proto, normalization: str):
    """Put the normalisation in front of the graph so it takes uint8 images."""
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    initializer_names = {init.name for init in graph.initializer}
    real_inputs = [value for value in graph.input if value.name not in initializer_names]
    if len(real_inputs) != 1:
        raise ModelFileError(f"expected an ONNX graph with one image input, got {len(real_inputs)}")
    old = real_inputs[0]
    dims = [d.dim_param or d.dim_value for d in old.type.tensor_type.shape.dim]
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, dims)
    nodes = [helper.make_node("Cast", ["image"], ["image_float"], to=TensorProto.FLOAT, name="imagerec_cast")]
    constants = []

    def const(name: str, value) -> str:
        constants.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    current = "image_float"
    steps: list[tuple[str, str]] = []
    if normalization == "unit":
        steps = [("Mul", const("imagerec_scale", 1 / 255))]
    elif normalization == "tf":
        steps = [("Mul", const("imagerec_scale", 1 / 127.5)), ("Sub", const("imagerec_one", 1.0))]
    elif normalization == "torch":
        steps = [
            ("Mul", const("imagerec_scale", 1 / 255)),
            ("Sub", const("imagerec_mean", [0.485, 0.456, 0.406])),
            ("Div", const("imagerec_std", [0.229, 0.224, 0.225])),
        ]
    elif normalization == "caffe":
        constants.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), "imagerec_bgr"))
        nodes.append(helper.make_node("Gather", [current, "imagerec_bgr"], ["image_bgr"], axis=3, name="imagerec_bgr"))
        current = "image_bgr"
        steps = [("Sub", const("imagerec_mean", [103.939, 116.779, 123.68]))]
    elif normalization != "uint8":
        raise UsageError(f"cannot put normalisation {normalization!r} into an ONNX graph")
    for position, (op, operand) in enumerate(steps):
        result = f"image_norm_{position}"
        nodes.append(helper.make_node(op, [current, operand], [result], name=f"imagerec_{op.lower()}_{position}"))
        current = result
    nodes.append(helper.make_node("Identity", [current], [old.name], name="imagerec_to_network"))
    graph.input.remove(old)
    graph.input.insert(0, image)
    graph.initializer.extend(constants)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    return proto


def _set_onnx_metadata(proto, info: dict) -> None:
    entry = proto.metadata_props.add()
    entry.key, entry.value = "imagerec", json.dumps(info)




# -- learned recognizer -> TFLite ----------------------------------------------------------


def _zoo_backbone(recognizer):
    """The backbone's model file and zoo spec, checked to be the one the head was learned on."""
    from . import zoo

    backbone = recognizer.metadata["backbone"]
    if backbone.get("kind", "zoo") != "zoo":
        raise UsageError(
            f"{recognizer.name!r} has a Keras backbone ({backbone.get('name')}): it exports to onnx, not tflite"
        )
    spec = zoo.get(backbone["name"])
    model_path = zoo.fetch(spec.model)
    if zoo.sha256_file(model_path) != backbone["sha256"]:
        raise ModelFileError(f"{model_path}: not the backbone the head was learned on (sha256 differs)", path=str(model_path))
    return model_path, spec


def _learned_info(recognizer, thresholded: bool, batch: str) -> dict:
    return {
        "labels": list(recognizer.labels),
        "preprocessing": recognizer.preprocessing.to_dict(),
        "threshold": recognizer.threshold,
        "head": recognizer.head.kind,
        "backbone": recognizer.metadata["backbone"]["name"],
        "outputs": ["scores", "confidence"] if thresholded else ["scores"],
        "input": f"uint8 {batch}×H×W×3 RGB, resized as 'preprocessing' says",
    }


def _learned_reference(recognizer, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    embeddings = recognizer.backend.run(batch, ("embedding",))["embedding"]
    head = recognizer.head
    return np.asarray(head.predict_proba(embeddings), np.float32), np.asarray(head.confidence(embeddings))


def _learned_keras_model(recognizer):
    """One Keras model (0–255 float pixels → normalisation → application → L2 → head → softmax)."""
    keras = import_keras()
    from .transfer.backbones.keras import backbone_digest, build_application

    backbone = recognizer.metadata["backbone"]
    options = dict(backbone.get("options") or {})
    size = tuple(int(v) for v in options["input_size"])
    recipe = dict(weights=options.get("weights"), pooling=options.get("pooling", "avg"), seed=int(options.get("seed", 0)))
    if backbone_digest(options["application"], size=size, **recipe) != backbone["sha256"]:
        raise ModelFileError(f"{options['application']}: not the weights the head was learned on (digest differs)")
    base = build_application(options["application"], input_size=size, **recipe)
    inputs = keras.Input((*size, 3), name="image")
    x = _keras_normalization(keras, recognizer.backend.normalization)(inputs)
    x = keras.layers.UnitNormalization(axis=-1, name="embedding_l2")(base(x))
    for number, (weights, bias, relu) in enumerate(_head_layers(recognizer.head)):
        layer = keras.layers.Dense(weights.shape[0], activation="relu" if relu else None, name=f"head_{number}")
        x = layer(x)
        layer.set_weights([weights.T, bias])
    return keras.Model(inputs, keras.layers.Softmax(name="scores")(x), name=recognizer.name), size


def _learned_to_keras(recognizer, dest: Path, samples, tolerance: float) -> ExportResult:
    from .formats.keras import save_model

    backbone = recognizer.metadata["backbone"]
    model, size = _learned_keras_model(recognizer)
    batch, source = _sample_arrays(samples, recognizer.preprocessing)
    expected, _ = _learned_reference(recognizer, batch)
    got = _keras_scores(model, batch.astype(np.float32), _NO_VIEWS)
    check = _compare(expected, got, len(batch), source, tolerance)
    with _scratch_beside(dest) as tmp:
        config = {"learned_from": backbone["name"], "threshold_not_included": recognizer.threshold}
        save_model(model, tmp, classes=recognizer.labels,
                   preprocessing=dataclasses.replace(recognizer.preprocessing, size=size, normalization="uint8"),
                   config=config)
        labels_path = _finish(tmp, dest, recognizer.labels, check, "Keras model")
    return ExportResult(dest, "keras", _describe(recognizer), labels_path, check, "image: float32 N×H×W×3, 0–255", ("scores",))


def _keras_normalization(keras, normalization: str):
    """The backbone's pixel normalisation as a fixed 1×1 convolution (no Lambda: safe to load)."""
    if normalization == "uint8":
        return keras.layers.Identity(name="normalization")
    kernel, bias = np.eye(3, dtype=np.float64), np.zeros(3)
    if normalization == "unit":
        kernel /= 255.0
    elif normalization == "tf":
        kernel, bias = kernel / 127.5, bias - 1.0
    elif normalization == "torch":
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        kernel, bias = np.diag(1.0 / (255.0 * std)), -mean / std
    elif normalization == "caffe":
        kernel, bias = kernel[::-1].copy(), -np.array([103.939, 116.779, 123.68])  # RGB -> BGR, minus the mean
    else:
        raise UsageError(f"cannot express normalisation {normalization!r} as a Keras layer")
    layer = keras.layers.Conv2D(3, 1, name="normalization", trainable=False)
    layer.build((None, None, None, 3))
    layer.set_weights([kernel.T.reshape(1, 1, 3, 3).astype(np.float32), bias.astype(np.float32)])
    return layer


def _run_onnx(path: Path, batch: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Run an exported graph (fixed batch of one) image by image."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rows = [session.run(list(names), {"image": image[None]}) for image in batch]
    return {name: np.concatenate([row[i].reshape(1, -1) for row in rows]) for i, name in enumerate(names)}


def _learned_to_onnx(recognizer, dest: Path, samples, tolerance: float) -> ExportResult:
    import onnx

    head = recognizer.head
    thresholded = recognizer.threshold is not None
    proto = _onnx_backbone_with_head(recognizer, _head_layers(head), thresholded and _prototypes(head))
    batch_dim = "N" if recognizer.metadata["backbone"].get("kind") == "keras" else "1"
    _set_onnx_metadata(proto, _learned_info(recognizer, thresholded, batch_dim))
    outputs = ("scores", "confidence") if thresholded else ("scores",)
    with _scratch_beside(dest) as tmp:
        onnx.save(proto, str(tmp))
        batch, source = _sample_arrays(samples, recognizer.preprocessing)
        expected, confidence = _learned_reference(recognizer, batch)
        got = _run_onnx(tmp, batch, outputs)
        confidence_diff = float(np.abs(confidence - got["confidence"][:, 0]).max()) if thresholded else None
        check = _compare(expected, got["scores"], len(batch), source, tolerance, confidence_diff)
        labels_path = _finish(tmp, dest, recognizer.labels, check, "ONNX model")
    return ExportResult(dest, "onnx", _describe(recognizer), labels_path, check, f"image: uint8 {batch_dim}×H×W×3", outputs)


def _onnx_backbone_with_head(recognizer, layers, prototypes):
    """The backbone as an ONNX graph taking uint8 NHWC images, with the head on top."""
    kind = recognizer.metadata["backbone"].get("kind", "zoo")
    if kind == "keras":
        proto, embedding = _keras_backbone_onnx(recognizer.backend)
    else:
        model_path, spec = _zoo_backbone(recognizer)
        proto, embedding = _tflite_backbone_onnx(model_path, spec.embedding_tensor)
    return _append_onnx_head(proto, embedding, layers, prototypes)


def _keras_backbone_onnx(backend):
    """A Keras-application backbone: already ONNX (exported once, cached); add the normalisation."""
    import onnx

    path = getattr(backend, "path", None)
    if path is None or "embedding" not in backend.outputs:
        raise UsageError("this learned recognizer's Keras backbone has no ONNX file with an 'embedding' output")
    proto = _with_uint8_input(onnx.load(str(path)), backend.normalization)
    return proto, "embedding"


def _tflite_backbone_onnx(model_path: Path, embedding_tensor: str):
    """An int8 TFLite backbone converted by tflite2onnx (a QDQ graph), taking uint8 NHWC images."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    try:
        import tflite2onnx
    except ImportError as exc:
        raise UsageError("exporting a learned recognizer to onnx needs tflite2onnx: pip install tflite2onnx") from exc
    from ai_edge_litert.interpreter import Interpreter

    scale, zero_point = Interpreter(model_path=str(model_path)).get_input_details()[0]["quantization"]
    with tempfile.TemporaryDirectory(prefix="imagerec-export-") as folder:
        converted = Path(folder) / "backbone.onnx"
        try:
            tflite2onnx.convert(str(model_path), str(converted))
        except Exception as exc:  # the converter signals unsupported graphs in many ways
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelFileError(f"{model_path}: cannot convert the backbone to ONNX ({first})", path=str(model_path)) from exc
        proto = onnx.load(str(converted))
    graph = proto.graph
    produced = {output for existing in graph.node for output in existing.output}
    embedding = next(
        (name for name in (f"TFLITE2ONNX_Quant_{embedding_tensor}_dequantized", embedding_tensor) if name in produced), None
    )
    if embedding is None:
        raise ModelFileError(f"{model_path}: the converted backbone has no tensor {embedding_tensor!r}", path=str(model_path))
    old_input = graph.input[0]
    batch, _, height, width = [d.dim_value for d in old_input.type.tensor_type.shape.dim]
    constants = [
        numpy_helper.from_array(np.asarray(zero_point, np.float32), "imagerec/zero_point"),
        numpy_helper.from_array(np.asarray(scale, np.float32), "imagerec/scale"),
    ]
    # uint8 NHWC pixels -> the float NCHW values the quantised input stands for.
    nodes = [
        helper.make_node("Cast", ["image"], ["imagerec/image_float"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["imagerec/image_float", "imagerec/zero_point"], ["imagerec/image_centred"]),
        helper.make_node("Mul", ["imagerec/image_centred", "imagerec/scale"], ["imagerec/image_scaled"]),
        helper.make_node("Transpose", ["imagerec/image_scaled"], [old_input.name], perm=[0, 3, 1, 2]),
    ]
    graph.input.remove(old_input)
    graph.input.insert(0, helper.make_tensor_value_info("image", TensorProto.UINT8, [batch, height, width, 3]))
    graph.initializer.extend(constants)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    return proto, embedding


def _append_onnx_head(proto, embedding: str, layers, prototypes):
    """Add L2 normalisation, the head's layers, softmax ``scores`` (and ``confidence``); prune the rest."""
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

    flat = node("Reshape", [embedding, const("imagerec/flat_shape", [0, -1], np.int64)], "imagerec/embedding")
    norm = reduce("ReduceL2", flat, "imagerec/embedding_norm", 1)
    norm = node("Max", [norm, const("imagerec/epsilon", 1e-12)], "imagerec/embedding_norm_safe")
    current = normalized = node("Div", [flat, norm], "imagerec/embedding_l2")
    for number, (weights, bias, relu) in enumerate(layers):
        current = node("MatMul", [current, const(f"imagerec/head_{number}/weights", weights.T)], f"imagerec/head_{number}/matmul")
        current = node("Add", [current, const(f"imagerec/head_{number}/bias", bias)], f"imagerec/head_{number}")
        if relu:
            current = node("Relu", [current], f"imagerec/head_{number}/relu")
    node("Softmax", [current], "scores", axis=1)
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, layers[-1][0].shape[0]])]
    if prototypes:
        means, bias = prototypes
        cosine = node("MatMul", [normalized, const("imagerec/cosine/weights", means.T)], "imagerec/cosine/matmul")
        cosine = node("Add", [cosine, const("imagerec/cosine/bias", bias)], "imagerec/cosine")
        reduce("ReduceMax", cosine, "confidence", 0)
        outputs.append(helper.make_tensor_value_info("confidence", TensorProto.FLOAT, [batch]))
    kept = _needed_nodes(list(graph.node) + nodes, {o.name for o in outputs})
    del graph.output[:]
    graph.output.extend(outputs)
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(constants)
    used = {name for n in graph.node for name in n.input}
    keep_init = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep_init)
    return proto


def _needed_nodes(nodes, outputs: set[str]):
    """The nodes the ``outputs`` depend on, in their original (topological) order."""
    needed = set(outputs)
    keep = [False] * len(nodes)
    for index in range(len(nodes) - 1, -1, -1):
        if any(output in needed for output in nodes[index].output):
            keep[index] = True
            needed.update(nodes[index].input)
    return [n for n, kept in zip(nodes, keep) if kept]


def _learned_to_tflite(recognizer, dest: Path, samples, tolerance: float) -> ExportResult:
    from .backends.litert import LiteRTBackend

    if recognizer.metadata["backbone"].get("kind") == "keras":
        return _learned_keras_to_tflite(recognizer, dest, samples, tolerance)
    model_path, spec = _zoo_backbone(recognizer)
    head = recognizer.head
    thresholded = recognizer.threshold is not None
    info = _learned_info(recognizer, thresholded, "1")
    content = _append_head(model_path.read_bytes(), spec.embedding_tensor, _head_layers(head), thresholded and _prototypes(head), info)
    with _scratch_beside(dest) as tmp:
        tmp.write_bytes(content)
        batch, source = _sample_arrays(samples, recognizer.preprocessing)
        expected, confidence = _learned_reference(recognizer, batch)
        exported = LiteRTBackend(tmp, num_threads=1, extra_outputs={"confidence": "confidence"} if thresholded else None)
        got = exported.run(batch, exported.outputs)
        confidence_diff = float(np.abs(confidence - got["confidence"][:, 0]).max()) if thresholded else None
        check = _compare(expected, got["scores"], len(batch), source, tolerance, confidence_diff)
        labels_path = _finish(tmp, dest, recognizer.labels, check, "TFLite model")
    outputs = ("scores", "confidence") if thresholded else ("scores",)
    return ExportResult(dest, "tflite", _describe(recognizer), labels_path, check, "image: uint8 1×H×W×3", outputs)


def _learned_keras_to_tflite(recognizer, dest: Path, samples, tolerance: float) -> ExportResult:
    """A recognizer learned on a Keras backbone: its one Keras model, converted (scores only)."""
    from .backends.litert import LiteRTBackend

    model, size = _learned_keras_model(recognizer)
    with _scratch_beside(dest) as tmp:
        _convert_to_tflite(model, size, _NO_VIEWS, tmp, repr(recognizer.name))
        # Scores only: the unknown threshold's confidence is not in this graph.
        info = {**_learned_info(recognizer, False, "1"), "threshold": None, "threshold_not_included": recognizer.threshold}
        tmp.write_bytes(_with_tflite_info(tmp.read_bytes(), info))
        batch, source = _sample_arrays(samples, recognizer.preprocessing)
        expected, _ = _learned_reference(recognizer, batch)
        got = LiteRTBackend(tmp, num_threads=1).run(batch, ("scores",))["scores"]
        check = _compare(expected, got, len(batch), source, tolerance)
        labels_path = _finish(tmp, dest, recognizer.labels, check, "TFLite model")
    return ExportResult(dest, "tflite", _describe(recognizer), labels_path, check, "image: uint8 1×H×W×3", ("scores",))


def _head_layers(head) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """The head as fully connected layers on the L2-normalised embedding: (weights, bias, relu)."""
    kind = head.kind
    if kind == "imprint":
        counts = np.asarray(head.counts_)
        # softmax(scale × cosine); a class with no example has cosine -1.
        weights = head.scale * np.asarray(head.prototypes_, np.float32)
        bias = np.where(counts > 0, 0.0, -head.scale).astype(np.float32)
        return [(weights, bias, False)]
    if kind == "logistic":
        return [(np.asarray(head.weights_, np.float32), np.asarray(head.bias_, np.float32), False)]
    if kind == "dense":
        # Fold the standardisation into the first layer: ((x - m) / s) W1 = x (W1 / s) - (m / s) W1.
        mean, scale = np.asarray(head.mean_, np.float64), np.asarray(head.scale_, np.float64)
        w1 = np.asarray(head.W1_, np.float64) / scale[:, None]
        b1 = np.asarray(head.b1_, np.float64) - (mean / scale) @ np.asarray(head.W1_, np.float64)
        return [
            (w1.T.astype(np.float32), b1.astype(np.float32), True),
            (np.asarray(head.W2_, np.float32).T, np.asarray(head.b2_, np.float32), False),
        ]
    raise UsageError(f"cannot export a {kind!r} head to TFLite")


def _prototypes(head) -> tuple[np.ndarray, np.ndarray]:
    """Class means and the bias that gives a class with no example a cosine of -1."""
    counts = np.asarray(head.class_counts_)
    return np.asarray(head.prototypes_, np.float32), np.where(counts > 0, 0.0, -1.0).astype(np.float32)


def _append_head(model: bytes, embedding_tensor: str, layers, prototypes, info: dict) -> bytes:
    """A TFLite model whose outputs are the head's ``scores`` (and ``confidence``).

    The embedding tensor is dequantised, flattened and L2-normalised, then
    the head runs as fully connected layers and a softmax; the backbone's
    own classifier, no longer needed, is dropped.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from .backends.litert import set_metadata

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

    def fully_connected(source: int, weights: np.ndarray, bias: np.ndarray, relu: bool, name: str) -> int:
        options = schema.FullyConnectedOptionsT()
        options.fusedActivationFunction = schema.ActivationFunctionType.RELU if relu else schema.ActivationFunctionType.NONE
        w = tensor(f"{name}/weights", weights.shape, data=weights.astype(np.float32))
        b = tensor(f"{name}/bias", bias.shape, data=bias.astype(np.float32))
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
    for number, (weights, bias, relu) in enumerate(layers):
        current = fully_connected(current, weights, bias, relu, f"imagerec/head_{number}")
    scores = tensor("scores", (batch, layers[-1][0].shape[0]))
    softmax_options = schema.SoftmaxOptionsT()
    softmax_options.beta = 1.0
    operator(op.SOFTMAX, [current], [scores], schema.BuiltinOptions.SoftmaxOptions, softmax_options)
    outputs = [scores]
    if prototypes:
        means, bias = prototypes
        cosine = fully_connected(normalized, means, bias, False, "imagerec/cosine")
        axis = tensor("imagerec/class_axis", (1,), schema.TensorType.INT32, np.array([1], np.int32))
        confidence = tensor("confidence", (batch,))
        reducer = schema.ReducerOptionsT()
        reducer.keepDims = False
        operator(op.REDUCE_MAX, [cosine, axis], [confidence], schema.BuiltinOptions.ReducerOptions, reducer)
        outputs.append(confidence)
    graph.outputs = outputs
    _drop_unused_operators(parsed, graph)
    parsed.signatureDefs = []  # they name the old outputs
    set_metadata(parsed, "imagerec", json.dumps(info).encode())
    builder = flatbuffers.Builder(len(model) + (1 << 20))
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _with_tflite_info(model: bytes, info: dict) -> bytes:
    """``model`` carrying ``info`` as its ``imagerec`` metadata, which :func:`imagerec.load` reads back."""
    from .backends.litert import with_metadata

    return with_metadata(model, "imagerec", json.dumps(info).encode())


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

