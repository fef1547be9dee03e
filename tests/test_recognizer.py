"""imagerec.Recognizer and imagerec.load: what a user gets back from predict and embed."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imagerec
from imagerec import Prediction
from imagerec.core.errors import ImageDecodeError, ModelFileError, UnknownModelError, UsageError
from imagerec.core.images import load_image

# From ../shared/README.md: MobileNet V2 (uint8) top-1 for these photos.
EXPECTED_TOP1 = {
    "cat_720p.jpg": "Egyptian cat",
    "parrot.jpg": "macaw",
    "grace_hopper.bmp": "military uniform",
    "hot_dog.jpg": "hotdog",
}


def test_shared_photos_get_the_published_top1(recognizer, photos_dir: Path) -> None:
    paths = [photos_dir / name for name in EXPECTED_TOP1]
    results = recognizer.predict(paths, top_k=5)
    for name, predictions in zip(EXPECTED_TOP1, results):
        assert predictions[0].label == EXPECTED_TOP1[name], (name, predictions)
        assert len(predictions) == 5
        scores = [p.score for p in predictions]
        assert scores == sorted(scores, reverse=True)


def test_scores_are_probabilities(recognizer, photos_dir: Path) -> None:
    probabilities = recognizer.predict_proba([photos_dir / "parrot.jpg", photos_dir / "owl.jpg"])
    assert probabilities.shape == (2, 1000)  # ImageNet-1k: the model's "background" output is dropped
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert probabilities.min() >= 0
    best = recognizer.predict(photos_dir / "parrot.jpg", top_k=1)[0][0]
    assert isinstance(best, Prediction) and best.score > 0.9 and best.index == 88  # Keras's index for macaw
    assert recognizer.labels[best.index] == "macaw"
    assert recognizer.synonyms[best.index][0] == "macaw"


def test_exif_rotated_copy_gives_the_same_top1(recognizer, photos_dir: Path) -> None:
    upright = Image.open(photos_dir / "cat_720p.jpg")
    # store the pixels turned a quarter, with a tag saying how to turn them back
    turned = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    turned.save(buffer, "JPEG", quality=95, exif=exif)
    original = recognizer.predict(photos_dir / "cat_720p.jpg", top_k=1)[0][0]
    rotated = recognizer.predict(buffer.getvalue(), top_k=1)[0][0]
    assert rotated.label == original.label == "Egyptian cat"


def test_background_is_never_a_label(recognizer) -> None:
    blank = np.full((224, 224, 3), 255, np.uint8)
    labels = [p.label for p in recognizer.predict(blank, top_k=1000)[0]]
    assert "background" not in labels
    assert len(labels) == 1000


def test_batch_array_and_list_inputs_agree(recognizer, photos_dir: Path) -> None:
    batch = recognizer.preprocess([photos_dir / "parrot.jpg", photos_dir / "hot_dog.jpg"])
    assert batch.shape == (2, 224, 224, 3) and batch.dtype == np.uint8
    from_array = recognizer.predict(batch, top_k=1)
    from_paths = recognizer.predict([photos_dir / "parrot.jpg", photos_dir / "hot_dog.jpg"], top_k=1)
    assert from_array == from_paths


def test_min_score_and_top_k_validation(recognizer, photos_dir: Path) -> None:
    confident = recognizer.predict(photos_dir / "parrot.jpg", top_k=5, min_score=0.5)[0]
    assert [p.label for p in confident] == ["macaw"]
    with pytest.raises(UsageError):
        recognizer.predict(photos_dir / "parrot.jpg", top_k=0)
    with pytest.raises(UsageError):
        recognizer.predict([])


def test_embeddings_are_deterministic_and_similar_for_a_reencoded_copy(recognizer, photos_dir: Path) -> None:
    path = photos_dir / "parrot.jpg"
    first = recognizer.embed(path)
    assert first.shape == (1, 1280) and first.dtype == np.float32
    assert np.array_equal(first, recognizer.embed(path))
    buffer = io.BytesIO()
    Image.open(path).save(buffer, "JPEG", quality=80)
    again = recognizer.embed(buffer.getvalue())[0]
    cosine = float(first[0] @ again / np.linalg.norm(first[0]) / np.linalg.norm(again))
    assert cosine > 0.95
    other = recognizer.embed(photos_dir / "hot_dog.jpg")[0]
    assert float(first[0] @ other / np.linalg.norm(first[0]) / np.linalg.norm(other)) < cosine


def test_predict_files_reports_errors_in_place_and_keeps_order(recognizer, photos_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really")
    sources = [photos_dir / "parrot.jpg", bad, photos_dir / "hot_dog.jpg", tmp_path / "missing.png"]
    results = list(recognizer.predict_files(sources, top_k=2))
    assert [r.path for r in results] == [str(s) for s in sources]
    assert [r.ok for r in results] == [True, False, True, False]
    assert results[0].predictions[0].label == "macaw"
    assert results[2].predictions[0].label == "hotdog"
    assert isinstance(results[1].error, ImageDecodeError) and isinstance(results[3].error, ImageDecodeError)
    assert str(bad) in str(results[1].error) and "missing.png" in str(results[3].error)
    assert results[1].to_dict() == {"path": str(bad), "error": str(results[1].error)}


def test_predict_raises_on_a_bad_image(recognizer) -> None:
    with pytest.raises(ImageDecodeError, match="empty file"):
        recognizer.predict(b"")


def test_other_zoo_models_load_and_run(photos_dir: Path, models_dir: Path) -> None:
    embedder = imagerec.load("mobilenet_v1_embedder")
    assert embedder.embed(photos_dir / "owl.jpg").shape == (1, 1024)
    tf2 = imagerec.load("mobilenet_v2_tf2")
    assert tf2.predict(photos_dir / "parrot.jpg", top_k=1)[0][0].label == "macaw"
    assert tf2.embed(photos_dir / "parrot.jpg").shape == (1, 1280)
    birds = imagerec.load("inat_birds")
    assert "background" not in [p.label for p in birds.predict(photos_dir / "bird.bmp", top_k=10)[0]]
    assert birds.num_classes == 964


def test_a_bare_tflite_file_with_labels(models_dir: Path, photos_dir: Path) -> None:
    recognizer = imagerec.load(models_dir / "mobilenet_v2_1.0_224_quant.tflite", labels=models_dir / "imagenet_labels.txt")
    best = recognizer.predict(photos_dir / "parrot.jpg", top_k=1)[0][0]
    assert best.label == "macaw" and best.score > 0.9
    with pytest.raises(UsageError, match="1001 outputs but 2 labels"):
        imagerec.load(models_dir / "mobilenet_v2_1.0_224_quant.tflite", labels=["a", "b"])


def test_a_copy_of_a_zoo_model_is_known_by_its_checksum(models_dir: Path, photos_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "my-model.tflite"
    copy.write_bytes((models_dir / "mobilenet_v2_1.0_224_quant.tflite").read_bytes())
    recognizer = imagerec.load(copy)
    assert recognizer.name == "mobilenet_v2" and recognizer.can_embed
    ranked = recognizer.predict(photos_dir / "grace_hopper.bmp", top_k=20)[0]
    assert ranked[0].label == "military uniform" and "background" not in [p.label for p in ranked]
    # Another file (here: the same graph with trailing bytes) is not the zoo model; it still
    # carries the label file its TFLite metadata packs, so it names its classes itself.
    other = tmp_path / "other.tflite"
    other.write_bytes(copy.read_bytes() + b"\0" * 16)
    stranger = imagerec.load(other)
    assert stranger.name == "other" and stranger.predict(photos_dir / "parrot.jpg", top_k=1)[0][0].label == "macaw"


def test_an_embedding_model_refuses_to_predict_labels(models_dir: Path, photos_dir: Path) -> None:
    embedder = imagerec.load("mobilenet_v1_embedder")
    assert not embedder.classifies and embedder.labels == []
    for call in (lambda: embedder.predict(photos_dir / "owl.jpg"), lambda: embedder.predict_proba(photos_dir / "owl.jpg"),
                 lambda: list(embedder.predict_files([photos_dir / "owl.jpg"]))):
        with pytest.raises(UsageError, match="embedding model.*imagerec learn"):
            call()
    assert embedder.embed(photos_dir / "owl.jpg").shape == (1, 1024)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError):
        imagerec.load("no_such_model")
    with pytest.raises(ModelFileError, match="no such model file"):
        imagerec.load(tmp_path / "absent.tflite")
    weird = tmp_path / "model.xyz"
    weird.write_text("?")
    with pytest.raises(UsageError, match="not a model imagerec can load"):
        imagerec.load(weird)


def _with_margin(recognizer, margin: float):
    copy_ = copy.copy(recognizer)
    copy_.refine_margin = margin
    return copy_


def test_draft_mode_near_ties_are_answered_from_a_full_decode(recognizer, large_jpegs: list[Path]) -> None:
    pre = recognizer.preprocessing
    full = recognizer.predict_proba(np.stack([load_image(p, pre, exact=True) for p in large_jpegs]))
    draft = recognizer.predict_proba(np.stack([load_image(p, pre) for p in large_jpegs]))
    assert not np.array_equal(full, draft)  # draft mode really is an approximation here
    margins = recognizer.margins(draft)
    threshold = float(np.median(margins))  # half the photos are "near ties", whatever the model says
    near = margins < threshold
    refined = _with_margin(recognizer, threshold)
    got = refined.predict_proba(large_jpegs)
    np.testing.assert_allclose(got[near], full[near], atol=1e-6)
    np.testing.assert_allclose(got[~near], draft[~near], atol=1e-6)
    # The file route and the list route give the same, refined, answers.
    files = [r.predictions for r in refined.predict_files(large_jpegs, top_k=2)]
    assert files == refined.predict(large_jpegs, top_k=2)
    assert [p[0].index for p in files] == got.argmax(axis=1).tolist()
    # 0 never decodes twice; 1 always answers from the full decode.
    np.testing.assert_allclose(_with_margin(recognizer, 0).predict_proba(large_jpegs), draft, atol=1e-6)
    np.testing.assert_allclose(_with_margin(recognizer, 1).predict_proba(large_jpegs), full, atol=1e-6)


def test_only_near_ties_from_draft_mode_are_decoded_again(recognizer, large_jpegs: list[Path], photos_dir: Path, monkeypatch) -> None:
    from imagerec.core import pipeline

    exact_decodes: list[object] = []
    real = pipeline.decode_one

    def counting(position, source, preprocessing, limits=pipeline.DEFAULT_LIMITS, exact=False, detail="draft"):
        if exact or detail != "draft":
            exact_decodes.append(source)
        return real(position, source, preprocessing, limits, exact, detail)

    monkeypatch.setattr(pipeline, "decode_one", counting)
    always = _with_margin(recognizer, 1)
    small_jpeg, large_png = io.BytesIO(), io.BytesIO()
    Image.open(photos_dir / "parrot.jpg").resize((300, 240)).save(small_jpeg, "JPEG")
    Image.open(large_jpegs[2]).save(large_png, "PNG")
    always.predict_proba([small_jpeg.getvalue(), large_png.getvalue(), large_jpegs[0], large_jpegs[1]])
    # A JPEG this small is decoded in full already, and a PNG has no draft mode.
    assert exact_decodes == [large_jpegs[0], large_jpegs[1]]
    exact_decodes.clear()
    with open(large_jpegs[0], "rb") as stream:  # a file object cannot be read twice: its first answer stands
        always.predict_proba([stream, large_jpegs[1]])
    assert exact_decodes == [large_jpegs[1]]
    exact_decodes.clear()
    _with_margin(recognizer, 0).predict_proba(large_jpegs)
    assert exact_decodes == []


@pytest.fixture(scope="module")
def huge_jpegs(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The shared photos as 3200×2400 JPEGs: draft mode decodes them at 1/8."""
    from conftest import upscaled_jpegs

    return upscaled_jpegs(photos_dir, tmp_path_factory.mktemp("huge-jpegs"), (3200, 2400))


