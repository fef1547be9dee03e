"""Export round trips: a learned recognizer to one TFLite graph and to one ONNX
graph, a trained Keras model to one ONNX graph, each checked against the
original on the shared photos; and the exported files give the original's
predictions again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import imagerec
from imagerec.core.errors import ModelFileError, UsageError
from imagerec.export import TOLERANCE, export
from imagerec.recognizer import Recognizer


@pytest.fixture(scope="module")
def sample_photos(photos_dir: Path) -> list[str]:
    return [str(p) for p in sorted(photos_dir.iterdir()) if p.suffix in (".jpg", ".bmp")]


@pytest.fixture(scope="module")
def learned(photos_dir: Path) -> Recognizer:
    shots = photos_dir / "few-shot"
    data = {
        "cat": [shots / "cat_train_0.bmp", photos_dir / "cat_720p.jpg"],
        "dog": [shots / "dog_train_0.bmp"],
        "hot dog": [shots / "hotdog_train_0.bmp", shots / "hotdog_train_1.bmp"],
    }
    return imagerec.learn({k: [str(p) for p in v] for k, v in data.items()}, head="imprint", cache=False)


def test_learned_recognizer_to_one_tflite_graph(learned, sample_photos, photos_dir, tmp_path):
    saved = learned.save(tmp_path / "snacks.imagerec")
    result = export(saved, "tflite", samples=sample_photos)
    assert result.path == tmp_path / "snacks.tflite" and result.path.is_file()
    assert result.check.ok and result.check.samples == len(sample_photos)
    assert result.check.max_abs_diff <= TOLERANCE and result.check.top1_agree == len(sample_photos)
    assert result.outputs == ("scores", "confidence")  # the learned threshold's input travels too
    assert result.labels_path.read_text().split("\n")[:3] == ["cat", "dog", "hot dog"]

    # The exported file is a plain TFLite model: imagerec (or any LiteRT user) runs it alone.
    with_labels = imagerec.load(result.path, labels=result.labels_path)
    photos = [str(photos_dir / name) for name in ("cat_1080p.jpg", "hot_dog.jpg", "pets.jpg")]
    np.testing.assert_allclose(with_labels.predict_proba(photos), learned.predict_proba(photos), atol=TOLERANCE)
    # Its imagerec metadata brings the labels, the grey frame and the unknown threshold along.
    exported = imagerec.load(result.path)
    assert exported.labels == ["cat", "dog", "hot dog"] and exported.preprocessing == learned.preprocessing
    assert learned.preprocessing.frame > 0 and exported.threshold == pytest.approx(learned.threshold)
    np.testing.assert_allclose(exported.predict_proba(photos), learned.predict_proba(photos), atol=TOLERANCE)
    untaught = [str(photos_dir / name) for name in ("cat_1080p.jpg", "hot_dog.jpg", "owl.jpg", "face.jpg")]
    expected = [answer.label for answer in learned.predict(untaught, top_k=1)]
    assert [answer.label for answer in exported.predict(untaught, top_k=1)] == expected
    assert expected[:2] == ["cat", "hot dog"] and "unknown" in expected[2:]
    # The backbone's 1001-class classifier was dropped: the file is smaller than the backbone alone.
    assert result.path.stat().st_size < (photos_dir.parent / "models" / "mobilenet_v2_1.0_224_quant.tflite").stat().st_size


def test_learned_recognizer_to_one_onnx_graph(learned, sample_photos, photos_dir, tmp_path):
    import onnx

    from imagerec.backends.onnx import OnnxBackend

    result = export(learned, "onnx", tmp_path / "snacks.onnx", samples=sample_photos)
    assert result.check.ok and result.check.top1_agree == len(sample_photos)
    assert result.outputs == ("scores", "confidence")
    proto = onnx.load(str(result.path))
    assert [i.name for i in proto.graph.input] == ["image"]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "MatMul", "Softmax"} <= {n.op_type for n in proto.graph.node}
    # imagerec's ONNX backend runs it as any other uint8 model.
    exported = Recognizer(OnnxBackend(result.path), learned.labels, learned.preprocessing)
    photos = [str(photos_dir / name) for name in ("cat_1080p.jpg", "hot_dog.jpg")]
    np.testing.assert_allclose(exported.predict_proba(photos), learned.predict_proba(photos), atol=TOLERANCE)


def test_imagerec_loads_its_own_onnx_export_with_the_unknown_threshold(learned, sample_photos, photos_dir, tmp_path):
    from typer.testing import CliRunner

    from imagerec.cli import app

    assert learned.threshold is not None
    result = export(learned, "onnx", tmp_path / "snacks.onnx", samples=sample_photos)
    loaded = imagerec.load(result.path)  # labels, preprocessing and threshold come from the file
    assert loaded.labels == learned.labels and loaded.threshold == pytest.approx(learned.threshold)
    photos = [str(photos_dir / name) for name in ("cat_1080p.jpg", "hot_dog.jpg", "parrot.jpg", "grace_hopper.bmp")]
    want, got = learned.predict(photos, top_k=2), loaded.predict(photos, top_k=2)
    assert [[p.label for p in row] for row in got] == [[p.label for p in row] for row in want]
    assert "unknown" in [answer.label for answer in want]  # the threshold is exercised, not only the classes
    for a, b in zip(want, got):
        np.testing.assert_allclose([p.score for p in a], [p.score for p in b], atol=1e-3)
    out = CliRunner().invoke(app, ["predict", "--model", str(result.path), photos[0], "--json", "-k", "1"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["predictions"][0]["label"] == "cat"


def test_an_onnx_file_from_elsewhere_is_refused_clearly(tmp_path):
    from imagerec.architectures import fast_resnet
    from imagerec.formats.keras_onnx import export_keras

    plain = export_keras(fast_resnet(input_shape=(16, 16, 3), num_classes=3, widths=(8, 16), stem=8), tmp_path / "plain.onnx")
    with pytest.raises(ModelFileError, match="not an ONNX model written by `imagerec export`"):
        imagerec.load(plain)
    (tmp_path / "junk.onnx").write_bytes(b"not onnx at all")
    with pytest.raises(ModelFileError, match="not a usable ONNX model"):
        imagerec.load(tmp_path / "junk.onnx")


@pytest.mark.parametrize("head", ["logistic", "dense", "imprint"])
def test_every_head_exports_from_its_own_description(head, photos_dir, tmp_path):
    shots = photos_dir / "few-shot"
    data = {
        "cat": [str(shots / "cat_train_0.bmp"), str(photos_dir / "cat_720p.jpg")],
        "hot dog": [str(shots / "hotdog_train_0.bmp"), str(shots / "hotdog_train_1.bmp")],
    }
    options = {"epochs": 5} if head == "dense" else None
    # A given threshold: the confidence output is exported too, without calibration's refits.
    model = imagerec.learn(data, head=head, head_options=options, threshold=0.5, cache=False)
    photos = [str(photos_dir / name) for name in ("cat_1080p.jpg", "hot_dog.jpg", "owl.jpg")]
    for format in ("tflite", "onnx"):
        result = export(model, format, tmp_path / f"{head}.{format}")  # synthetic samples
        assert result.check.ok and result.check.sample_source == "synthetic"
        assert result.outputs == ("scores", "confidence") and result.check.confidence_max_abs_diff <= TOLERANCE
        exported = imagerec.load(result.path)
        assert exported.labels == model.labels and exported.threshold == 0.5
        np.testing.assert_allclose(exported.predict_proba(photos), model.predict_proba(photos), atol=TOLERANCE)


def test_a_failed_check_writes_nothing(learned, tmp_path):
    with pytest.raises(ModelFileError, match="differs from the original"):
        export(learned, "tflite", tmp_path / "strict.tflite", tolerance=1e-12)
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    from imagerec.architectures import course_cnn
    from imagerec.formats.keras import save_model

    model = course_cnn(input_shape=(32, 32, 3), num_classes=3, width=8)
    folder = tmp_path_factory.mktemp("keras")
    return save_model(
        model, folder / "tiny.keras", classes=["a", "b", "c"], preprocessing=imagerec.Preprocessing(size=(32, 32), normalization="tf")
    )


def test_keras_model_to_one_onnx_graph_with_uint8_input(keras_file, sample_photos, photos_dir, tmp_path):
    import onnx

    from imagerec.backends.onnx import OnnxBackend

    result = export(keras_file, "onnx", tmp_path / "tiny.onnx", samples=sample_photos[:4])
    assert result.check.ok and result.check.max_abs_diff <= TOLERANCE
    proto = onnx.load(str(result.path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8  # normalisation is inside
    info = json.loads({p.key: p.value for p in proto.metadata_props}["imagerec"])
    assert info["labels"] == ["a", "b", "c"] and info["preprocessing"]["normalization"] == "tf"

    original = imagerec.load(keras_file)
    exported = Recognizer(OnnxBackend(result.path), ["a", "b", "c"], imagerec.Preprocessing(size=(32, 32)))
    photos = [str(photos_dir / name) for name in ("owl.jpg", "face.jpg")]
    np.testing.assert_allclose(exported.predict_proba(photos), original.predict_proba(photos), atol=TOLERANCE)


@pytest.mark.slow
def test_keras_model_to_one_tflite_graph_with_uint8_input(keras_file, sample_photos, photos_dir, tmp_path):
    pytest.importorskip("litert_torch", reason="litert-torch (the tflite extra) is not installed")
    from imagerec.backends.litert import LiteRTBackend

    result = export(keras_file, "tflite", tmp_path / "tiny.tflite", samples=sample_photos[:4])
    assert result.check.ok and result.check.max_abs_diff <= TOLERANCE and result.check.top1_agree == 4
    backend = LiteRTBackend(result.path, num_threads=1)
    assert backend.input_size == (32, 32)
    original = imagerec.load(keras_file)
    exported = imagerec.load(result.path)  # labels and preprocessing from the file's metadata
    photos = [str(photos_dir / name) for name in ("owl.jpg", "face.jpg", "parrot.jpg")]
    np.testing.assert_allclose(exported.predict_proba(photos), original.predict_proba(photos), atol=TOLERANCE)
    assert exported.labels == ["a", "b", "c"] and exported.preprocessing == original.preprocessing


@pytest.mark.slow
@pytest.mark.parametrize("format", ["onnx", "tflite"])
def test_exported_keras_model_keeps_its_test_time_views(format, sample_photos, photos_dir, tmp_path):
    from imagerec.architectures import course_cnn
    from imagerec.formats.keras import save_model

    if format == "tflite":
        pytest.importorskip("litert_torch", reason="litert-torch (the tflite extra) is not installed")
    # A 1/9 logit scale would leave untrained scores near uniform; these differ from view to view.
    model = course_cnn(input_shape=(32, 32, 3), num_classes=3, width=8)
    source = save_model(model, tmp_path / "views.keras", classes=["a", "b", "c"], flip_average=True, shift_average=1,
                        preprocessing=imagerec.Preprocessing(size=(32, 32), normalization="unit"))
    result = export(source, format, tmp_path / f"views.{format}", samples=sample_photos[:4])
    assert result.check.ok and result.check.max_abs_diff <= TOLERANCE
    photos = [str(photos_dir / name) for name in ("owl.jpg", "face.jpg", "parrot.jpg")]
    original = imagerec.load(source)  # flip + shift averaging, in its own ONNX export
    exported = imagerec.load(result.path)  # labels and preprocessing from the file's metadata
    np.testing.assert_allclose(exported.predict_proba(photos), original.predict_proba(photos), atol=TOLERANCE)
    flip_only = save_model(model, tmp_path / "flip.keras", classes=["a", "b", "c"], flip_average=True,
                           preprocessing=imagerec.Preprocessing(size=(32, 32), normalization="unit"))
    assert np.abs(imagerec.load(flip_only).predict_proba(photos) - original.predict_proba(photos)).max() > 1e-4


def test_tflite_export_without_litert_torch_says_what_to_install(keras_file, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "litert_torch", None)  # as if it were not installed
    with pytest.raises(UsageError, match=r"pip install 'imagerec\[tflite\]'"):
        export(keras_file, "tflite", tmp_path / "x.tflite")
    assert not list(tmp_path.iterdir())


def test_unsupported_combinations_say_what_works(keras_file, learned, tmp_path):
    with pytest.raises(UsageError, match="export to keras is for recognizers learned on a Keras backbone"):
        export(keras_file, "keras")
    with pytest.raises(UsageError, match="export to keras is for recognizers learned on a Keras backbone"):
        export(learned, "keras", tmp_path / "x.keras")
    with pytest.raises(UsageError, match="unknown export format"):
        export(keras_file, "coreml")
    with pytest.raises(UsageError, match="not a learned recognizer"):
        export(imagerec.load("mobilenet_v2"), "tflite", tmp_path / "x.tflite")
    with pytest.raises(UsageError, match="must end in .onnx"):
        export(keras_file, "onnx", tmp_path / "x.tflite")


def test_cli_export(learned, sample_photos, tmp_path):
    from imagerec.cli._app import run_app

    saved = learned.save(tmp_path / "pets.imagerec")
    out = tmp_path / "out" / "pets.tflite"
    code = run_app(["export", str(saved), "--format", "tflite", "--output", str(out), "--samples", sample_photos[0]])
    assert code == 0 and out.is_file()
    assert run_app(["export", str(saved), "--format", "keras"]) == 2  # a usage error, one line


@pytest.mark.slow
def test_learned_on_a_keras_backbone_to_onnx_and_keras(photos_dir, sample_photos, tmp_path):
    from imagerec.backends.onnx import OnnxBackend
    from imagerec.transfer.backbones import get_backbone

    # Random weights: the features are meaningless, but the graph and the check are the real ones.
    backbone = get_backbone("keras:MobileNetV2", weights=None, input_size=96)
    shots = photos_dir / "few-shot"
    data = {"cat": [str(shots / "cat_train_0.bmp")], "hot dog": [str(shots / "hotdog_train_0.bmp"), str(shots / "hotdog_train_1.bmp")]}
    model = imagerec.learn(data, backbone=backbone, head="imprint", cache=False)
    result = export(model, "onnx", tmp_path / "keras-backbone.onnx", samples=sample_photos[:4])
    assert result.check.ok and result.inputs == "image: uint8 N×H×W×3"
    exported = Recognizer(OnnxBackend(result.path), model.labels, model.preprocessing)
    photos = [str(photos_dir / "owl.jpg"), str(photos_dir / "face.jpg")]  # a batch of two in one run
    np.testing.assert_allclose(exported.predict_proba(photos), model.predict_proba(photos), atol=TOLERANCE)
    pytest.importorskip("litert_torch", reason="litert-torch (the tflite extra) is not installed")
    as_tflite = export(model, "tflite", tmp_path / "keras-backbone.tflite", samples=sample_photos[:4])
    assert as_tflite.check.ok and as_tflite.check.top1_agree == 4
    tflite = imagerec.load(as_tflite.path)
    assert tflite.labels == model.labels and tflite.preprocessing == model.preprocessing
    np.testing.assert_allclose(tflite.predict_proba(photos), model.predict_proba(photos), atol=TOLERANCE)

    # ... and to one Keras model (normalisation, application, head), which imagerec loads back.
    as_keras = export(model, "keras", tmp_path / "keras-backbone.keras", samples=sample_photos[:4])
    assert as_keras.check.ok
    reloaded = imagerec.load(as_keras.path)
    assert reloaded.labels == ["cat", "hot dog"]
    np.testing.assert_allclose(reloaded.predict_proba(photos), model.predict_proba(photos), atol=TOLERANCE)


@pytest.mark.slow
def test_a_tflite_export_on_a_keras_backbone_keeps_the_unknown_answer(photos_dir, tmp_path):
    pytest.importorskip("litert_torch", reason="litert-torch (the tflite extra) is not installed")
    from imagerec.transfer.backbones import get_backbone

    backbone = get_backbone("keras:MobileNetV2", weights=None, input_size=96)  # random weights: the graph is real
    shots = photos_dir / "few-shot"
    data = {"cat": [str(shots / "cat_train_0.bmp")], "hot dog": [str(shots / "hotdog_train_0.bmp")]}
    model = imagerec.learn(data, backbone=backbone, head="imprint", threshold=None, cache=False)
    photos = [str(photos_dir / name) for name in ("owl.jpg", "face.jpg", "parrot.jpg", "pets.jpg", "cat_720p.jpg")]
    confidence = model.head.confidence(model.embed(photos))  # what the threshold is compared with
    # A threshold between the photos' confidences: some are "unknown", some are not.
    model.configure(threshold=float(np.median(confidence)))
    saved = model.save(tmp_path / "keras-backbone.imagerec")
    learned = imagerec.load(saved)
    expected = [answer.label for answer in learned.predict(photos, top_k=1)]
    assert "unknown" in expected and set(expected) - {"unknown"}

    result = export(saved, "tflite", tmp_path / "keras-backbone.tflite", samples=photos)
    assert result.outputs == ("scores", "confidence") and result.check.confidence_max_abs_diff <= TOLERANCE
    exported = imagerec.load(result.path)
    assert exported.threshold == pytest.approx(learned.threshold)
    assert [answer.label for answer in exported.predict(photos, top_k=1)] == expected


@pytest.mark.parametrize("normalization", ["uint8", "unit", "tf", "torch", "caffe"])
def test_exported_graphs_normalise_pixels_as_the_backends_do(normalization):
    """The normalisation inside an exported Keras model and ONNX graph is the one inference uses."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from imagerec.core.keras_backend import import_keras
    from imagerec.core.preprocessing import normalize
    from imagerec.export.keras import normalization_layer
    from imagerec.export.onnx import with_uint8_input

    pixels = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3)).astype(np.uint8)
    keras = import_keras()
    layer = normalization_layer(keras, normalization)
    got = keras.ops.convert_to_numpy(layer(pixels.astype(np.float32)))
    np.testing.assert_allclose(got, normalize(pixels, normalization), atol=1e-4)

    shape = ["N", 5, 7, 3]
    graph = helper.make_graph([helper.make_node("Identity", ["pixels"], ["out"])], "identity",
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)])
    proto = with_uint8_input(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), normalization)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["out"], {"image": pixels})[0], normalize(pixels, normalization), atol=1e-4)


