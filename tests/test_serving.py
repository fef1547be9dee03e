"""The HTTP service in-process: both prediction routes with good and bad input,
/v1/models, health, metrics, API keys, a full queue and a timeout."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*httpx2.*")  # starlette's TestClient nags about httpx

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import imagerec  # noqa: E402
from imagerec.core.preprocessing import Preprocessing  # noqa: E402
from imagerec.recognizer import Recognizer  # noqa: E402
from imagerec.serving import ServeConfig, create_app  # noqa: E402
from imagerec.serving.metrics import Metrics  # noqa: E402

KEY = "k3y-0123456789-abcdefghij"


@pytest.fixture(scope="module")
def photos(photos_dir: Path) -> dict[str, bytes]:
    return {name: (photos_dir / name).read_bytes() for name in ("hot_dog.jpg", "parrot.jpg", "cat_720p.jpg")}


@pytest.fixture(scope="module")
def client(recognizer) -> TestClient:
    app = create_app([recognizer], ServeConfig(max_pixels=40_000_000, max_request_bytes=4_000_000, max_image_bytes=1_000_000))
    with TestClient(app) as test_client:
        yield test_client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def top_label(result: dict) -> str:
    return result["predictions"][0]["label"]


def assert_error(reply: httpx.Response, status: int, fragment: str) -> None:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["code"] == status
    assert fragment in error["message"], error["message"]


def assert_still_serving(client: TestClient, photos: dict[str, bytes]) -> None:
    reply = client.post("/v1/predict", files={"file": ("hot_dog.jpg", photos["hot_dog.jpg"])})
    assert reply.status_code == 200
    assert top_label(reply.json()["results"][0]) == "hotdog"


# -- /v1/predict: good input -------------------------------------------------


def test_predict_multipart_many_files(client, photos):
    files = [("file", (name, data)) for name, data in photos.items()]
    reply = client.post("/v1/predict", files=files, params={"top_k": 3})
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert [r["name"] for r in results] == list(photos)
    assert [top_label(r) for r in results[:2]] == ["hotdog", "macaw"]
    assert all(len(r["predictions"]) == 3 for r in results)
    assert reply.json()["model"] == "mobilenet_v2"


def test_predict_json_and_raw_body_agree(client, photos):
    by_json = client.post("/v1/predict", json={"images": [{"content": b64(photos["parrot.jpg"])}], "top_k": 2})
    raw = client.post("/v1/predict?top_k=2", content=photos["parrot.jpg"], headers={"content-type": "image/jpeg"})
    assert by_json.status_code == raw.status_code == 200
    assert by_json.json()["results"][0]["predictions"] == raw.json()["results"][0]["predictions"]
    assert top_label(raw.json()["results"][0]) == "macaw"


@pytest.mark.parametrize("margin", [0.0, 1.0])
def test_service_refines_draft_mode_near_ties_like_the_api(recognizer, large_jpegs, margin):
    import copy

    served = copy.copy(recognizer)
    served.refine_margin = margin
    expected = served.predict(large_jpegs[:4], top_k=1)
    with TestClient(create_app([served])) as fresh:
        reply = fresh.post("/v1/predict?top_k=1", files=[("file", (p.name, p.read_bytes())) for p in large_jpegs[:4]])
    assert reply.status_code == 200, reply.text
    got = [r["predictions"] for r in reply.json()["results"]]
    assert [len(p) for p in got] == [1, 1, 1, 1]
    assert [(p[0]["index"], round(p[0]["score"], 5)) for p in got] == [(e[0].index, round(e[0].score, 5)) for e in expected]


def test_content_is_sniffed_not_trusted(client, photos):
    # A JPEG sent under a misleading name and content type is still read as a JPEG.
    reply = client.post("/v1/predict", files={"file": ("notes.txt", photos["hot_dog.jpg"], "text/plain")})
    assert reply.status_code == 200
    assert top_label(reply.json()["results"][0]) == "hotdog"


def test_one_bad_image_does_not_spoil_the_others(client, photos):
    files = [("file", ("hot_dog.jpg", photos["hot_dog.jpg"])), ("file", ("notes.txt", b"just text"))]
    reply = client.post("/v1/predict", files=files)
    assert reply.status_code == 200
    good, bad = reply.json()["results"]
    assert top_label(good) == "hotdog"
    assert bad["error"]["code"] == 400 and "notes.txt: not a recognised image" in bad["error"]["message"]


# -- /v1/predict: bad input ----------------------------------------------------


def test_truncated_image(client, photos):
    half = photos["hot_dog.jpg"][: len(photos["hot_dog.jpg"]) // 2]
    reply = client.post("/v1/predict", files={"file": ("half.jpg", half)})
    assert_error(reply, 400, "truncated")
    assert reply.json()["results"][0]["error"]["code"] == 400
    assert_still_serving(client, photos)


def test_non_image(client, photos):
    assert_error(client.post("/v1/predict", files={"file": ("a.pdf", b"%PDF-1.4 hello")}), 400, "not a recognised image")


def bmp_header(width: int, height: int) -> bytes:
    """A BMP that declares a size and carries no pixels (a decompression bomb)."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 16, 0, 0, 14 + len(info)) + info + b"\0" * 16


