"""imagerec.backends.onnx: normalisation, running ONNX graphs, exporting Keras models once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagerec import zoo
from imagerec.backends import Backend
from imagerec.formats.keras_onnx import EXPORT_TOLERANCE, export_keras
from imagerec.backends.onnx import OnnxBackend
from imagerec.core.preprocessing import normalize
from imagerec.core.errors import ModelFileError, UsageError


def _mean_colour_model(path: Path, *, dtype: str = "uint8", layout: str = "nchw", batch: int | str = "N") -> Path:
    """A hand-made ONNX graph whose scores are the mean of each colour channel."""
    import onnx
    from onnx import TensorProto, helper

    elem = TensorProto.UINT8 if dtype == "uint8" else TensorProto.FLOAT
    shape = [batch, 3, 4, 4] if layout == "nchw" else [batch, 4, 4, 3]
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT)]
    axes = [2, 3] if layout == "nchw" else [1, 2]
    nodes.append(helper.make_node("ReduceMean", ["xf", "axes"], ["scores"], keepdims=0))
    graph = helper.make_graph(
        nodes,
        "mean_colour",
        [helper.make_tensor_value_info("x", elem, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 3])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [2], axes)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def batch() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 4, 4, 3)).astype(np.uint8)


@pytest.mark.parametrize(
    ("mode", "low", "high"), [("uint8", 0, 255), ("unit", 0, 1), ("tf", -1, 1), ("torch", -2.1179, 2.64), ("caffe", -123.68, 151.061)]
)
def test_normalize_ranges(mode: str, low: float, high: float) -> None:
    extremes = np.array([[[[0, 0, 0], [255, 255, 255]]]], np.uint8)
    out = normalize(extremes, mode)
    assert out.dtype == np.float32
    assert out.min() >= low - 1e-3 and out.max() <= high + 1e-3
    assert out.min() == pytest.approx(low, abs=1e-3) and out.max() == pytest.approx(high, abs=1e-3)


def test_normalize_torch_uses_imagenet_statistics() -> None:
    pixel = np.array([[[[124, 116, 104]]]], np.uint8)  # ≈ the ImageNet mean
    assert np.abs(normalize(pixel, "torch")).max() < 0.01
    assert normalize(np.array([[[[255, 0, 0]]]], np.uint8), "caffe")[0, 0, 0].tolist() == pytest.approx(
        [-103.939, -116.779, 255 - 123.68]
    )


def test_unknown_normalization_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown normalization"):
        normalize(np.zeros((1, 1, 1, 3), np.uint8), "zscore")
    with pytest.raises(UsageError):
        OnnxBackend(_mean_colour_model(tmp_path / "m.onnx"), normalization="zscore")


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_uint8_graph_gets_raw_pixels_in_either_layout(tmp_path: Path, batch: np.ndarray, layout: str) -> None:
    backend = OnnxBackend(_mean_colour_model(tmp_path / "m.onnx", layout=layout))
    assert isinstance(backend, Backend)
    assert backend.input_size == (4, 4) and backend.outputs == ("scores",)
    out = backend.run(batch)["scores"]
    np.testing.assert_allclose(out, batch.reshape(3, -1, 3).mean(axis=1), rtol=1e-6)


def test_float_graph_is_normalised_inside_the_backend(tmp_path: Path, batch: np.ndarray) -> None:
    backend = OnnxBackend(_mean_colour_model(tmp_path / "m.onnx", dtype="float"), normalization="tf")
    out = backend.run(batch)["scores"]
    np.testing.assert_allclose(out, (batch / 127.5 - 1).reshape(3, -1, 3).mean(axis=1), rtol=1e-5, atol=1e-6)


def test_fixed_batch_of_one_runs_image_by_image(tmp_path: Path, batch: np.ndarray) -> None:
    backend = OnnxBackend(_mean_colour_model(tmp_path / "m.onnx", batch=1))
    assert backend.run(batch)["scores"].shape == (3, 3)


def test_bad_inputs_and_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such model file"):
        OnnxBackend(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelFileError, match="not a usable ONNX model"):
        OnnxBackend(junk)
    backend = OnnxBackend(_mean_colour_model(tmp_path / "m.onnx"))
    with pytest.raises(UsageError, match="takes \\(4, 4\\) images"):
        backend.run(np.zeros((1, 5, 5, 3), np.uint8))
    with pytest.raises(UsageError, match="uint8 batch"):
        backend.run(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(UsageError, match="no embedding output"):
        backend.run(np.zeros((1, 4, 4, 3), np.uint8), ("embedding",))


@pytest.fixture(scope="module")
def small_keras_model():
    from imagerec.architectures import fast_resnet

    return fast_resnet(input_shape=(16, 16, 3), num_classes=3, widths=(8, 16), stem=8)


def test_export_matches_keras_and_exposes_the_embedding(tmp_path: Path, small_keras_model) -> None:
    path = export_keras(small_keras_model, tmp_path / "m.onnx")
    backend = OnnxBackend(path, normalization="unit")
    assert backend.outputs == ("scores", "embedding")
    pixels = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3)).astype(np.uint8)
    out = backend.run(pixels, ("scores", "embedding"))
    expected = small_keras_model.predict(normalize(pixels, "unit"), verbose=0)
    np.testing.assert_allclose(out["scores"], expected, atol=EXPORT_TOLERANCE)
    assert out["embedding"].shape == (5, 16)


def test_export_is_cached_by_content(tmp_path: Path, small_keras_model) -> None:
    first = export_keras(small_keras_model)
    written = first.stat().st_mtime_ns, first.stat().st_ino
    assert export_keras(small_keras_model) == first  # the same model: the cached file, not written again
    assert (first.stat().st_mtime_ns, first.stat().st_ino) == written
    flipped = small_keras_model.get_layer("classifier")
    kernel = flipped.get_weights()
    flipped.set_weights([-kernel[0]])
    try:
        changed = export_keras(small_keras_model)  # changed weights: a new key, a new export
    finally:
        flipped.set_weights(kernel)
    assert changed != first and changed.is_file()


def test_flip_average_is_inside_the_graph(tmp_path: Path, small_keras_model) -> None:
    backend = OnnxBackend(export_keras(small_keras_model, tmp_path / "f.onnx", flip_average=True), normalization="unit")
    pixels = np.random.default_rng(2).integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)
    mirrored = np.ascontiguousarray(pixels[:, :, ::-1])
    np.testing.assert_allclose(backend.run(pixels)["scores"], backend.run(mirrored)["scores"], atol=1e-6)


def test_shift_average_in_the_graph_follows_the_numpy_plan(tmp_path: Path) -> None:
    from imagerec.architectures import fast_resnet
    from imagerec.data import apply_view, prediction_views

    # Large logits, so that scores differ from view to view even untrained.
    small_keras_model = fast_resnet(input_shape=(16, 16, 3), num_classes=3, widths=(8, 16), stem=8, logit_scale=30)
    path = export_keras(small_keras_model, tmp_path / "s.onnx", flip_average=True, shift_average=1)
    backend = OnnxBackend(path, normalization="unit")
    pixels = np.random.default_rng(3).integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
    expected = sum(view.weight * small_keras_model.predict(normalize(apply_view(pixels, view), "unit"), verbose=0)
                   for view in prediction_views(True, 1))
    np.testing.assert_allclose(backend.run(pixels)["scores"], expected, atol=EXPORT_TOLERANCE)
    flip_only = OnnxBackend(export_keras(small_keras_model, tmp_path / "f.onnx", flip_average=True), normalization="unit")
    assert np.abs(flip_only.run(pixels)["scores"] - expected).max() > 1e-3  # the shifted views do count


def test_export_refuses_a_model_it_cannot_check(tmp_path: Path) -> None:
    import keras

    flat = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    with pytest.raises(UsageError, match="N×H×W×3"):
        export_keras(flat, tmp_path / "x.onnx")


def test_a_changed_keras_file_replaces_its_old_export(tmp_path: Path, small_keras_model) -> None:
    from imagerec.core.preprocessing import Preprocessing
    from imagerec.formats.keras import save_model

    path = tmp_path / "m.keras"
    pre = Preprocessing(size=(16, 16), normalization="unit")
    save_model(small_keras_model, path, classes=["a", "b", "c"], preprocessing=pre)
    first = export_keras(path)
    assert first.parent == zoo.cache_dir().parent / "onnx" and first.suffix == ".onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]  # nothing written beside the user's file
    layer = small_keras_model.get_layer("classifier")
    kernel = layer.get_weights()
    layer.set_weights([kernel[0] * 2])
    try:
        save_model(small_keras_model, path, classes=["a", "b", "c"], preprocessing=pre)
    finally:
        layer.set_weights(kernel)
    second = export_keras(path)
    assert second != first and second.is_file() and not first.exists()


def test_exports_cached_beside_a_model_by_earlier_versions_are_removed(tmp_path: Path, small_keras_model) -> None:
    import shutil

    from imagerec.core.preprocessing import Preprocessing
    from imagerec.formats.keras import save_model

    path = tmp_path / "m.keras"
    save_model(small_keras_model, path, classes=["a", "b", "c"], preprocessing=Preprocessing(size=(16, 16), normalization="unit"))
    cached = export_keras(path)
    legacy = tmp_path / "m.0123456789abcdef.onnx"  # how earlier versions named their cache
    shutil.copy(cached, legacy)
    cached.unlink()
    export_keras(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
