"""imagerec.evaluation: metrics equal scikit-learn's, class matching, the report, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagerec.core.errors import DatasetError
from imagerec.evaluation import classification_metrics, evaluate, match_classes
from imagerec.core.preprocessing import Preprocessing
from imagerec.recognizer import Recognizer, softmax

COLOURS = ("red", "green", "blue")


class ChannelBackend:
    """Scores are a softmax of the mean of each colour channel: a 'model' that needs no training."""

    input_size = (8, 8)
    outputs = ("scores",)

    def run(self, batch, outputs=("scores",)):
        means = batch.reshape(len(batch), -1, 3).mean(axis=1) / 16.0
        return {"scores": softmax(means).astype(np.float32)}


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Mostly pure colours, plus some deliberately misleading mixtures (so there are mistakes)."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for index, name in enumerate(COLOURS):
        (root / name).mkdir()
        for n in range(12):
            pixel = rng.integers(0, 60, 3)
            pixel[index] = rng.integers(150, 256)
            if n % 4 == 3:  # a misleading image: another channel dominates
                pixel[(index + 1) % 3] = 255
            image = np.broadcast_to(pixel.astype(np.uint8), (8, 8, 3))
            Image.fromarray(np.ascontiguousarray(image)).save(root / name / f"{n}.png")
    return root


@pytest.fixture
def colour_model() -> Recognizer:
    return Recognizer(ChannelBackend(), list(COLOURS), Preprocessing(size=(8, 8)), name="channels")


def test_metrics_equal_scikit_learn() -> None:
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(1)
    targets = rng.integers(0, 5, 300)
    predicted = np.where(rng.random(300) < 0.6, targets, rng.integers(-1, 5, 300))
    predicted[:3] = -1  # "none of these classes"
    metrics = classification_metrics(targets, predicted, list("abcde"))
    labels = list(range(5))
    p, r, f, s = precision_recall_fscore_support(targets, predicted, labels=labels, zero_division=0)
    for name, values in (("precision", p), ("recall", r), ("f1", f), ("support", s)):
        np.testing.assert_allclose([row[name] for row in metrics["per_class"]], values)
    for average, key in (("macro", "macro_avg"), ("weighted", "weighted_avg")):
        p, r, f, _ = precision_recall_fscore_support(targets, predicted, labels=labels, average=average, zero_division=0)
        assert metrics[key] == pytest.approx({"precision": p, "recall": r, "f1": f})
    assert metrics["accuracy"] == pytest.approx(accuracy_score(targets, predicted))
    full = confusion_matrix(targets, predicted, labels=[*labels, -1])
    np.testing.assert_array_equal(np.asarray(metrics["confusion_matrix"]), full[:5])


def test_a_class_nobody_predicts_has_zero_precision_not_nan() -> None:
    metrics = classification_metrics(np.array([0, 1, 1]), np.array([1, 1, 1]), ["a", "b"])
    assert metrics["per_class"][0] == {"class": "a", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_evaluate_matches_scikit_learn_on_the_same_predictions(colour_model, colour_folder: Path) -> None:
    from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

    result = evaluate(colour_model, colour_folder, top_k=2)
    assert len(result.targets) == 36
    assert 0.6 < result.accuracy < 1.0  # the misleading images are wrong
    assert result.accuracy == pytest.approx(accuracy_score(result.targets, result.predicted))
    assert result.metrics["macro_avg"]["f1"] == pytest.approx(
        f1_score(result.targets, result.predicted, average="macro", zero_division=0)
    )
    pixels = np.stack([np.asarray(Image.open(p)) for p in result.paths])
    scores = colour_model.predict_proba(pixels)
    # Dataset classes are sorted (blue, green, red); the model's labels are not: compare in label space.
    assert result.classes == ["blue", "green", "red"] and result.class_map == [2, 1, 0]
    true_labels = np.asarray(result.class_map)[result.targets]
    assert result.top_k_accuracy == pytest.approx(top_k_accuracy_score(true_labels, scores, k=2, labels=[0, 1, 2]))
    assert result.top_k_accuracy > result.accuracy


def test_report_files_are_valid_images_and_linked(colour_model, colour_folder: Path, tmp_path: Path) -> None:
    result = evaluate(colour_model, colour_folder, report=tmp_path / "report", mistakes=5)
    with Image.open(tmp_path / "report" / "confusion.png") as image:
        image.verify()
        assert image.format == "PNG"
    tiles = sorted((tmp_path / "report" / "mistakes").glob("*.jpg"))
    assert [tile.name for tile in tiles] == ["01.jpg", "02.jpg", "03.jpg", "04.jpg", "05.jpg"]
    page = (tmp_path / "report" / "index.html").read_text()
    assert 'src="confusion.png"' in page and all(f'src="mistakes/{tile.name}"' in page for tile in tiles)
    assert page.count("<li><code>") == 5  # the five most confidently wrong
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert saved["accuracy"] == result.accuracy and saved["images"] == 36


def test_class_names_map_through_synonyms() -> None:
    labels = ["background", "tabby", "hotdog"]
    synonyms = [("background",), ("tabby", "tabby cat"), ("hotdog", "hot dog", "red hot")]
    assert match_classes(["Hot_Dog", "tabby-cat"], labels, synonyms) == [2, 1]
    with pytest.raises(DatasetError, match="'pizza' match none of the model's 3 labels"):
        match_classes(["pizza", "hotdog"], labels, synonyms)


def test_zoo_model_on_a_labelled_folder(recognizer, photos_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for folder, photo in (("hot dog", "hot_dog.jpg"), ("Macaw", "parrot.jpg"), ("military_uniform", "grace_hopper.bmp")):
        (root / folder).mkdir(parents=True)
        (root / folder / photo).write_bytes((photos_dir / photo).read_bytes())
    result = evaluate(recognizer, root)
    assert result.accuracy == 1.0
    assert result.classes == ["Macaw", "hot dog", "military_uniform"]  # sorted as strings
    assert [recognizer.labels[i] for i in result.class_map] == ["macaw", "hotdog", "military uniform"]
    # Restricted to the folder's classes the answer cannot be a fourth label.
    restricted = evaluate(recognizer, root, restrict=True)
    assert set(restricted.predicted_labels) <= {"hotdog", "macaw", "military uniform"}


def test_cli_evaluate_json_and_errors(colour_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import imagerec.loading as loading
    from imagerec.cli import app

    def fake_loader(path, **options):
        return Recognizer(ChannelBackend(), list(COLOURS), Preprocessing(size=(8, 8)), name="channels")

    monkeypatch.setattr(loading, "FORMATS", loading.FORMATS + (loading.Format(".fake", "a fake model", fake_loader),))
    model = tmp_path / "m.fake"
    model.write_text("x")
    runner = CliRunner()
    out = runner.invoke(app, ["evaluate", str(model), str(colour_folder), "--json", "--top-k", "2"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["images"] == 36 and "top_2_accuracy" in data and len(data["per_class"]) == 3
    (colour_folder.parent / "bad").mkdir(exist_ok=True)
    (colour_folder.parent / "bad" / "only").mkdir(exist_ok=True)
    from imagerec.cli import run_app

    assert run_app(["evaluate", str(model), str(colour_folder.parent / "bad")]) == 1


@pytest.fixture(scope="module")
def few_shot(models_dir: Path, photos_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A recognizer learned on the few-shot photos, saved and loaded again, and its training data."""
    import imagerec

    few = photos_dir / "few-shot"
    data = {"cat": [few / "cat_train_0.bmp"], "dog": [few / "dog_train_0.bmp"],
            "hotdog": [few / "hotdog_train_0.bmp", few / "hotdog_train_1.bmp"]}
    learned = imagerec.learn(data, head="imprint", threshold=None, progress=False)
    saved = learned.save(tmp_path_factory.mktemp("learned") / "few.imagerec")
    return imagerec.load(saved), data


