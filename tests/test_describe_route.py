"""POST /v1/describe: a title and a description per photo, in each body form /v1/predict takes."""

from __future__ import annotations

import asyncio
import base64
import io
import warnings
from pathlib import Path

import pytest
from PIL import Image

warnings.filterwarnings("ignore", message=".*httpx2.*")  # starlette's TestClient nags about httpx

from fastapi.testclient import TestClient  # noqa: E402

from imagerec.serving import ServeConfig, create_app  # noqa: E402

KEY = "k3y-0123456789-abcdefghij"
PETS_TITLE = "Dog (Italian greyhound), July 2010"


@pytest.fixture(scope="module")
def client(recognizer):
    with TestClient(create_app([recognizer], ServeConfig())) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def pets(photos_dir: Path) -> bytes:
    return (photos_dir / "pets.jpg").read_bytes()


def parrot_in_paris(photos_dir: Path) -> bytes:
    """The parrot photo with EXIF written by Pillow: taken in Paris on 1 June 2019 with an iPhone 8."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 8"
    exif.get_ifd(0x8769)[36867] = "2019:06:01 12:00:00"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 24.0), "E", (2.0, 21.0, 8.0)
    image = Image.open(photos_dir / "parrot.jpg").convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def test_each_body_form_gets_the_photos_title_and_description(client, pets):
    forms = [
        client.post("/v1/describe", files={"file": ("pets.jpg", pets)}),
        client.post("/v1/describe", json={"images": [{"content": base64.b64encode(pets).decode()}]}),
        client.post("/v1/describe", content=pets, headers={"content-type": "image/jpeg"}),
    ]
    for reply in forms:
        assert reply.status_code == 200, reply.text
        document = reply.json()
        assert document["model"] == "mobilenet_v2"
        [result] = document["results"]
        assert result["title"] == PETS_TITLE
        assert result["description"].startswith("A dog (Italian greyhound), mostly ")
        assert result["description"].endswith("taken on 31 July 2010 with a Panasonic DMC-G1.")
    assert forms[0].json()["results"][0]["name"] == "pets.jpg"


def test_the_description_names_the_place_of_the_gps_position(client, photos_dir: Path):
    reply = client.post("/v1/describe?model=mobilenet_v2", files={"file": ("parrot.jpg", parrot_in_paris(photos_dir))})
    assert reply.status_code == 200, reply.text
    result = reply.json()["results"][0]
    assert result["title"] == "Bird (macaw), Paris, June 2019"
    assert result["description"].endswith("taken on 1 June 2019 in Paris, Île-de-France, France with an Apple iPhone 8.")


def test_a_file_that_is_not_a_photo_fails_alone(client, pets):
    reply = client.post("/v1/describe", files=[("a", ("notes.txt", b"not a photo")), ("b", ("pets.jpg", pets))])
    assert reply.status_code == 200, reply.text
    bad, good = reply.json()["results"]
    assert bad["name"] == "notes.txt" and bad["error"]["code"] == 400 and "title" not in bad
    assert good["title"] == PETS_TITLE
    alone = client.post("/v1/describe", files={"file": ("notes.txt", b"not a photo")})
    assert alone.status_code == 400 and alone.json()["error"]["code"] == 400
    assert alone.json()["results"][0]["name"] == "notes.txt"


def test_an_unknown_model_is_a_clear_error(client, pets):
    reply = client.post("/v1/describe?model=nope", files={"file": ("pets.jpg", pets)})
    assert reply.status_code == 404
    assert "nope" in reply.json()["error"]["message"]


def test_the_route_needs_the_api_key_like_the_others(recognizer, pets):
    with TestClient(create_app([recognizer], ServeConfig(api_keys=(KEY,)))) as keyed:
        assert keyed.post("/v1/describe", files={"file": ("pets.jpg", pets)}).status_code == 401
        reply = keyed.post("/v1/describe", files={"file": ("pets.jpg", pets)}, headers={"x-api-key": KEY})
        assert reply.status_code == 200 and reply.json()["results"][0]["title"] == PETS_TITLE


def test_reading_exif_colours_and_place_runs_off_the_event_loop(client, pets, monkeypatch):
    import imagerec.serving.routers.describe as route

    seen = []
    real = route.describe_image

    def watching(*args):
        try:
            asyncio.get_running_loop()
            seen.append("on the event loop")
        except RuntimeError:
            seen.append("off the loop")
        return real(*args)

    monkeypatch.setattr(route, "describe_image", watching)
    assert client.post("/v1/describe", files={"file": ("pets.jpg", pets)}).status_code == 200
    assert seen == ["off the loop"]


def test_a_taught_models_unknown_answer_is_not_described_as_its_closest_class(recognizer, photos_dir):
    """A parrot shown to a cat / hot-dog model is "unknown": its description names no class."""
    shots = photos_dir / "few-shot"
    with TestClient(create_app([recognizer], ServeConfig())) as client:
        for label, names in [("hot dog", ["hotdog_train_0.bmp", "hotdog_train_1.bmp"]),
                             ("cat", ["cat_train_0.bmp"])]:
            files = [("file", (name, (shots / name).read_bytes())) for name in names]
            assert client.post("/v1/teach", data={"label": label, "model": "snacks"}, files=files).status_code == 200
        photo = ("parrot.jpg", (photos_dir / "parrot.jpg").read_bytes())
        answer = client.post("/v1/predict?model=snacks", files={"file": photo}).json()["results"][0]
        assert answer["unknown"] is True
        said = client.post("/v1/describe?model=snacks", files={"file": photo}).json()["results"][0]
    assert "hot dog" not in said["description"] and "cat" not in said["description"].lower()
    assert said["description"].startswith("Nothing recognised with confidence")