def test_too_many_pixels_is_400(client, photos):
    reply = client.post("/v1/predict", files={"file": ("bomb.bmp", bmp_header(20_000, 20_000))})
    assert_error(reply, 400, "pixels")
    assert_still_serving(client, photos)


def test_too_many_image_bytes_is_413(client, photos):
    big = photos["hot_dog.jpg"] + b"\0" * 1_000_000  # over max_image_bytes, under max_request_bytes
    assert_error(client.post("/v1/predict", files={"file": ("big.jpg", big)}), 413, "over the limit")


def test_request_body_over_the_limit_is_413_declared_or_streamed(client, photos):
    huge = b"\xff" * 4_100_000
    assert_error(client.post("/v1/predict", content=huge, headers={"content-type": "image/jpeg"}), 413, "request body")

    def chunks():  # no Content-Length: the server counts as it reads
        for _ in range(50):
            yield b"\xff" * 100_000

    assert_error(client.post("/v1/predict", content=chunks(), headers={"content-type": "image/jpeg"}), 413, "at least")
    assert_still_serving(client, photos)


@pytest.mark.parametrize("content_type", ["application/json", "image/jpeg", "multipart/form-data; boundary=x"])
def test_empty_body(client, content_type):
    assert_error(client.post("/v1/predict", content=b"", headers={"content-type": content_type}), 400, "empty")


def test_wrong_content_type_is_415(client, photos):
    assert_error(client.post("/v1/predict", content=b"hello", headers={"content-type": "text/plain"}), 415, "not accepted")
    assert_error(client.post("/v1/predict", data={"note": "no files"}), 415, "not accepted")  # urlencoded form


def test_too_many_images(client, photos):
    files = [("file", (f"{i}.jpg", photos["parrot.jpg"][:100])) for i in range(17)]
    assert_error(client.post("/v1/predict", files=files), 400, "too many images")
    body = {"images": [{"content": "aGk="}] * 17}
    assert_error(client.post("/v1/predict", json=body), 400, "at most 16")


def test_malformed_json(client, photos):
    reply = client.post("/v1/predict", content=b'{"images": [', headers={"content-type": "application/json"})
    assert_error(reply, 400, "not valid JSON")
    assert_error(client.post("/v1/predict", json={"pictures": []}), 400, "expected a JSON object")
    assert_error(client.post("/v1/predict", json={"images": []}), 400, "no images")
    deep = b'{"images": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_error(client.post("/v1/predict", content=deep, headers={"content-type": "application/json"}), 400, "too deeply")
    assert_still_serving(client, photos)


