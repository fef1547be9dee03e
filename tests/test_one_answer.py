"""Every path that predicts gives the same scores for the same photos, for every kind of model.

The paths: ``imagerec predict --json``, ``Recognizer.predict``, ``POST /v1/predict``,
``POST /v1/images:annotate``, ``imagerec.evaluate``, the photo library's
indexer, and the model exported to ``.onnx`` / ``.tflite`` and loaded back.
The kinds: a zoo model (int8 TFLite), a trained ``.keras`` network, a learned
``.imagerec`` recognizer (whose pictures carry a grey frame) and an imported
export (``.onnx`` / ``.tflite`` files ``imagerec export`` wrote).
Scores agree to 1e-5 (the JSON outputs round to 6 decimals); an int8 export
of a float model agrees within the export's own documented tolerance.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*httpx2.*")  # starlette's TestClient nags about httpx

from fastapi.testclient import TestClient  # noqa: E402

import imagerec  # noqa: E402
from imagerec.cli import run_app  # noqa: E402
from imagerec.library import index_library  # noqa: E402
from imagerec.serving import ServeConfig, create_app  # noqa: E402

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
PHOTOS = ["parrot.jpg", "cat_720p.jpg", "hot_dog.jpg", "grace_hopper.bmp", "few-shot/dog_train_0.bmp"]
TOP_K = 3
EXACT = 1e-5


@pytest.fixture(scope="module")
def photo_folder(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The photos, flat, under names that keep their order."""
    folder = tmp_path_factory.mktemp("photos")
    for position, name in enumerate(PHOTOS):
        shutil.copy(photos_dir / name, folder / f"{position}_{Path(name).name}")
    return folder


