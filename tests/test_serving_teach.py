"""The teaching routes behind the teaching page (issue 22): the card, changes, keeping, opening, scoping."""

from __future__ import annotations

import base64
import io
import logging
import warnings
from pathlib import Path

import pytest
from PIL import Image

warnings.filterwarnings("ignore", message=".*httpx2.*")

from fastapi.testclient import TestClient  # noqa: E402

import hostile  # noqa: E402
import imagerec  # noqa: E402
from imagerec.serving import ServeConfig, create_app  # noqa: E402

KEY_A, KEY_B, KEY_C = "a" * 24, "b" * 24, "c" * 24


@pytest.fixture(scope="module")
def photos(photos_dir: Path) -> dict[str, tuple[str, bytes]]:
    shots = photos_dir / "few-shot"
    paths = [shots / "hotdog_train_0.bmp", shots / "hotdog_train_1.bmp", photos_dir / "hot_dog.jpg",
             shots / "cat_train_0.bmp", photos_dir / "cat_720p.jpg", photos_dir / "owl.jpg",
             shots / "dog_train_0.bmp", photos_dir / "parrot.jpg", photos_dir / "cat_1080p.jpg"]
    return {path.name: (path.name, path.read_bytes()) for path in paths}


def lesson(client: TestClient, label: str, names: list[str], photos, model: str = "taught", **kwargs):
    return client.post("/v1/teach", data={"label": label, "model": model},
                       files=[("file", photos[name]) for name in names], **kwargs)


def teach_two(client, photos, **kwargs) -> dict:
    assert lesson(client, "hot dog", ["hotdog_train_0.bmp", "hotdog_train_1.bmp", "hot_dog.jpg"], photos,
                  **kwargs).status_code == 200
    reply = lesson(client, "cat", ["cat_train_0.bmp", "cat_720p.jpg", "owl.jpg"], photos, **kwargs)
    assert reply.status_code == 200, reply.text
    return reply.json()["card"]


def assert_error(reply, status: int, fragment: str = "") -> None:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["code"] == status and "\n" not in error["message"]
    assert fragment in error["message"], error["message"]


def labels_of(card: dict) -> list[tuple[str, int, int]]:
    return [(c["label"], c["count"], len(c["examples"])) for c in card["classes"]]


def answer(client, photos, name: str, model: str = "taught", **kwargs) -> str:
    reply = client.post(f"/v1/predict?model={model}", files={"file": photos[name]}, **kwargs)
    return reply.json()["results"][0]["predictions"][0]["label"]


@pytest.fixture
def client(recognizer):
    with TestClient(create_app([recognizer])) as fresh:
        yield fresh


def test_the_card_shows_classes_thumbnails_and_the_estimate(client, photos):
    first = lesson(client, "hot dog", ["hotdog_train_0.bmp", "hotdog_train_1.bmp", "hot_dog.jpg"], photos).json()
    assert first["card"]["estimate"] is None  # one class: nothing to hold out against
    card = lesson(client, "cat", ["cat_train_0.bmp", "cat_720p.jpg", "owl.jpg"], photos).json()["card"]
    assert card == client.get("/v1/teach/taught").json()
    assert card["model"] == "taught" and card["backbone"] == "mobilenet_v2" and card["kept"] is False
    assert labels_of(card) == [("hot dog", 3, 3), ("cat", 3, 3)]
    ids = [e["id"] for c in card["classes"] for e in c["examples"]]
    assert len(set(ids)) == 6
    for example in card["classes"][0]["examples"]:
        prefix, data = example["thumbnail"].split(",", 1)
        assert prefix == "data:image/jpeg;base64"
        thumbnail = Image.open(io.BytesIO(base64.b64decode(data)))
        assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 96
    estimate = card["estimate"]
    assert estimate["method"] == "leave-one-out" and estimate["examples"] == 6
    assert [(s["label"], s["of"]) for s in estimate["per_class"]] == [("hot dog", 3), ("cat", 3)]
    correct = sum(s["correct"] for s in estimate["per_class"])
    assert estimate["accuracy"] == pytest.approx(correct / 6, abs=1e-4)
    for confusion in estimate["confusions"]:
        assert set(confusion) == {"label", "as", "count", "of", "text"}
        assert confusion["text"].startswith(f"{confusion['count']} of {confusion['of']} ")
    assert_error(client.get("/v1/teach/nothing"), 404, "no taught model named 'nothing'")