def test_bad_base64(client, photos):
    reply = client.post("/v1/predict", json={"images": [{"content": "***not base64***"}]})
    assert_error(reply, 400, "not valid base64")
    mixed = client.post("/v1/predict", json={"images": [{"content": "@@"}, {"content": b64(photos["parrot.jpg"])}]})
    assert mixed.status_code == 200
    bad, good = mixed.json()["results"]
    assert "base64" in bad["error"]["message"] and top_label(good) == "macaw"


def test_bad_parameters(client, photos):
    raw = {"content": photos["parrot.jpg"], "headers": {"content-type": "image/jpeg"}}
    assert_error(client.post("/v1/predict?top_k=abc", **raw), 400, "top_k")
    assert_error(client.post("/v1/predict?top_k=0", **raw), 400, "top_k must be between")
    assert_error(client.post("/v1/predict?model=nope", **raw), 404, "no model named 'nope'")
    assert_error(client.get("/v1/predict"), 405, "")
    assert_error(client.get("/no/such/route"), 404, "no such route")


# -- /v1/images:annotate ---------------------------------------------------------


def annotate_entry(content, max_results=3, feature="LABEL_DETECTION") -> dict:
    return {"image": {"content": content}, "features": [{"type": feature, "maxResults": max_results}]}


def test_annotate_labels_and_per_image_errors(client, photos):
    body = {
        "requests": [
            annotate_entry(b64(photos["parrot.jpg"]), 2),
            annotate_entry(b64(b"not an image")),
            annotate_entry("%%%"),
            annotate_entry(b64(photos["hot_dog.jpg"]), feature="FACE_DETECTION"),
            {"image": {"source": {"imageUri": "https://example.org/cat.jpg"}}, "features": [{"type": "LABEL_DETECTION"}]},
            annotate_entry(b64(photos["hot_dog.jpg"][:100_000]), 1),
        ]
    }
    reply = client.post("/v1/images:annotate", json=body)
    assert reply.status_code == 200
    responses = reply.json()["responses"]
    assert len(responses) == 6
    labels = responses[0]["labelAnnotations"]
    assert [label["description"] for label in labels][:1] == ["macaw"] and len(labels) == 2
    assert set(labels[0]) == {"description", "score", "topicality"}
    assert 0.5 < labels[0]["score"] <= 1.0
    for response, fragment in zip(
        responses[1:], ["not a recognised image", "base64", "only LABEL_DETECTION", "image.source", "truncated"]
    ):
        assert response["error"]["code"] == 3  # google.rpc.Code INVALID_ARGUMENT
        assert fragment in response["error"]["message"]


def test_annotate_request_errors(client, photos):
    entry = annotate_entry(b64(photos["parrot.jpg"][:10]))
    too_many = client.post("/v1/images:annotate", json={"requests": [entry] * 17})
    assert_error(too_many, 400, "at most 16")
    assert too_many.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert_error(client.post("/v1/images:annotate", content=b"{", headers={"content-type": "application/json"}), 400, "JSON")
    assert_error(client.post("/v1/images:annotate", content=b""), 400, "empty")
    assert_error(client.post("/v1/images:annotate", json={"requests": []}), 400, "empty")
    assert_error(client.post("/v1/images:annotate", json=[1, 2]), 400, "expected a JSON object")
    text = {"content-type": "text/plain"}
    assert_error(client.post("/v1/images:annotate", content=json.dumps({"requests": [entry]}), headers=text), 415, "application/json")
    deep = b"[" * 100_000 + b"]" * 100_000
    assert_error(client.post("/v1/images:annotate", content=deep, headers={"content-type": "application/json"}), 400, "too deeply")
    huge = annotate_entry(b64(photos["parrot.jpg"]), 1e400)  # JSON's 1e400 is a float overflow in Python
    reply = client.post("/v1/images:annotate", content=json.dumps({"requests": [huge]}).replace("Infinity", "1e400"),
                        headers={"content-type": "application/json"})
    assert reply.status_code == 200 and "maxResults must be an integer" in reply.json()["responses"][0]["error"]["message"]
    assert_still_serving(client, photos)