def photo_paths(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


@pytest.fixture(scope="module", params=["zoo", "trained_keras", "learned", "exported_tflite", "exported_onnx"])
def model(request, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A model of each kind, as the name or file a user passes to ``--model``."""
    if request.param == "zoo":
        return "mobilenet_v2"
    folder = tmp_path_factory.mktemp(request.param)  # a copy: loading a .keras file caches its ONNX export beside it
    source = {"trained_keras": "shapes.keras", "learned": "pets.imagerec", "exported_tflite": "pets.tflite",
              "exported_onnx": "shapes.onnx"}[request.param]
    return str(shutil.copy(LEGACY / source, folder / source))


def ranked(predictions) -> list[tuple[str, float]]:
    return [(p["label"], p["score"]) if isinstance(p, dict) else (p.label, p.score) for p in predictions]


def assert_same(got: list[list[tuple[str, float]]], want: list[list[tuple[str, float]]], what: str) -> None:
    assert [[label for label, _ in row] for row in got] == [[label for label, _ in row] for row in want], what
    for got_row, want_row in zip(got, want):  # rows may differ in length (an "unknown" image has no labels)
        np.testing.assert_allclose([s for _, s in got_row], [s for _, s in want_row], atol=EXACT, err_msg=what)


def decision(answer) -> dict:
    """The answer's decision fields (label, unknown, sure, closest, match, threshold), as JSON gives them."""
    summary = answer if isinstance(answer, dict) else json.loads(json.dumps(answer.to_dict()))
    return {key: value for key, value in summary.items() if key not in ("predictions", "path", "name")}


def assert_same_decisions(got: list[dict], want: list[dict], what: str) -> None:
    """Labels and flags exactly; scores and matches to within ``EXACT``."""
    def flat(d: dict) -> dict:
        closest = d.get("closest") or {}
        return {**{k: v for k, v in d.items() if k != "closest"}, **{f"closest.{k}": v for k, v in closest.items()}}

    for row, (g, w) in enumerate(zip(map(flat, got), map(flat, want))):
        assert sorted(g) == sorted(w), (what, row)
        for key in w:
            if isinstance(w[key], float):
                assert g[key] == pytest.approx(w[key], abs=EXACT), (what, row, key)
            else:
                assert g[key] == w[key], (what, row, key)
    assert len(got) == len(want), what


def test_every_path_gives_the_same_answers(model: str, photo_folder: Path, capsys, tmp_path: Path) -> None:
    recognizer = imagerec.load(model)
    paths = photo_paths(photo_folder)
    answers = recognizer.predict(paths, top_k=TOP_K)
    api = [ranked(row) for row in answers]
    decisions = [decision(answer) for answer in answers]

    capsys.readouterr()
    assert run_app(["predict", *map(str, paths), "--model", model, "--json", "--top-k", str(TOP_K)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert_same([ranked(line["predictions"]) for line in lines], api, "imagerec predict --json")
    assert_same_decisions([decision(line) for line in lines], decisions, "imagerec predict --json")

    app = create_app([recognizer], ServeConfig(max_pixels=40_000_000))
    with TestClient(app) as client:
        files = [("file", (path.name, path.read_bytes())) for path in paths]
        reply = client.post("/v1/predict", files=files, params={"top_k": TOP_K})
        assert reply.status_code == 200, reply.text
        results = reply.json()["results"]
        assert_same([ranked(result["predictions"]) for result in results], api, "POST /v1/predict")
        assert_same_decisions([decision(result) for result in results], decisions, "POST /v1/predict")

        body = {"requests": [{"image": {"content": base64.b64encode(path.read_bytes()).decode()},
                              "features": [{"type": "LABEL_DETECTION", "maxResults": TOP_K}]} for path in paths]}
        reply = client.post("/v1/images:annotate", json=body)
        assert reply.status_code == 200, reply.text
        annotate = [[(a["description"], a["score"]) for a in response.get("labelAnnotations", [])]
                    for response in reply.json()["responses"]]
        # An "unknown" image has no label above the threshold there.
        assert_same(annotate, [[] if answer.unknown else row for answer, row in zip(answers, api)],
                    "POST /v1/images:annotate")


def test_evaluate_and_the_library_score_as_predict_does(model: str, photo_folder: Path, tmp_path: Path) -> None:
    recognizer = imagerec.load(model)
    paths = photo_paths(photo_folder)
    probabilities = recognizer.predict_proba(paths)
    keep = recognizer.predictable

    # evaluate: each photo filed under the label predict gives it, so every answer is "right".
    best = np.where(keep[None, :], probabilities, -np.inf).argmax(axis=1)
    labelled = tmp_path / "labelled"
    for path, index in zip(paths, best):
        (labelled / recognizer.labels[index]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, labelled / recognizer.labels[index] / path.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one photo a class is "imbalanced"
        result = imagerec.evaluate(recognizer, labelled, progress=False)
    by_name = {Path(p).name: score for p, score in zip(result.paths, result.confidence)}
    np.testing.assert_allclose([by_name[p.name] for p in paths], probabilities[np.arange(len(paths)), best], atol=EXACT)
    assert result.accuracy == 1.0

    # the library: the catalog's top labels are predict's (the catalog keeps labels, not "unknown").
    catalog = tmp_path / "catalog.db"
    index_library(photo_folder, catalog=catalog, models=[recognizer], top_k=TOP_K)
    with sqlite3.connect(catalog) as db:
        rows = db.execute(
            "SELECT files.path, predictions.label, predictions.score FROM predictions "
            "JOIN files ON files.content_id = predictions.content_id ORDER BY files.path, predictions.score DESC"
        ).fetchall()
    stored: dict[str, list[tuple[int, float]]] = {}
    for path, label, score in rows:
        stored.setdefault(Path(path).name, []).append((label, score))
    for row, path in enumerate(paths):
        order = np.argsort(-np.where(keep, probabilities[row], -np.inf), kind="stable")[:TOP_K]
        want = [(int(i), float(probabilities[row, i])) for i in order]
        got = stored[path.name]
        assert [i for i, _ in got] == [i for i, _ in want], path.name
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=EXACT)


@pytest.mark.parametrize("fmt", ["onnx", pytest.param("tflite", marks=pytest.mark.slow)])  # tflite: litert-torch, 5 s
def test_an_export_answers_as_its_source(fmt: str, photo_folder: Path, tmp_path: Path) -> None:
    from imagerec.export import export

    for source in ("pets.imagerec", "shapes.keras"):
        model = shutil.copy(LEGACY / source, tmp_path / source)
        result = export(model, fmt, tmp_path / f"{Path(source).stem}.{fmt}")
        original, exported = imagerec.load(model), imagerec.load(result.path)
        paths = photo_paths(photo_folder)
        # The learned recognizer's TFLite export keeps the int8 backbone, so it is exact; every
        # export is also checked by `export` itself against its source within its tolerance.
        np.testing.assert_allclose(exported.predict_proba(paths), original.predict_proba(paths), atol=EXACT,
                                   err_msg=f"{source} → {fmt}")
        assert exported.labels == original.labels and exported.threshold == original.threshold


def test_load_refuses_options_it_does_not_use(photos_dir: Path) -> None:
    from imagerec.core.errors import UsageError

    assert imagerec.load("mobilenet_v2", refine_margin=0).refine_margin == 0.0
    with pytest.raises(UsageError, match="unknown option typo_option for the zoo model 'mobilenet_v2'"):
        imagerec.load("mobilenet_v2", refine_margin=0, typo_option=1)
    with pytest.raises(UsageError, match="normalization"):
        imagerec.load(LEGACY / "pets.imagerec", normalization="tf")  # only a plain .keras file takes it
    with pytest.raises(UsageError, match="labels= is only for"):
        imagerec.load(LEGACY / "pets.imagerec", labels=["a", "b", "c"])
    renamed = imagerec.load(LEGACY / "shapes.onnx", labels=["a", "b", "c", "d"])
    assert renamed.labels == ["a", "b", "c", "d"]
    assert imagerec.load(LEGACY / "pets.imagerec", threshold=None).threshold is None


def test_the_cli_refines_near_ties_with_the_models_own_margin(large_jpegs: list[Path], capsys, tmp_path: Path) -> None:
    """A Teachable Machine export answers every photo from a full decode (its margin is 1), and so does
    ``imagerec predict`` unless ``--refine-margin`` says otherwise."""
    keras2 = Path(__file__).parent / "fixtures" / "keras2"
    model = shutil.copy(keras2 / "tm_model.tflite", tmp_path / "model.tflite")
    shutil.copy(keras2 / "tm_labels.txt", tmp_path / "labels.txt")
    recognizer = imagerec.load(model)
    want = [ranked(answer) for answer in recognizer.predict(large_jpegs, top_k=2)]
    capsys.readouterr()
    assert run_app(["predict", *map(str, large_jpegs), "--model", str(model), "--json", "--top-k", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert_same([ranked(line["predictions"]) for line in lines], want, "imagerec predict --json, the model's margin")
