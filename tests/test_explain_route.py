"""POST /v1/explain: the heat map of each photo, as the web page and other clients read it."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import imagerec
from imagerec.serving import ServeConfig, create_app

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
KEY = "explain-test-key"


@pytest.fixture(scope="module")
def client(recognizer) -> TestClient:
    shapes = imagerec.load(str(LEGACY / "shapes.onnx"))  # a second, tiny model: cheap explanations
    with TestClient(create_app({"mobilenet_v2": recognizer, "shapes": shapes},
                               ServeConfig(max_image_bytes=2_000_000))) as client:
        yield client


def _overlay(result: dict) -> Image.Image:
    prefix = "data:image/jpeg;base64,"
    assert result["overlay"].startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(result["overlay"][len(prefix):])))


def test_a_photo_gets_its_answer_explained_with_an_overlay(client, photos_dir: Path) -> None:
    with open(photos_dir / "cat_720p.jpg", "rb") as photo:
        reply = client.post("/v1/explain", files={"file": ("cat.jpg", photo, "image/jpeg")})
    assert reply.status_code == 200, reply.text
    document = reply.json()
    assert document["model"] == "mobilenet_v2"
    (result,) = document["results"]
    assert result["name"] == "cat.jpg" and result["label"] == "Egyptian cat"
    assert result["method"] == "occlusion"  # an int8 TFLite model gives no gradients
    assert (result["width"], result["height"]) == (1280, 720)
    x, y = result["peak"]
    assert 0 <= x < 1280 and 0 <= y < 720
    overlay = _overlay(result)
    assert overlay.format == "JPEG" and overlay.size == (512, 288)  # ≤ 512 px, the photo's shape


def test_a_chosen_label_json_images_and_a_bad_one_in_place(client, photos_dir: Path) -> None:
    good = base64.b64encode((photos_dir / "parrot.jpg").read_bytes()).decode()
    reply = client.post("/v1/explain?label=lorikeet",
                        json={"images": [{"content": good, "name": "parrot.jpg"}, {"content": "not base64!"}]})
    assert reply.status_code == 200, reply.text
    first, second = reply.json()["results"]
    assert first["label"] == "lorikeet" and first["name"] == "parrot.jpg"
    assert (first["width"], first["height"]) == (512, 929)
    assert max(_overlay(first).size) == 512
    assert second["name"] == "images[1]" and second["error"]["code"] == 400 and "base64" in second["error"]["message"]


def test_raw_bytes_and_another_served_model(client, photos_dir: Path) -> None:
    reply = client.post("/v1/explain?model=shapes&method=occlusion", content=(photos_dir / "hot_dog.jpg").read_bytes(),
                        headers={"content-type": "image/jpeg"})
    assert reply.status_code == 200, reply.text
    document = reply.json()
    assert document["model"] == "shapes"
    (result,) = document["results"]
    assert result["name"] == "body" and result["method"] == "occlusion"
    assert result["label"] in ("circle", "square", "triangle", "cross")
    assert _overlay(result).size == (512, 384)  # hot_dog.jpg is 512×384: not enlarged


@pytest.mark.parametrize("query, message", [
    ("label=no+such+thing", "not one of the model's"),
    ("method=grad-cam", "gives no gradients"),
    ("method=lime", "unknown explanation method"),
    ("model=nothing", "no model named"),
])
def test_a_bad_request_is_one_line_in_the_error_shape(client, photos_dir: Path, query: str, message: str) -> None:
    with open(photos_dir / "parrot.jpg", "rb") as photo:
        reply = client.post(f"/v1/explain?{query}", files={"file": photo})
    assert reply.status_code in (400, 404), reply.text
    error = reply.json()["error"]
    assert message in error["message"] and "\n" not in error["message"]
    assert error["status"] in ("INVALID_ARGUMENT", "NOT_FOUND")


def test_when_every_photo_fails_the_status_is_the_failure(client) -> None:
    reply = client.post("/v1/explain", files={"file": ("notes.txt", b"not an image", "text/plain")})
    assert reply.status_code == 400
    document = reply.json()
    assert document["error"]["code"] == 400
    assert document["results"][0]["name"] == "notes.txt" and "error" in document["results"][0]


def test_the_api_key_is_required(recognizer, photos_dir: Path) -> None:
    with TestClient(create_app([recognizer], ServeConfig(api_keys=(KEY,)))) as keyed:
        with open(photos_dir / "parrot.jpg", "rb") as photo:
            refused = keyed.post("/v1/explain", files={"file": photo})
        assert refused.status_code == 401 and refused.json()["error"]["status"] == "UNAUTHENTICATED"
        with open(photos_dir / "parrot.jpg", "rb") as photo:
            allowed = keyed.post("/v1/explain", files={"file": photo}, headers={"x-api-key": KEY})
        assert allowed.status_code == 200 and allowed.json()["results"][0]["label"] == "macaw"


def test_a_large_photo_is_answered_in_its_own_pixels(client, photos_dir: Path) -> None:
    def explained(photo: Image.Image) -> dict:
        buffer = io.BytesIO()
        photo.save(buffer, format="JPEG", quality=92)
        reply = client.post("/v1/explain", content=buffer.getvalue(), headers={"content-type": "image/jpeg"})
        assert reply.status_code == 200, reply.text
        return reply.json()["results"][0]

    cat = Image.open(photos_dir / "cat_720p.jpg").convert("RGB")
    small, large = explained(cat), explained(cat.resize((2560, 1440), Image.Resampling.BILINEAR))
    assert (large["width"], large["height"]) == (2560, 1440) and large["label"] == small["label"]
    assert abs(large["peak"][0] - 2 * small["peak"][0]) <= 24 and abs(large["peak"][1] - 2 * small["peak"][1]) <= 24
    assert _overlay(large).size == (512, 288)


def test_a_photo_over_the_pixel_limit_is_refused_in_one_line(recognizer, photos_dir: Path) -> None:
    with TestClient(create_app([recognizer], ServeConfig(max_pixels=400_000))) as small, \
            open(photos_dir / "cat_720p.jpg", "rb") as photo:  # 921,600 pixels
        reply = small.post("/v1/explain", files={"file": ("cat.jpg", photo, "image/jpeg")})
    assert reply.status_code == 400
    error = reply.json()["results"][0]["error"]
    assert "pixels" in error["message"] and "\n" not in error["message"]


def test_more_photos_than_may_wait_is_a_503_with_retry_after(client, photos_dir: Path, monkeypatch) -> None:
    from imagerec.serving.routers import explain as route

    monkeypatch.setattr(route, "MAX_WAITING", 1)
    photo = (photos_dir / "hot_dog.jpg").read_bytes()
    reply = client.post("/v1/explain", files=[("a", ("a.jpg", photo)), ("b", ("b.jpg", photo))])
    assert reply.status_code == 503 and "Retry-After" in reply.headers
    assert reply.json()["error"]["status"] == "UNAVAILABLE"