def test_removing_an_example_changes_the_model_and_its_estimate(client, photos):
    card = teach_two(client, photos)
    owl = card["classes"][1]["examples"][2]["id"]  # the owl taught as a "cat"
    reply = client.delete(f"/v1/teach/taught/examples/{owl}")
    assert reply.status_code == 200, reply.text
    after = reply.json()
    assert labels_of(after) == [("hot dog", 3, 3), ("cat", 2, 2)]
    assert owl not in {e["id"] for c in after["classes"] for e in c["examples"]}
    assert after["estimate"]["examples"] == 5
    # The served model changed too: its classes count 2 cat examples.
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["taught"]["labels"] == 2
    assert_error(client.delete(f"/v1/teach/taught/examples/{owl}"), 404, "no example with id")
    # The ids of the examples left are stable.
    assert [e["id"] for e in after["classes"][0]["examples"]] == [e["id"] for e in card["classes"][0]["examples"]]


def test_removing_the_last_examples_removes_the_class_then_the_model(client, photos):
    card = teach_two(client, photos)
    for example in card["classes"][1]["examples"]:
        reply = client.delete(f"/v1/teach/taught/examples/{example['id']}")
    assert labels_of(reply.json()) == [("hot dog", 3, 3)] and reply.json()["estimate"] is None
    for example in card["classes"][0]["examples"]:
        reply = client.delete(f"/v1/teach/taught/examples/{example['id']}")
    assert reply.json() == {"deleted": "taught"}
    assert "taught" not in [m["name"] for m in client.get("/v1/models").json()["models"]]


def test_renaming_a_class_renames_the_answers(client, photos):
    teach_two(client, photos)
    reply = client.patch("/v1/teach/taught/classes/hot dog", json={"label": "  sausage "})
    assert reply.status_code == 200, reply.text
    assert labels_of(reply.json()) == [("sausage", 3, 3), ("cat", 3, 3)]
    assert answer(client, photos, "hot_dog.jpg") == "sausage"
    assert_error(client.patch("/v1/teach/taught/classes/sausage", json={"label": "cat"}), 400, "already a class named 'cat'")
    assert_error(client.patch("/v1/teach/taught/classes/sausage", json={"label": ""}), 400, "1 to 100 characters")
    assert_error(client.patch("/v1/teach/taught/classes/owl", json={"label": "bird"}), 404, "no class named 'owl'")
    assert labels_of(client.get("/v1/teach/taught").json()) == [("sausage", 3, 3), ("cat", 3, 3)]  # nothing lost


def test_deleting_classes_and_models(client, photos):
    teach_two(client, photos)
    reply = client.delete("/v1/teach/taught/classes/cat")
    assert labels_of(reply.json()) == [("hot dog", 3, 3)]
    assert reply.json()["estimate"] is None
    assert client.delete("/v1/teach/taught/classes/hot dog").json() == {"deleted": "taught"}
    assert_error(client.get("/v1/teach/taught"), 404)
    teach_two(client, photos)
    assert client.delete("/v1/teach/taught").json() == {"deleted": "taught"}
    assert_error(client.post("/v1/predict?model=taught", files={"file": photos["hot_dog.jpg"]}), 404)
    assert_error(client.delete("/v1/teach/taught"), 404)
    assert_error(client.delete("/v1/teach/mobilenet_v2"), 404, "no taught model")  # served, but not taught


def test_keeping_needs_a_taught_folder(client, photos):
    teach_two(client, photos)
    assert_error(client.post("/v1/teach/taught/keep"), 400, "--taught-dir")