def test_an_exported_tflite_with_damaged_metadata_is_refused_in_one_line(learned, tmp_path):
    from imagerec.backends.litert import with_metadata

    result = export(learned, "tflite", tmp_path / "snacks.tflite")
    damaged = tmp_path / "damaged.tflite"
    damaged.write_bytes(with_metadata(result.path.read_bytes(), "imagerec", b'{"labels": ["cat"'))
    with pytest.raises(ModelFileError, match=r"damaged\.tflite: its imagerec metadata is damaged") as caught:
        imagerec.load(damaged)
    assert "\n" not in str(caught.value)


def test_exports_never_replace_a_file_without_force(learned, photos_dir, tmp_path, monkeypatch, capsys):
    """The README's own pair: two models exported to two formats keep their own labels files,
    and an export over an existing file stops (one line, exit 1) unless --force."""
    from imagerec.cli._app import run_app
    from imagerec.core.errors import OutputError

    monkeypatch.chdir(tmp_path)
    other = imagerec.learn({"mug": [str(photos_dir / "owl.jpg")], "pen": [str(photos_dir / "parrot.jpg")]},
                           head="imprint", cache=False)
    learned.save(tmp_path / "pets.imagerec")
    other.save(tmp_path / "snacks.imagerec")
    first = export("pets.imagerec", "tflite")
    second = export("snacks.imagerec", "tflite")
    assert first.labels_path == Path("pets.tflite.labels.txt") and second.labels_path == Path("snacks.tflite.labels.txt")
    assert first.labels_path.read_text().splitlines() == ["cat", "dog", "hot dog"]

    before = first.path.read_bytes()
    with pytest.raises(OutputError, match=r"pets\.tflite already exists; pass --force"):
        export(other, "tflite", "pets.tflite")
    assert first.path.read_bytes() == before and first.labels_path.read_text().splitlines()[0] == "cat"
    assert run_app(["export", "snacks.imagerec", "--format", "tflite", "--output", "pets.tflite"]) == 1
    err = capsys.readouterr().err
    assert "--force" in err and len(err.strip().splitlines()) == 1
    # A labels file someone else left there, with other names, is not replaced either.
    Path("mine.tflite.labels.txt").write_text("my\nown\n")
    with pytest.raises(OutputError, match=r"mine\.tflite\.labels\.txt already exists with other class names"):
        export(other, "tflite", "mine.tflite")
    assert Path("mine.tflite.labels.txt").read_text() == "my\nown\n" and not Path("mine.tflite").exists()
    # --force says yes.
    assert run_app(["export", "snacks.imagerec", "--format", "tflite", "--output", "pets.tflite", "--force"]) == 0
    assert imagerec.load("pets.tflite").labels == ["mug", "pen"]
    assert Path("pets.tflite.labels.txt").read_text().splitlines() == ["mug", "pen"]


def test_an_onnx_file_is_told_to_be_a_standalone_file_already(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(UsageError, match="already is a standalone model file"):
        export(tmp_path / "model.onnx", "tflite", tmp_path / "x.tflite")


def test_the_check_requires_the_same_top1_class_on_every_image():
    from imagerec.export.check import compare

    # Within a loose tolerance, but the best class changed where the source was sure of it: not the same answer.
    check = compare(np.array([[0.6, 0.4]]), np.array([[0.45, 0.55]]), "given", 0.2)
    assert check.max_abs_diff <= 0.2 and check.top1_agree == 0 and not check.ok
    # A tie in the source (closer than TOLERANCE) may be decided either way by rounding.
    tie = compare(np.array([[0.50003, 0.49997]]), np.array([[0.49999, 0.50001]]), "given", TOLERANCE)
    assert tie.top1_agree == 0 and tie.ok