def test_near_ties_are_answered_from_a_full_decode_and_decoded_twice_only_once(recognizer, huge_jpegs, monkeypatch) -> None:
    from imagerec.core import pipeline

    pre = recognizer.preprocessing
    levels = {d: recognizer.predict_proba(np.stack([load_image(p, pre, detail=d) for p in huge_jpegs]))
              for d in ("draft", "full")}
    margin = float(np.median(recognizer.margins(levels["draft"])))
    near = recognizer.margins(levels["draft"]) < margin
    expected = np.where(near[:, None], levels["full"], levels["draft"])
    decodes: list[tuple[str, object]] = []
    real = pipeline.decode_one

    def counting(position, source, preprocessing, limits=pipeline.DEFAULT_LIMITS, exact=False, detail="draft"):
        decodes.append((detail, source))
        return real(position, source, preprocessing, limits, exact, detail)

    monkeypatch.setattr(pipeline, "decode_one", counting)
    refined = _with_margin(recognizer, margin)
    np.testing.assert_allclose(refined.predict_proba(huge_jpegs), expected, atol=1e-6)
    # Only the near-ties are decoded again, straight in full (a 1/2-scale decode is no substitute).
    assert [s for d, s in decodes if d != "draft"] == [p for p, n in zip(huge_jpegs, near) if n]
    assert {d for d, _ in decodes} == {"draft", "full"}
    # Files and the service's own near-tie path answer alike.
    files = [r.predictions for r in refined.predict_files(huge_jpegs, top_k=2)]
    assert files == refined.predict(huge_jpegs, top_k=2)