def test_kept_models_survive_a_restart_with_their_examples(recognizer, photos, tmp_path):
    config = ServeConfig(taught_dir=str(tmp_path / "kept"))
    with TestClient(create_app([recognizer], config)) as client:
        teach_two(client, photos)
        lesson(client, "cat", ["cat_train_0.bmp", "parrot.jpg"], photos, model="unkept")
        kept = client.post("/v1/teach/taught/keep").json()
        assert kept["kept"] is True
        parrot = None
        # A change after keeping is saved too.
        card = client.patch("/v1/teach/taught/classes/cat", json={"label": "kitty"}).json()
        parrot = card["classes"][1]["examples"][2]["id"]
        card = client.delete(f"/v1/teach/taught/examples/{parrot}").json()
    files = sorted(p.relative_to(tmp_path / "kept").as_posix() for p in (tmp_path / "kept").rglob("*.imagerec"))
    assert files == ["open/taught.imagerec"]
    assert imagerec.load(tmp_path / "kept/open/taught.imagerec").labels == ["hot dog", "kitty"]
    with TestClient(create_app([recognizer], config)) as client:
        assert client.get("/v1/teach/taught").json() == card
        assert answer(client, photos, "cat_1080p.jpg") == "kitty"
        assert_error(client.get("/v1/teach/unkept"), 404)
        assert client.delete("/v1/teach/taught").json() == {"deleted": "taught"}
    assert not (tmp_path / "kept/open/taught.imagerec").exists()


def test_a_damaged_kept_file_is_skipped_with_one_warning(recognizer, photos, tmp_path, caplog):
    folder = tmp_path / "kept" / "open"
    folder.mkdir(parents=True)
    (folder / "broken.imagerec").write_bytes(b"PK\x03\x04 not really")
    hostile.with_members(hostile.LEGACY / "pets.imagerec", folder / "badexamples.imagerec",
                         hostile.EXAMPLES_CASES["embeddings-nan"])
    (folder / "pets.imagerec").write_bytes((hostile.LEGACY / "pets.imagerec").read_bytes())
    with caplog.at_level(logging.WARNING, logger="imagerec.serving"):
        app = create_app([recognizer], ServeConfig(taught_dir=str(tmp_path / "kept")))
    warnings_ = [r.getMessage() for r in caplog.records if "skipping the kept taught model" in r.getMessage()]
    assert len(warnings_) == 2 and all("\n" not in w for w in warnings_)
    assert any("broken.imagerec" in w for w in warnings_) and any("badexamples.imagerec" in w for w in warnings_)
    with TestClient(app) as client:
        card = client.get("/v1/teach/pets").json()
        assert labels_of(card) == [("cat", 1, 0), ("dog", 1, 0), ("hotdog", 2, 0)] and card["kept"] is True
        assert answer(client, photos, "hot_dog.jpg", model="pets") == "hotdog"


def test_two_keys_teaching_the_same_name_never_see_each_others_classes(recognizer, photos, tmp_path):
    config = ServeConfig(api_keys=(KEY_A, KEY_B, KEY_C))
    a, b, c = ({"x-api-key": key} for key in (KEY_A, KEY_B, KEY_C))
    with TestClient(create_app([recognizer], config)) as client:
        lesson(client, "hot dog", ["hotdog_train_0.bmp", "hotdog_train_1.bmp"], photos, headers=a)
        lesson(client, "bird", ["parrot.jpg", "owl.jpg"], photos, headers=b)
        assert labels_of(client.get("/v1/teach/taught", headers=a).json()) == [("hot dog", 2, 2)]
        assert labels_of(client.get("/v1/teach/taught", headers=b).json()) == [("bird", 2, 2)]
        assert_error(client.get("/v1/teach/taught", headers=c), 404)
        assert_error(client.get("/v1/teach/taught"), 401)
        assert answer(client, photos, "cat_1080p.jpg", headers=a) == "hot dog"
        assert answer(client, photos, "cat_1080p.jpg", headers=b) == "bird"
        assert_error(client.post("/v1/predict?model=taught", files={"file": photos["parrot.jpg"]}, headers=c), 404)
        listed = {key: [(m["name"], m["labels"]) for m in client.get("/v1/models", headers=h).json()["models"]]
                  for key, h in (("a", a), ("b", b), ("c", c))}
        assert listed == {"a": [("mobilenet_v2", 1000), ("taught", 1)], "b": [("mobilenet_v2", 1000), ("taught", 1)],
                          "c": [("mobilenet_v2", 1000)]}
        saved = client.get("/v1/models/taught/file", headers=b)
        (tmp_path / "b.imagerec").write_bytes(saved.content)
        assert imagerec.load(tmp_path / "b.imagerec").labels == ["bird"]
        # Changes under one key leave the other's model alone.
        assert client.delete("/v1/teach/taught", headers=a).json() == {"deleted": "taught"}
        assert labels_of(client.get("/v1/teach/taught", headers=b).json()) == [("bird", 2, 2)]


