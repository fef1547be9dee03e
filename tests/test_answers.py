"""Answers a person can read and trust (issue 19): "unknown" that adds up, the threshold that is applied,
one-class recognizers, coverage in evaluate, "not sure", and ImageNet-1k indices — on every surface."""

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
from imagerec.core.errors import UsageError  # noqa: E402
from imagerec.serving import create_app  # noqa: E402

PETS = Path(__file__).parent / "fixtures" / "legacy" / "pets.imagerec"  # cat, dog, hotdog; imprint head


@pytest.fixture(scope="module")
def pets():
    return imagerec.load(PETS)


def test_an_unknown_answer_adds_up_and_names_the_closest_class(pets, photos_dir: Path) -> None:
    answer = pets.predict(photos_dir / "grace_hopper.bmp", top_k=3)[0]
    assert answer.label == "unknown" and answer.unknown and not answer.sure
    assert answer.index is None and answer.score is None  # "unknown" is no class of the distribution
    assert answer.closest.label == "cat" and [p.label for p in answer][0] == "cat"
    assert sum(p.score for p in answer) <= 1 + 1e-6  # every score shown is a probability of one distribution
    assert answer.match < answer.threshold == pytest.approx(pets.threshold)
    shown = answer.to_dict()
    assert shown["closest"] == {"label": "cat", "score": pytest.approx(answer.closest.score, abs=1e-6), "index": 0}
    assert shown["index"] is None and shown["unknown"] is True and shown["sure"] is False


def test_indices_are_always_classes_and_agree_with_predict_proba(pets, recognizer, photos_dir: Path) -> None:
    paths = [photos_dir / name for name in ("grace_hopper.bmp", "cat_720p.jpg", "owl.jpg", "hot_dog.jpg")]
    for model in (pets, recognizer):
        answers = model.predict(paths, top_k=3)
        best = model.predict_proba(paths).argmax(axis=1)
        for answer, index in zip(answers, best):
            assert all(0 <= p.index < len(model.labels) and model.labels[p.index] == p.label for p in answer)
            assert answer.closest.index == index
            assert answer.index == (None if answer.unknown else index)


