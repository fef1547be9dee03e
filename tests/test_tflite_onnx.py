"""TFLite classifiers exported: the int8 zoo model and Teachable Machine's .tflite files to ONNX (imagerec's own
converter, int8 as QDQ) and to TFLite, each giving the source's answers when loaded back."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import imagerec
from imagerec.core.errors import ModelFileError, UsageError
from imagerec.export import export
from imagerec.formats.tflite_onnx import tflite_to_onnx

FIXTURES = Path(__file__).parent / "fixtures" / "keras2"
PHOTOS = ("cat_720p.jpg", "parrot.jpg", "grace_hopper.bmp", "hot_dog.jpg", "owl.jpg", "kite_and_cold.jpg")


@pytest.fixture(scope="module")
def photos(photos_dir: Path) -> list[str]:
    return [str(photos_dir / name) for name in PHOTOS]


def test_the_int8_zoo_model_exports_to_onnx_with_the_same_answers(models_dir, photos, tmp_path):
    import onnx

    result = export("mobilenet_v2", "onnx", tmp_path / "mobilenet_v2.onnx", samples=photos)
    # Per-tensor uint8 in QDQ form: ONNX Runtime's integer kernels compute exactly what LiteRT computes.
    assert result.check.ok and result.check.max_abs_diff == 0.0 and result.check.top1_agree == len(photos)
    proto = onnx.load(str(result.path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= {node.op_type for node in proto.graph.node}
    # The file names one class per output, its leading "background" too; imagerec drops it again.
    assert result.labels_path.read_text().splitlines()[:2] == ["background", "tench"]
    zoo_model, exported = imagerec.load("mobilenet_v2"), imagerec.load(result.path)
    assert exported.labels == zoo_model.labels and len(exported.labels) == 1000
    want, got = zoo_model.predict(photos, top_k=3), exported.predict(photos, top_k=3)
    assert [[p.label for p in a] for a in got] == [[p.label for p in a] for a in want]
    assert [a.label for a in got[:4]] == ["Egyptian cat", "macaw", "military uniform", "hotdog"]
    # TFLite's batch of one became a free batch: three photos in one run give each photo's own scores.
    np.testing.assert_allclose(exported.predict_proba(photos[:3]),
                               np.concatenate([exported.predict_proba(p) for p in photos[:3]]), atol=1e-6)


def test_the_int8_zoo_model_to_tflite_is_the_model_with_its_labels(models_dir, photos, tmp_path):
    result = export("mobilenet_v2", "tflite", tmp_path / "mine.tflite", samples=photos[:2])
    assert result.check.ok and result.check.max_abs_diff == 0.0
    assert result.path.read_bytes() == (models_dir / "mobilenet_v2_1.0_224_quant.tflite").read_bytes()
    labels = result.labels_path.read_text().splitlines()
    assert len(labels) == 1001 and labels[0] == "background"  # one line per output, as LiteRT users read them
    with_labels = imagerec.load(result.path, labels=result.labels_path)
    assert with_labels.predict(photos[0], top_k=1)[0].label == "Egyptian cat"


@pytest.mark.parametrize("name, key", [("tm_model_unquant.tflite", "tm_model_unquant"), ("tm_model.tflite", "tm_model")])
def test_teachable_machine_tflite_exports_to_onnx_with_tensorflows_scores(name, key, tmp_path):
    reference = np.load(FIXTURES / "reference.npz")
    folder = tmp_path / "download"
    folder.mkdir()
    for file in (name, "tm_labels.txt"):  # as Teachable Machine downloads them: the labels file beside
        shutil.copy(FIXTURES / file, folder / file)
    result = export(folder / name, "onnx", tmp_path / "bottles.onnx")
    assert result.check.ok and result.check.max_abs_diff <= 1e-6
    exported = imagerec.load(result.path)  # labels and Teachable Machine's preprocessing come with it
    assert exported.labels == ["Class 1", "Class 2"]
    assert (exported.preprocessing.resample, exported.preprocessing.resize) == ("lanczos", "crop")
    np.testing.assert_allclose(exported.predict_proba(reference["pixels"]), reference[key], atol=1e-5)


def test_an_imported_tflite_exports_to_onnx_and_tflite(tmp_path):
    from imagerec.importing import import_model

    reference = np.load(FIXTURES / "reference.npz")
    imported = import_model(FIXTURES / "tm_model_unquant.tflite", tmp_path / "bottles.tflite")
    as_onnx = export(imported, "onnx")
    assert as_onnx.path == tmp_path / "bottles.onnx" and as_onnx.check.ok
    np.testing.assert_allclose(imagerec.load(as_onnx.path).predict_proba(reference["pixels"]),
                               reference["tm_model_unquant"], atol=1e-5)
    with pytest.raises(UsageError, match="would overwrite the model it is exported from"):
        export(imported, "tflite", force=True)


def test_a_teachable_machine_tflite_to_tflite_carries_its_labels(tmp_path):
    reference = np.load(FIXTURES / "reference.npz")
    result = export(FIXTURES / "tm_model.tflite", "tflite", tmp_path / "anywhere.tflite")
    # Renamed and without labels.txt beside, the file still knows its classes and preprocessing.
    exported = imagerec.load(result.path)
    assert exported.labels == ["Class 1", "Class 2"] and exported.preprocessing.resample == "lanczos"
    np.testing.assert_allclose(exported.predict_proba(reference["pixels"]), reference["tm_model"], atol=1e-5)


def _with_operator_renamed(model: bytes, old: str, new: str) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    parsed = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    for code in parsed.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == getattr(schema.BuiltinOperator, old):
            code.builtinCode = code.deprecatedBuiltinCode = getattr(schema.BuiltinOperator, new)
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_an_operator_the_converter_does_not_know_is_named_in_one_line(tmp_path):
    # LOG_SOFTMAX runs in LiteRT (the model loads and predicts) but is no operator an image classifier uses.
    model = tmp_path / "odd_model.tflite"
    model.write_bytes(_with_operator_renamed((FIXTURES / "tm_model_unquant.tflite").read_bytes(), "SOFTMAX", "LOG_SOFTMAX"))
    shutil.copy(FIXTURES / "tm_labels.txt", tmp_path / "odd_labels.txt")
    assert imagerec.load(model).labels == ["Class 1", "Class 2"]
    with pytest.raises(ModelFileError, match=r"cannot convert TFLite operator LOG_SOFTMAX \(operator \d+\)") as caught:
        export(model, "onnx", tmp_path / "odd.onnx")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "odd.onnx").exists() and not (tmp_path / "odd.onnx.labels.txt").exists()


def test_the_converter_refuses_what_is_not_a_tflite_model():
    with pytest.raises(ModelFileError, match="not a TFLite model"):
        tflite_to_onnx(b"certainly not a flatbuffer", where="junk.tflite")


def test_a_learned_recognizers_tflite_export_converts_with_its_unknown_threshold(photos_dir, photos, tmp_path):
    shots = photos_dir / "few-shot"
    learned = imagerec.learn({"cat": [str(shots / "cat_train_0.bmp")],
                              "hot dog": [str(shots / "hotdog_train_0.bmp"), str(shots / "hotdog_train_1.bmp")]},
                             head="imprint", threshold=0.5, cache=False)
    as_tflite = export(learned, "tflite", tmp_path / "snacks.tflite")
    as_onnx = export(as_tflite.path, "onnx", tmp_path / "snacks.onnx", samples=photos)
    assert as_onnx.outputs == ("scores", "confidence") and as_onnx.check.confidence_max_abs_diff <= 1e-4
    exported = imagerec.load(as_onnx.path)
    assert exported.threshold == 0.5
    assert [a.label for a in exported.predict(photos, top_k=1)] == [a.label for a in learned.predict(photos, top_k=1)]


def test_an_embedding_model_has_no_scores_to_export(models_dir, tmp_path):
    with pytest.raises(UsageError, match="embedding model"):
        export("mobilenet_v1_embedder", "onnx", tmp_path / "x.onnx")


def test_the_operators_of_mobilenet_style_networks_convert_faithfully(tmp_path):
    """HARD_SWISH, a squeeze-excite MUL with LOGISTIC, PAD, MAX_POOL_2D, CONCATENATION, AVERAGE_POOL_2D,
    TRANSPOSE and SUB (tests/fixtures/make_tflite_ops_fixture.py), checked against LiteRT."""
    from imagerec.importing import import_model

    source = Path(__file__).parent / "fixtures" / "tflite_ops" / "ops_net.tflite"
    # A float model without TFLite metadata: imported with its normalisation (raw 0–255 values), then exported.
    imported = import_model(source, tmp_path / "ops.tflite", normalization="uint8", labels=list("abcde"))
    result = export(imported, "onnx", tmp_path / "ops.onnx")
    assert result.check.ok and result.check.max_abs_diff <= 1e-6
    pixels = np.random.default_rng(3).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(imagerec.load(result.path).score(pixels).probabilities,
                               imagerec.load(imported).score(pixels).probabilities, atol=1e-6)