def test_keys_keep_their_own_models_across_a_restart(recognizer, photos, tmp_path):
    config = ServeConfig(api_keys=(KEY_A, KEY_B), taught_dir=str(tmp_path))
    a, b = {"x-api-key": KEY_A}, {"x-api-key": KEY_B}
    with TestClient(create_app([recognizer], config)) as client:
        lesson(client, "hot dog", ["hotdog_train_0.bmp", "hotdog_train_1.bmp"], photos, headers=a)
        lesson(client, "bird", ["parrot.jpg", "owl.jpg"], photos, headers=b)
        for headers in (a, b):
            assert client.post("/v1/teach/taught/keep", headers=headers).json()["kept"]
    assert not any(KEY_A in str(p) or KEY_B in str(p) for p in tmp_path.rglob("*"))  # keys never written
    with TestClient(create_app([recognizer], config)) as client:
        assert labels_of(client.get("/v1/teach/taught", headers=a).json()) == [("hot dog", 2, 2)]
        assert labels_of(client.get("/v1/teach/taught", headers=b).json()) == [("bird", 2, 2)]
    # Without the key that made it, a kept model is not served to anyone.
    with TestClient(create_app([recognizer], ServeConfig(api_keys=(KEY_B,), taught_dir=str(tmp_path)))) as client:
        assert labels_of(client.get("/v1/teach/taught", headers=b).json()) == [("bird", 2, 2)]
        assert_error(client.get("/v1/teach/taught", headers=a), 401)


def test_an_imagerec_file_opens_as_a_taught_model(client, photos, tmp_path, recognizer):
    reply = client.post("/v1/teach/pets/open", files={"file": ("pets.imagerec", (hostile.LEGACY / "pets.imagerec").read_bytes())})
    assert reply.status_code == 200, reply.text
    card = reply.json()
    assert card["model"] == "pets" and card["kept"] is False and card["estimate"] is None
    assert labels_of(card) == [("cat", 1, 0), ("dog", 1, 0), ("hotdog", 2, 0)]
    assert answer(client, photos, "hot_dog.jpg", model="pets") == "hotdog"
    # Teaching more into it works like any taught model.
    more = lesson(client, "owl", ["owl.jpg", "parrot.jpg"], photos, model="pets").json()["card"]
    assert labels_of(more)[-1] == ("owl", 2, 2)
    # A kept file opens with its example thumbnails.
    with TestClient(create_app([recognizer], ServeConfig(taught_dir=str(tmp_path)))) as keeper:
        teach_two(keeper, photos)
        kept = keeper.post("/v1/teach/taught/keep").json()
    opened = client.post("/v1/teach/again/open",
                         files={"file": ("taught.imagerec", (tmp_path / "open/taught.imagerec").read_bytes())}).json()
    assert opened["classes"] == kept["classes"] and opened["estimate"] == kept["estimate"]
    assert_error(client.post("/v1/teach/mobilenet_v2/open", files={"file": ("pets.imagerec", (hostile.LEGACY / "pets.imagerec").read_bytes())}),
                 400, "already served")


@pytest.mark.parametrize("case", sorted(hostile.OPEN_UPLOAD_CASES))
def test_a_hostile_or_wrong_upload_to_open_is_a_one_line_400(case, client, photos, tmp_path):
    teach_two(client, photos)
    name, content = hostile.OPEN_UPLOAD_CASES[case](tmp_path)
    reply = client.post("/v1/teach/taught/open", files={"file": (name, content)})
    assert_error(reply, 400)
    assert str(tmp_path) not in reply.text and "imagerec-open-" not in reply.text  # no server paths
    assert labels_of(client.get("/v1/teach/taught").json()) == [("hot dog", 3, 3), ("cat", 3, 3)]  # unchanged