def test_annotate_default_max_results_is_ten(client, photos):
    body = {"requests": [{"image": {"content": b64(photos["parrot.jpg"])}, "features": [{"type": 4}]}]}
    reply = client.post("/v1/images:annotate", json=body)  # numeric enum, as the REST client sends
    assert len(reply.json()["responses"][0]["labelAnnotations"]) == 10


# -- models, health, metrics -----------------------------------------------------


def test_models_health_ready(client, recognizer):
    models = client.get("/v1/models").json()["models"]
    assert models == [
        {
            "name": "mobilenet_v2",
            "labels": 1000,
            "input_size": [224, 224],
            "sha256": recognizer.sha256,
            "can_embed": True,
            "learned": False,
            "default": True,
        }
    ]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"


def metric_value(text: str, name: str, **labels: str) -> float:
    wanted = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
    for line in text.splitlines():
        if line.startswith(name + wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_what_was_sent(recognizer, photos):
    app = create_app([recognizer])
    with TestClient(app) as fresh:
        for _ in range(3):
            fresh.post("/v1/predict", files={"file": ("p.jpg", photos["parrot.jpg"])})
        fresh.post("/v1/predict", files={"file": ("x.txt", b"text")})
        fresh.post("/v1/images:annotate", json={"requests": [annotate_entry(b64(photos["hot_dog.jpg"]))] * 2})
        reply = fresh.get("/metrics")
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = reply.text
    assert metric_value(text, "imagerec_requests_total", method="POST", route="/v1/predict", status="200") == 3
    assert metric_value(text, "imagerec_requests_total", method="POST", route="/v1/predict", status="400") == 1
    assert metric_value(text, "imagerec_requests_total", method="POST", route="/v1/images:annotate", status="200") == 1
    assert metric_value(text, "imagerec_request_duration_seconds_count", route="/v1/predict") == 4
    assert metric_value(text, "imagerec_images_total", model="mobilenet_v2", outcome="ok") == 5
    assert metric_value(text, "imagerec_images_total", model="mobilenet_v2", outcome="error") == 1
    assert metric_value(text, "imagerec_errors_total", kind="400", route="/v1/predict") == 1
    assert metric_value(text, "imagerec_errors_total", kind="image", route="/v1/predict") == 1
    # Every recognised image went through a batch.
    assert metric_value(text, "imagerec_batch_size_sum", model="mobilenet_v2") == 5
    assert "# TYPE imagerec_request_duration_seconds histogram" in text


# -- API keys ----------------------------------------------------------------------


def test_api_keys_are_enforced(recognizer, photos):
    app = create_app([recognizer], ServeConfig(api_keys=(KEY,)))
    image = {"content": photos["parrot.jpg"], "headers": {"content-type": "image/jpeg"}}
    with TestClient(app) as keyed:
        for attempt in (
            keyed.post("/v1/predict", **image),
            keyed.post("/v1/predict", content=image["content"], headers={**image["headers"], "x-api-key": "wrong"}),
            keyed.post(f"/v1/predict?key={KEY[:-1]}", **image),
            keyed.post("/v1/images:annotate", json={"requests": []}),
            keyed.get("/v1/models"),
            keyed.get("/metrics"),
        ):
            assert_error(attempt, 401, "API key")
            assert KEY not in attempt.text
        assert keyed.post("/v1/predict", content=image["content"], headers={**image["headers"], "x-api-key": KEY}).status_code == 200
        assert keyed.post(f"/v1/predict?key={KEY}", **image).status_code == 200
        assert keyed.get("/v1/models", headers={"x-goog-api-key": KEY}).status_code == 200
        # Liveness, readiness and the page itself stay open for probes and browsers.
        assert keyed.get("/healthz").status_code == 200
        assert keyed.get("/readyz").status_code == 200


# -- a full queue and a timeout (a backend held on a gate) ------------------------------


class GatedBackend:
    """Holds every batch until the test opens the gate."""

    input_size = (8, 8)
    outputs = ("scores",)

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()

    def run(self, batch, outputs=("scores",)):
        self.entered.set()
        self.gate.wait(10)
        return {"scores": np.tile(np.array([0.75, 0.25], np.float32), (len(batch), 1))}


def tiny_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def gated_app(**config):
    backend = GatedBackend()
    recognizer = Recognizer(backend, ["red", "blue"], Preprocessing(size=(8, 8)), name="gated")
    return create_app([recognizer], ServeConfig(max_batch=1, **config)), backend


def test_full_queue_gives_503_and_recovers():
    app, backend = gated_app(max_queue=2)
    png = tiny_png()

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            send = lambda: http.post("/v1/predict", content=png, headers={"content-type": "image/png"})  # noqa: E731
            first = asyncio.create_task(send())
            second = asyncio.create_task(send())
            while not backend.entered.is_set():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the second is admitted and waiting behind the first
            refused = await send()
            metrics_text = (await http.get("/metrics")).text
            backend.gate.set()
            done = await asyncio.gather(first, second)
            after = await send()
            return refused, done, after, metrics_text

    refused, done, after, metrics_text = asyncio.run(scenario())
    assert_error(refused, 503, "busy")
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["status"] == "UNAVAILABLE"
    assert [reply.status_code for reply in done] == [200, 200]
    assert after.status_code == 200 and top_label(after.json()["results"][0]) == "red"
    assert metric_value(metrics_text, "imagerec_rejected_total", model="gated") == 1
    assert metric_value(metrics_text, "imagerec_queue_depth", model="gated") == 2


def test_uploads_held_at_once_are_bounded():
    app, backend = gated_app(max_request_bytes=600_000, max_inflight_bytes=1_000_000)
    padded = tiny_png() + b"\0" * 500_000  # Pillow ignores what follows the PNG's end

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            send = lambda: http.post("/v1/predict", content=padded, headers={"content-type": "image/png"})  # noqa: E731
            held = asyncio.create_task(send())
            while not backend.entered.is_set():
                await asyncio.sleep(0.01)
            refused = await send()  # 500 kB more would pass the 1 MB budget
            backend.gate.set()
            return refused, await held, await send()

    refused, held, after = asyncio.run(scenario())
    assert_error(refused, 503, "holding")
    assert refused.headers["retry-after"] == "1"
    assert held.status_code == 200 and after.status_code == 200  # the budget was given back


def test_request_timeout_gives_504_and_the_server_keeps_serving():
    app, backend = gated_app(request_timeout=0.3)
    png = tiny_png()
    with TestClient(app) as gated:
        reply = gated.post("/v1/predict", content=png, headers={"content-type": "image/png"})
        assert_error(reply, 504, "longer than 0.3 s")
        assert reply.json()["error"]["status"] == "DEADLINE_EXCEEDED"
        backend.gate.set()
        assert gated.post("/v1/predict", content=png, headers={"content-type": "image/png"}).status_code == 200


def test_metrics_render_is_valid_exposition_format():
    metrics = Metrics()
    metrics.requests.inc(route='/a"b', method="GET", status="200")
    metrics.batch_size.observe(3, model="m")
    lines = metrics.render().splitlines()
    assert 'imagerec_requests_total{method="GET",route="/a\\"b",status="200"} 1' in lines
    assert 'imagerec_batch_size_bucket{model="m",le="2"} 0' in lines
    assert 'imagerec_batch_size_bucket{model="m",le="4"} 1' in lines
    assert 'imagerec_batch_size_bucket{model="m",le="+Inf"} 1' in lines
    assert "imagerec_batch_size_count{model=\"m\"} 1" in lines


# -- teaching a class (imprint head from issue 4's imagerec.learn / add_examples) ---------


def test_teach_adds_a_class_that_is_then_recognised(recognizer, photos_dir, photos, tmp_path):
    few_shot = photos_dir / "few-shot"

    def lesson(label, names, model=None):
        fields = {"label": label, **({"model": model} if model else {})}
        files = [("file", (name, (few_shot / name).read_bytes())) for name in names]
        return fresh.post("/v1/teach", data=fields, files=files)

    with TestClient(create_app([recognizer])) as fresh:
        first = lesson("hot dog", ["hotdog_train_0.bmp", "hotdog_train_1.bmp"])
        assert first.status_code == 200, first.text
        assert first.json()["classes"] == ["hot dog"] and first.json()["model"]["learned"] is True
        second = lesson("cat", ["cat_train_0.bmp"])
        assert second.json()["classes"] == ["hot dog", "cat"]
        assert second.json()["examples"] == {"hot dog": 2, "cat": 1}
        names = [model["name"] for model in fresh.get("/v1/models").json()["models"]]
        assert names == ["mobilenet_v2", "taught"]
        files = [("file", (n, photos[n])) for n in ("hot_dog.jpg", "cat_720p.jpg")]
        reply = fresh.post("/v1/predict?model=taught", files=files)
        assert [top_label(r) for r in reply.json()["results"]] == ["hot dog", "cat"]
        body = {"requests": [annotate_entry(b64(photos["cat_720p.jpg"]), 1)]}
        annotated = fresh.post("/v1/images:annotate?model=taught", json=body).json()
        assert annotated["responses"][0]["labelAnnotations"][0]["description"] == "cat"
        # The pretrained default model is untouched.
        assert top_label(fresh.post("/v1/predict", files=files[:1]).json()["results"][0]) == "hotdog"

        assert_error(lesson("owl", ["cat_train_0.bmp"], model="mobilenet_v2"), 400, "pretrained model")
        assert_error(lesson("", ["cat_train_0.bmp"]), 400, "class name")
        assert_error(lesson("x", ["cat_train_0.bmp"], model="../etc"), 400, "model name")
        not_image = fresh.post("/v1/teach", data={"label": "notes"}, files={"file": ("a.txt", b"text")})
        assert_error(not_image, 400, "a.txt: not a recognised image")
        assert_error(fresh.post("/v1/teach", data={"label": "nothing"}), 415, "multipart")
        # A failed lesson changes nothing.
        assert fresh.get("/v1/models").json()["models"][1]["labels"] == 2

        # The taught model can be taken away: as .imagerec, or as one checked TFLite graph.
        saved = fresh.get("/v1/models/taught/file")
        assert saved.status_code == 200 and 'filename="taught.imagerec"' in saved.headers["content-disposition"]
        (tmp_path / "taught.imagerec").write_bytes(saved.content)
        assert imagerec.load(tmp_path / "taught.imagerec").labels == ["hot dog", "cat"]
        lite = fresh.get("/v1/models/taught/file?format=tflite")
        (tmp_path / "taught.tflite").write_bytes(lite.content)
        alone = imagerec.load(tmp_path / "taught.tflite", labels=["hot dog", "cat"])
        assert alone.predict(photos_dir / "cat_720p.jpg", top_k=1)[0][0].label == "cat"
        assert_error(fresh.get("/v1/models/mobilenet_v2/file"), 400, "pretrained model")
        assert_error(fresh.get("/v1/models/taught/file?format=zip"), 400, "unknown format")


def test_teach_can_be_turned_off(recognizer, photos):
    with TestClient(create_app([recognizer], ServeConfig(teach=False))) as fresh:
        reply = fresh.post("/v1/teach", data={"label": "x"}, files={"file": ("p.jpg", photos["parrot.jpg"])})
        assert_error(reply, 404, "turned off")


def test_an_embedding_model_is_not_served(models_dir):
    from imagerec.core.errors import UsageError
    from imagerec.serving import load_models

    with pytest.raises(UsageError, match="embedding model with no labels"):
        load_models(["mobilenet_v2", "mobilenet_v1_embedder"])