def test_learned_recognizer_from_transfer_learning(few_shot) -> None:
    recognizer, data = few_shot
    with pytest.warns(Warning, match="imbalanced"):
        result = evaluate(recognizer, data)
    assert result.accuracy == 1.0  # imprinting puts each training photo nearest its own class
    assert result.classes == ["cat", "dog", "hotdog"] and result.class_map == [0, 1, 2]


def test_evaluate_scores_as_predict_does_for_a_framed_model(few_shot, photos_dir: Path) -> None:
    # A learned recognizer draws a grey frame around every picture: evaluate
    # must score the dataset's framed pixels as they are, not frame them again.
    recognizer, _ = few_shot
    assert recognizer.preprocessing.frame > 0
    held_out = {"cat": [photos_dir / "cat_720p.jpg", photos_dir / "pets.jpg"], "dog": [photos_dir / "face.jpg"],
                "hotdog": [photos_dir / "hot_dog.jpg", photos_dir / "owl.jpg"]}
    with pytest.warns(Warning, match="imbalanced"):
        result = evaluate(recognizer, held_out)
    probabilities = recognizer.predict_proba(result.paths)
    best = probabilities.argmax(axis=1)
    assert result.predicted_labels == [recognizer.labels[i] for i in best]
    np.testing.assert_allclose(result.confidence, probabilities.max(axis=1), atol=1e-5)
    assert result.accuracy == pytest.approx(np.mean(np.asarray(result.class_map)[result.targets] == best))