@pytest.mark.parametrize("case", sorted(hostile.EXAMPLES_CASES))
def test_an_upload_with_damaged_examples_is_a_400(case, client, tmp_path):
    path = hostile.with_members(hostile.LEGACY / "pets.imagerec", tmp_path / "pets.imagerec", hostile.EXAMPLES_CASES[case])
    assert_error(client.post("/v1/teach/pets/open", files={"file": ("pets.imagerec", path.read_bytes())}), 400, "kept examples")
    assert_error(client.get("/v1/teach/pets"), 404)


@pytest.mark.parametrize("case", sorted(hostile.TEACH_REQUEST_CASES))
def test_bad_requests_to_the_teaching_routes_are_one_line_4xx(case, client, photos):
    lesson(client, "cat", ["cat_train_0.bmp", "cat_720p.jpg"], photos)
    lesson(client, "dog", ["dog_train_0.bmp", "owl.jpg"], photos)
    before = client.get("/v1/teach/taught").json()
    method, path, options = hostile.TEACH_REQUEST_CASES[case]
    reply = client.request(method, path, **options)
    assert 400 <= reply.status_code < 500, reply.text
    assert "\n" not in reply.json()["error"]["message"]
    assert client.get("/v1/teach/taught").json() == before  # nothing lost


def test_teach_answers_its_old_fields_and_the_card(client, photos):
    reply = lesson(client, "hot dog", ["hotdog_train_0.bmp", "hotdog_train_1.bmp"], photos).json()
    assert set(reply) == {"model", "classes", "examples", "label", "card"}
    assert reply["classes"] == ["hot dog"] and reply["examples"] == {"hot dog": 2} and reply["label"] == "hot dog"
    assert reply["model"]["name"] == "taught" and reply["model"]["learned"] is True


def test_serve_takes_a_taught_folder(monkeypatch, tmp_path, recognizer):
    import uvicorn
    from typer.testing import CliRunner

    from imagerec.cli import app

    (tmp_path / "open").mkdir()
    (tmp_path / "open" / "pets.imagerec").write_bytes((hostile.LEGACY / "pets.imagerec").read_bytes())
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **kwargs: served.setdefault("app", application))
    result = CliRunner().invoke(app, ["serve", "--taught-dir", str(tmp_path), "--log-level", "warning"])
    assert result.exit_code == 0, result.output
    with TestClient(served["app"], base_url="http://127.0.0.1") as client:  # the Host names it answers
        assert client.get("/v1/teach/pets").json()["kept"] is True


def test_a_taught_model_keeps_a_bounded_number_of_examples(client, photos, monkeypatch):
    from imagerec.serving import teach

    monkeypatch.setattr(teach, "MAX_EXAMPLES_PER_MODEL", 3)
    assert lesson(client, "cat", ["cat_train_0.bmp", "cat_720p.jpg"], photos).status_code == 200
    assert_error(lesson(client, "dog", ["dog_train_0.bmp", "owl.jpg"], photos), 400, "at most 3")
    assert labels_of(client.get("/v1/teach/taught").json()) == [("cat", 2, 2)]


def test_a_burst_of_near_copies_then_a_second_class_still_recognises_the_first(client, photos):
    """A camera burst is near-identical frames: the "unknown" threshold is measured again after every
    lesson, and never from a frame against its own twin (which put it at 1.0: everything was unknown)."""
    burst = lesson(client, "cat", ["cat_720p.jpg"] * 4, photos).json()
    assert burst["card"]["classes"][0]["count"] == 4
    assert lesson(client, "hot dog", ["hotdog_train_0.bmp", "hotdog_train_1.bmp"], photos).status_code == 200
    for name, expected in [("cat_1080p.jpg", "cat"), ("hotdog_train_0.bmp", "hot dog")]:
        result = client.post("/v1/predict?model=taught", files={"file": photos[name]}).json()["results"][0]
        assert result["label"] == expected, result
    parrot = client.post("/v1/predict?model=taught", files={"file": photos["parrot.jpg"]}).json()["results"][0]
    assert parrot["unknown"] is True