def test_next_detail_goes_straight_to_the_full_decode() -> None:
    from imagerec.core.preprocessing import Preprocessing
    from imagerec.recognizer import Recognizer

    r = Recognizer(None, ["a", "b"], Preprocessing(size=(1, 1)), refine_margin=0.1)
    assert [r.next_detail(m) for m in (0.0, 0.09, 0.1, 0.5)] == ["full", "full", None, None]
    assert [r.next_detail(m, "fine") for m in (0.0, 0.09, 0.1)] == ["full", "full", None]
    assert r.next_detail(0.0, "full") is None
    assert r.configure(refine_margin=1).next_detail(0.99) == "full"  # 1: always the full decode
    assert r.configure(refine_margin=0).next_detail(0.0) is None  # 0: never decode twice


def test_a_photo_gone_before_its_second_decode_keeps_its_first_answer(recognizer, large_jpegs: list[Path], tmp_path: Path, monkeypatch) -> None:
    victim = tmp_path / "gone.jpg"
    victim.write_bytes(large_jpegs[0].read_bytes())
    always = _with_margin(recognizer, 1)
    real = always.score
    calls = []

    def delete_after_first_pass(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            victim.unlink()
        return real(batch)

    monkeypatch.setattr(always, "score", delete_after_first_pass)
    draft = recognizer.predict_proba(np.stack([load_image(large_jpegs[0], recognizer.preprocessing)]))
    got = always.predict_proba([victim, large_jpegs[1]])
    np.testing.assert_allclose(got[0], draft[0], atol=1e-6)
    assert calls == [2, 1]  # the second pass only had the photo that was still there