def test_imagenet_indices_are_keras_ones(recognizer, photos_dir: Path, capsys) -> None:
    # Keras's decode_predictions: 285 = Egyptian cat (the 1001-output model's raw output 286).
    assert len(recognizer.labels) == 1000 and recognizer.labels[285] == "Egyptian cat"
    cat = photos_dir / "cat_720p.jpg"
    assert recognizer.predict(cat, top_k=1)[0].index == 285
    assert recognizer.predict_proba(cat).shape == (1, 1000)
    capsys.readouterr()
    assert run_app(["predict", str(cat), "--json", "--top-k", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["index"] == 285
    with TestClient(create_app([recognizer])) as client:
        reply = client.post("/v1/predict", files=[("file", ("cat.jpg", cat.read_bytes()))])
        assert reply.json()["results"][0]["predictions"][0]["index"] == 285


def test_an_older_catalog_is_renumbered_to_imagenet_1k(recognizer, photos_dir: Path, tmp_path: Path) -> None:
    from imagerec.library import index_library
    from imagerec.library.catalog import Catalog

    root = tmp_path / "photos"
    root.mkdir()
    shutil.copy(photos_dir / "cat_720p.jpg", root)
    catalog = tmp_path / "catalog.db"
    index_library(root, catalog=catalog, models=[recognizer], top_k=3)
    query = "SELECT label FROM predictions ORDER BY score DESC"
    with sqlite3.connect(catalog) as db:
        now = [row[0] for row in db.execute(query)]
        # As an earlier imagerec wrote it: the background first, every index one higher.
        db.execute("UPDATE models SET labels = ?", (json.dumps(["background", *recognizer.labels]),))
        db.execute("UPDATE predictions SET label = -label - 1")
        db.execute("UPDATE predictions SET label = -label")
    assert now[0] == 285
    with Catalog(catalog) as opened:
        opened.register_model(recognizer, 3)
        (model,) = opened.models()
        assert model.labels == recognizer.labels
    with sqlite3.connect(catalog) as db:
        assert [row[0] for row in db.execute(query)] == now


def test_the_threshold_learn_prints_is_the_one_predict_applies(photos_dir: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "pets"
    for label, names in {"cat": ["cat_train_0.bmp"], "dog": ["dog_train_0.bmp"],
                         "hotdog": ["hotdog_train_0.bmp", "hotdog_train_1.bmp"]}.items():
        (data / label).mkdir(parents=True)
        for name in names:
            shutil.copy(photos_dir / "few-shot" / name, data / label / name)
    model = tmp_path / "pets.imagerec"
    capsys.readouterr()
    assert run_app(["learn", str(data), "--head", "imprint", "-o", str(model), "--json"]) == 0
    told = json.loads(capsys.readouterr().out)["threshold"]
    photos = [str(photos_dir / name) for name in ("cat_720p.jpg", "hot_dog.jpg", "owl.jpg", "grace_hopper.bmp")]
    assert run_app(["predict", *photos, "--model", str(model), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["threshold"] for line in lines] == [pytest.approx(told, abs=1e-6)] * len(photos)
    assert [line["unknown"] for line in lines] == [line["match"] < told for line in lines]
    assert [line["label"] for line in lines] == ["cat", "hotdog", "unknown", "unknown"]
    # The table shows the match beside each answer and the threshold it is compared with.
    assert run_app(["predict", *photos, "--model", str(model)]) == 0
    table = capsys.readouterr().out
    assert "match" in table and f"{told:.3f}" in table and "closest: " in table


def test_one_class_answers_its_class_or_unknown(photos_dir: Path) -> None:
    shots = photos_dir / "few-shot"
    snack = imagerec.learn({"my snack": [shots / "hotdog_train_0.bmp", shots / "hotdog_train_1.bmp"]},
                           head="imprint", cache=False, progress=False)
    cat, hot_dog = snack.predict([photos_dir / "cat_720p.jpg", photos_dir / "hot_dog.jpg"])
    assert (cat.label, cat.closest.label) == ("unknown", "my snack")
    assert hot_dog.label == "my snack" and hot_dog.sure
    with pytest.raises(UsageError, match="single photo"):
        imagerec.learn({"my snack": [shots / "hotdog_train_0.bmp"]}, head="imprint", cache=False, progress=False)
    with pytest.raises(UsageError, match="without a threshold"):
        imagerec.learn({"my snack": [shots / "hotdog_train_0.bmp", shots / "hotdog_train_1.bmp"]},
                       head="imprint", threshold=None, cache=False, progress=False)


def test_the_teach_route_refuses_a_first_class_it_cannot_tell_from_anything(recognizer, photos_dir: Path) -> None:
    shots = photos_dir / "few-shot"

    def lesson(client, names):
        files = [("file", (name, (shots / name).read_bytes())) for name in names]
        return client.post("/v1/teach", data={"label": "my snack"}, files=files)

    with TestClient(create_app([recognizer])) as client:
        refused = lesson(client, ["hotdog_train_0.bmp"])
        assert refused.status_code == 400 and "single photo" in refused.json()["error"]["message"]
        assert lesson(client, ["hotdog_train_0.bmp", "hotdog_train_1.bmp"]).status_code == 200
        files = [("file", (p.name, p.read_bytes())) for p in (photos_dir / "cat_720p.jpg", photos_dir / "hot_dog.jpg")]
        cat, hot_dog = client.post("/v1/predict?model=taught", files=files).json()["results"]
    assert (cat["label"], cat["closest"]["label"]) == ("unknown", "my snack")
    assert hot_dog["label"] == "my snack"


def test_evaluate_reports_coverage(pets, photos_dir: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "labelled"
    for label, name in (("cat", "cat_720p.jpg"), ("cat", "grace_hopper.bmp"), ("hotdog", "hot_dog.jpg"),
                        ("dog", "few-shot/dog_train_0.bmp")):
        (data / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(photos_dir / name, data / label)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class of one photo is "imbalanced"
        result = imagerec.evaluate(pets, data, progress=False, report=tmp_path / "report")
    # grace_hopper.bmp is "unknown"; its closest class happens to be right, so accuracy counts it.
    assert result.accuracy == 1.0
    assert (result.coverage, result.accuracy_answered, result.accuracy_overall) == (0.75, 1.0, 0.75)
    per_class = {row["class"]: row for row in result.to_dict()["per_class"]}
    assert (per_class["cat"]["coverage"], per_class["cat"]["accuracy_overall"]) == (0.5, 0.5)
    assert per_class["dog"]["coverage"] == 1.0
    assert "right of answered" in (tmp_path / "report" / "index.html").read_text()
    capsys.readouterr()
    assert run_app(["evaluate", str(PETS), str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["coverage"] == 0.75
    assert run_app(["evaluate", str(PETS), str(data)]) == 0
    assert "75.0 % of the images answered" in capsys.readouterr().out.replace("\n", " ")


def test_low_confidence_is_marked_not_sure(recognizer, photos_dir: Path, capsys) -> None:
    face, cat = photos_dir / "face.jpg", photos_dir / "cat_720p.jpg"  # a 3.9 % "academic gown"; an 83 % cat
    unsure, sure = recognizer.predict([face, cat], top_k=3)
    assert unsure.score < imagerec.answers.SURE_LEVEL and not unsure.sure and not unsure.unknown
    assert sure.sure
    capsys.readouterr()
    assert run_app(["predict", str(face), str(cat), "--json"]) == 0
    assert [json.loads(line)["sure"] for line in capsys.readouterr().out.splitlines()] == [False, True]
    assert run_app(["predict", str(face), str(cat), "--top-k", "1"]) == 0  # narrow: no cell wraps
    table = capsys.readouterr().out
    assert "academic gown (not sure)" in table and "Egyptian cat (not sure)" not in table
    assert "(not sure): the answer's probability is under 50%" in table
    with TestClient(create_app([recognizer])) as client:
        files = [("file", (p.name, p.read_bytes())) for p in (face, cat)]
        assert [r["sure"] for r in client.post("/v1/predict", files=files).json()["results"]] == [False, True]


def test_annotate_gives_no_label_for_an_unknown_image(pets, photos_dir: Path) -> None:
    def entry(name: str) -> dict:
        content = base64.b64encode((photos_dir / name).read_bytes()).decode()
        return {"image": {"content": content}, "features": [{"type": "LABEL_DETECTION", "maxResults": 3}]}

    with TestClient(create_app([pets])) as client:
        reply = client.post("/v1/images:annotate", json={"requests": [entry("grace_hopper.bmp"), entry("cat_720p.jpg")]})
    unknown, cat = reply.json()["responses"]
    assert unknown == {}
    assert cat["labelAnnotations"][0]["description"] == "cat"


def test_rows_of_one_image_never_add_up_past_one(pets, recognizer, photos_dir: Path) -> None:
    photos = sorted(p for p in photos_dir.iterdir() if p.suffix in (".jpg", ".bmp"))
    for model in (pets, recognizer):
        for answer in model.predict(photos, top_k=5):
            assert sum(p.score for p in answer) <= 1 + 1e-5, (model.name, answer)
    assert np.all(recognizer.predict_proba(photos).sum(axis=1) <= 1 + 1e-5)


@pytest.mark.slow
def test_the_web_page_shows_unknown_and_not_sure(photos_dir: Path, tmp_path: Path) -> None:
    import os

    from test_serving_server import start_server
    from test_web_ui import ARGS, CHROMIUM

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    server = start_server(tmp_path, "--model", "mobilenet_v2", "--model", str(PETS))
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(server.url + "/")
            page.locator("#model option[value='pets']").wait_for(state="attached")

            def recognise(photo: str):
                page.set_input_files("#file-input", str(photos_dir / photo))
                page.wait_for_function(
                    "name => { const c = document.querySelector('.result'); "
                    "return c && c.classList.contains('done') && c.querySelector('.name').textContent.startsWith(name); }",
                    arg=photo,
                )
                return page.locator(".result").first

            card = recognise("face.jpg")  # mobilenet_v2: a 3.9 % guess
            assert card.locator(".answer.unsure").inner_text() == "academic gown — not sure"
            page.select_option("#model", "pets")
            card = recognise("grace_hopper.bmp")
            assert card.locator(".answer.unknown").inner_text() == "unknown — closest: cat"
            shown = [float(text.rstrip(" %")) for text in card.locator(".prediction .percent").all_inner_texts()]
            assert len(shown) == 3 and sum(shown) <= 100.1
            card = recognise("cat_720p.jpg")
            assert card.locator(".answer").inner_text() == "cat" and card.locator(".answer.unsure").count() == 0
            browser.close()
    finally:
        server.stop()