def test_evaluate_answers_near_ties_as_predict_does_on_large_jpegs(recognizer, large_jpegs: list[Path]) -> None:
    # Large JPEGs are decoded in draft mode; predict decodes a near-tie again in
    # full, and evaluate must too, or its answers differ from predict's.
    data = {"macaw": large_jpegs[0::2], "hotdog": large_jpegs[1::2]}
    result = evaluate(recognizer, data)
    probabilities = np.where(recognizer.predictable[None, :], recognizer.predict_proba(result.paths), -np.inf)
    assert result.predicted_labels == [recognizer.labels[i] for i in probabilities.argmax(axis=1)]
    np.testing.assert_allclose(result.confidence, probabilities.max(axis=1), atol=1e-5)


def test_an_unwritable_report_location_fails_before_predicting(colour_model, colour_folder: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import imagerec.loading as loading
    from imagerec.cli import run_app
    from imagerec.core.errors import OutputError

    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    calls: list[int] = []
    original = colour_model.score
    monkeypatch.setattr(colour_model, "score", lambda batch: calls.append(len(batch)) or original(batch))
    with pytest.raises(OutputError, match="afile is a file, not a folder") as caught:
        evaluate(colour_model, colour_folder, report=afile)
    assert isinstance(caught.value, OSError) and calls == []
    with pytest.raises(OutputError, match="afile"):
        evaluate(colour_model, colour_folder, report=afile / "inside")
    monkeypatch.setattr(loading, "FORMATS", loading.FORMATS + (loading.Format(".fake", "a fake model", lambda path, **options: colour_model),))
    model = tmp_path / "m.fake"
    model.write_text("x")
    capsys.readouterr()
    assert run_app(["evaluate", str(model), str(colour_folder), "--report", str(afile)]) == 1
    err = capsys.readouterr().err
    assert "afile" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_evaluate_json_shows_no_decode_progress(colour_model, colour_folder: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    import imagerec.data.datasets
    import imagerec.loading as loading
    from imagerec.cli import run_app

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(imagerec.data.datasets, "PROGRESS_MIN_IMAGES", 1)
    monkeypatch.setattr(imagerec.data.datasets, "datasets_dir", lambda: tmp_path / "fresh")  # decode, not the cache
    monkeypatch.setattr(loading, "FORMATS", loading.FORMATS + (loading.Format(".fake", "a fake model", lambda path, **options: colour_model),))
    model = tmp_path / "m.fake"
    model.write_text("x")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert run_app(["evaluate", str(model), str(colour_folder), "--json"]) == 0
    assert "decoding" not in terminal.getvalue()
    assert json.loads(sys.stdout.getvalue())["images"] == 36


def test_evaluate_opens_a_zoo_name_as_load_would(photos_dir: Path, tmp_path: Path) -> None:
    import shutil

    from imagerec.core.errors import ImagerecError

    for label, photo in (("macaw", "parrot.jpg"), ("hotdog", "hot_dog.jpg")):
        (tmp_path / label).mkdir()
        shutil.copy(photos_dir / photo, tmp_path / label / photo)
    result = evaluate("mobilenet_v2", tmp_path, top_k=1)
    assert result.model == "mobilenet_v2" and result.accuracy == 1.0
    with pytest.raises(ImagerecError, match="no model named 'no_such_model'"):
        evaluate("no_such_model", tmp_path)


def test_the_report_shows_each_wrong_photo_beside_its_heat_map(recognizer, photos_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for folder, photo in (("tabby", "cat_720p.jpg"), ("hotdog", "hot_dog.jpg"), ("macaw", "parrot.jpg")):
        (root / folder).mkdir(parents=True)
        (root / folder / photo).write_bytes((photos_dir / photo).read_bytes())
    result = evaluate(recognizer, root, report=tmp_path / "report")
    assert result.predicted_labels[result.paths.index(str(root / "tabby" / "cat_720p.jpg"))] == "Egyptian cat"
    (tile,) = (tmp_path / "report" / "mistakes").glob("*.jpg")  # the one mistake: a cat, not a tabby
    with Image.open(tile) as image:
        assert image.format == "JPEG" and image.height <= 192 and image.width > 2 * image.height  # photo | heat map
        left, right = np.asarray(image.crop((0, 0, 150, 100))), np.asarray(image.crop((image.width - 150, 0,
                                                                                        image.width, 100)))
    assert np.abs(left.astype(int) - right.astype(int)).mean() > 5  # the heat map is drawn over the second
    assert tile.stat().st_size < 40_000
    page = (tmp_path / "report" / "index.html").read_text()
    assert "heat map: occlusion" in page and "Egyptian cat" in page
    plain = evaluate(recognizer, root, report=tmp_path / "plain", heat_maps=False)
    (tile,) = (tmp_path / "plain" / "mistakes").glob("*.jpg")
    with Image.open(tile) as image:
        assert image.width <= 224  # the photo alone
    assert "heat map:" not in (tmp_path / "plain" / "index.html").read_text() and plain.accuracy == result.accuracy
