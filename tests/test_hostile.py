"""The hostile-input corpus of issue 20, replayed: images, archives, requests,
model files and the catalog. Generators live in ``tests/hostile``; the attacks
that held before issue 20 are listed in ``hostile.HELD`` with the tests that
replay them, and the first test here checks those tests still exist."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message=".*httpx2.*")

from fastapi.testclient import TestClient  # noqa: E402

import hostile  # noqa: E402
from imagerec.core.errors import DatasetError, ImageTooLargeError  # noqa: E402
from imagerec.core.images import Limits, Preprocessing, load_image  # noqa: E402
from imagerec.data import datasets_dir, load_dataset  # noqa: E402
from imagerec.serving import ServeConfig, create_app  # noqa: E402

TESTS = Path(__file__).parent


def test_every_attack_that_held_is_still_replayed():
    for attack, tests in hostile.HELD.items():
        for node in tests:
            file, name = node.split("::")
            source = (TESTS / file).read_text(encoding="utf-8")
            assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{attack}: {node} is gone"


@pytest.fixture(scope="module")
def client(recognizer):
    with TestClient(create_app([recognizer], ServeConfig(max_request_bytes=4_000_000))) as test_client:
        yield test_client


# -- images: memory per decode (item 2), metadata bombs (item 10) -------------

PEAK = r"""
import sys
from imagerec.core.images import Preprocessing, load_image
def peak():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
data = open(sys.argv[1], "rb").read()
before = peak()
load_image(data, Preprocessing(size=(224, 224)))
print(peak() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc")
@pytest.mark.parametrize("make", [hostile.float_tiff, hostile.png16, hostile.rgba_png], ids=["float32-tiff", "png16", "rgba-png"])
def test_a_decode_stays_within_the_documented_memory_bound(make, tmp_path):
    side = 5000
    path = tmp_path / "image"
    path.write_bytes(make(side))
    grown = int(subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, check=True).stdout)
    bound = Limits(max_pixels=side * side, max_bytes=path.stat().st_size).decode_bytes
    assert grown < bound, f"one decode took {grown >> 20} MiB, over the documented {bound >> 20} MiB"


def test_high_bit_depth_pictures_still_decode_faithfully():
    import numpy as np
    from PIL import Image

    grey = hostile.encode(Image.fromarray(np.full((3000, 2000), 0.5, np.float32), "F"), "TIFF")
    array = load_image(grey, Preprocessing(size=(224, 224)))
    assert array.shape == (224, 224, 3) and abs(int(array.mean()) - 128) <= 1
    half = hostile.encode(Image.new("RGBA", (3000, 2000), (0, 0, 0, 0)), "PNG")  # transparent: white
    assert load_image(half, Preprocessing(size=(224, 224))).min() == 255


def test_a_ztxt_bomb_is_too_large_not_unrecognised(client):
    bomb = hostile.ztxt_bomb()
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        load_image(bomb)
    reply = client.post("/v1/predict", content=bomb, headers={"content-type": "image/png"})
    assert reply.status_code == 400 and "decompression bomb" in reply.json()["error"]["message"]


# -- archives (item 3) ---------------------------------------------------------


def leftovers() -> list[Path]:
    extracted = datasets_dir() / "extracted"
    return sorted(extracted.iterdir()) if extracted.exists() else []


def test_a_tar_bomb_is_refused_and_leaves_nothing(tmp_path):
    bomb = hostile.tar_bomb(tmp_path / "bomb.tar.gz", members=4, member_bytes=64 * 1024 * 1024)
    assert bomb.stat().st_size < 1_000_000
    before = leftovers()
    with pytest.raises(DatasetError, match="decompression bomb") as caught:
        load_dataset(bomb)
    assert "\n" not in str(caught.value)
    assert leftovers() == before


def test_an_archive_of_too_many_files_is_refused(tmp_path):
    from imagerec.data.archives import ArchiveLimits, extract_archive

    archive = hostile.many_members(tmp_path / "many.tar.gz", 150)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="more than 100 files"):
        extract_archive(archive, cache, ArchiveLimits(max_members=100))
    assert list(cache.iterdir()) == []
    assert extract_archive(archive, cache, ArchiveLimits(max_members=150)).is_dir()


def test_cli_reports_a_tar_bomb_in_one_line(tmp_path):
    bomb = hostile.tar_bomb(tmp_path / "bomb.tar.gz", members=2, member_bytes=64 * 1024 * 1024)
    result = subprocess.run([sys.executable, "-m", "imagerec", "learn", str(bomb), "-o", str(tmp_path / "m.imagerec")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "decompression bomb" in result.stderr


# -- requests (item 7, and attacks that held) -----------------------------------

NINES = "9" * 5000


@pytest.mark.parametrize("route, document", [
    ("/v1/predict", '{"images": [{"content": "aGk="}], "top_k": %s}' % NINES),
    ("/v1/images:annotate", '{"requests": [{"image": {"content": "aGk="}, "features": [{"type": "LABEL_DETECTION", "maxResults": %s}]}]}' % NINES),
])
def test_a_huge_integer_is_a_400(client, route, document):
    reply = client.post(route, content=document, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert "too long" in reply.json()["error"]["message"]


def test_huge_integers_in_forms_and_queries_are_400(client):
    assert client.post(f"/v1/predict?top_k={NINES}", content=b"x", headers={"content-type": "image/png"}).status_code == 400
    reply = client.post("/v1/predict", files={"file": ("x.png", b"x")}, data={"top_k": NINES})
    assert reply.status_code == 400


def test_deep_and_huge_json_is_a_400(client):
    deep = "[" * 100_000 + "]" * 100_000
    assert client.post("/v1/predict", content=deep, headers={"content-type": "application/json"}).status_code == 400
    wide = '{"images": [' + ",".join(['{"content": "aGk="}'] * 10_000) + "]}"
    reply = client.post("/v1/predict", content=wide, headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "too many images" in reply.json()["error"]["message"]


def test_image_uris_are_never_fetched(client, http_server):
    http_server.routes["/secret"] = (200, {}, b"secret")
    document = {"requests": [{"image": {"source": {"imageUri": http_server.url + "/secret"}}, "features": [{"type": "LABEL_DETECTION"}]}]}
    reply = client.post("/v1/images:annotate", json=document)
    assert reply.status_code == 200 and reply.json()["responses"][0]["error"]["code"] == 3
    assert http_server.requests == []


def test_model_names_cannot_reach_files(client):
    for name in ("../../etc/passwd", "..%2f..%2fetc%2fpasswd", "/etc/passwd"):
        reply = client.get(f"/v1/models/{name}/file")
        assert reply.status_code in (404, 400), reply.text
        assert "root:" not in reply.text


# -- model files: one declared schema (item 6), cheap checks first (item 5) ---------

import imagerec  # noqa: E402
from imagerec.core.errors import ChecksumError, ModelFileError  # noqa: E402


def assert_one_line_refusal(path: Path, error: type = ModelFileError) -> str:
    with pytest.raises(error) as caught:
        imagerec.load(path)
    message = str(caught.value)
    assert "\n" not in message and str(path.name) in message
    return message


@pytest.mark.parametrize("case", sorted(hostile.MANIFEST_CASES))
def test_a_malformed_manifest_is_one_line(case, tmp_path, models_dir):
    path = hostile.rewrite_imagerec(hostile.LEGACY / "pets.imagerec", tmp_path / f"{case}.imagerec", hostile.MANIFEST_CASES[case])
    assert_one_line_refusal(path)


@pytest.mark.parametrize("case", sorted(hostile.EXPORTED_CASES))
def test_malformed_exported_metadata_is_one_line(case, tmp_path, models_dir):
    change = hostile.EXPORTED_CASES[case]
    assert_one_line_refusal(hostile.rewrite_onnx_metadata(hostile.LEGACY / "shapes.onnx", tmp_path / f"{case}.onnx", change))
    assert_one_line_refusal(hostile.rewrite_tflite_metadata(hostile.LEGACY / "pets.tflite", tmp_path / f"{case}.tflite", change))


@pytest.mark.parametrize("case", sorted(hostile.KERAS_CASES))
def test_malformed_keras_metadata_is_one_line_before_any_conversion(case, tmp_path, monkeypatch):
    from imagerec.core import keras_backend

    def no_keras(*args, **kwargs):
        raise AssertionError("Keras was imported to open a file whose metadata is malformed")

    monkeypatch.setattr(keras_backend, "import_keras", no_keras)
    path = hostile.rewrite_keras_metadata(hostile.LEGACY / "shapes.keras", tmp_path / f"{case}.keras", hostile.KERAS_CASES[case])
    assert_one_line_refusal(path)


def test_a_head_of_nans_is_refused_not_answered_with_nothing(tmp_path, models_dir):
    import numpy as np

    path = hostile.with_array(hostile.LEGACY / "pets.imagerec", tmp_path / "nan.imagerec", "sums", np.full((3, 1280), np.nan))
    assert "NaN" in assert_one_line_refusal(path)


def test_one_member_under_many_names_is_refused_before_it_is_read(tmp_path):
    path = hostile.many_names_one_member(hostile.LEGACY / "pets.imagerec", tmp_path / "names.imagerec")
    assert "under several names" in assert_one_line_refusal(path)


def test_arrays_are_counted_as_they_will_sit_in_memory(tmp_path):
    def ten_big_arrays(manifest):
        manifest["arrays"] = {f"a{i}": {"file": f"arrays/a{i}.npy", "sha256": "0" * 64, "shape": [200, 1000, 1000],
                                         "dtype": "uint8"} for i in range(10)}
        return manifest

    path = hostile.rewrite_imagerec(hostile.LEGACY / "pets.imagerec", tmp_path / "big.imagerec", ten_big_arrays)
    assert "would take 2,000,000,000 bytes of memory" in assert_one_line_refusal(path)


def test_a_keras_backbone_is_checked_before_it_is_built(tmp_path, models_dir):
    from imagerec import zoo

    def keras_backbone(manifest):
        manifest["backbone"] = {"name": "keras:MobileNetV2", "kind": "keras", "sha256": "0" * 64, "dim": 1280,
                                "options": {"application": "MobileNetV2", "weights": None, "pooling": "avg",
                                            "input_size": [96, 96], "seed": 0}}
        return manifest

    path = hostile.rewrite_imagerec(hostile.LEGACY / "pets.imagerec", tmp_path / "keras.imagerec", keras_backbone)
    exports = zoo.cache_dir().parent / "onnx"
    before = sorted(exports.glob("*")) if exports.exists() else []
    assert_one_line_refusal(path, ChecksumError)
    assert (sorted(exports.glob("*")) if exports.exists() else []) == before  # nothing was built or cached


# -- a keyless server driven by other web pages (item 4) ---------------------------


@pytest.fixture(scope="module")
def guarded(recognizer):
    config = ServeConfig(allowed_hosts=("127.0.0.1", "localhost"), max_taught_models=3, max_taught_per_client=1)
    with TestClient(create_app([recognizer], config), base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


def few_shot(photos_dir, count=2):
    return [("file", (f"{i}.bmp", (photos_dir / "few-shot" / f"hotdog_train_{i}.bmp").read_bytes())) for i in range(count)]


def test_an_unexpected_host_is_refused(guarded):
    assert guarded.get("/healthz").status_code == 200
    assert guarded.get("/healthz", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding
    assert guarded.get("/v1/models", headers={"host": "evil.example:8000"}).status_code == 400


def test_a_cross_origin_teach_is_refused_and_the_own_page_is_not(guarded, photos_dir):
    refused = guarded.post("/v1/teach", data={"label": "x", "model": "evil"}, files=few_shot(photos_dir),
                           headers={"origin": "https://evil.example"})
    assert refused.status_code == 403 and "cross-origin" in refused.json()["error"]["message"]
    rebound = guarded.post("/v1/predict", content=b"x", headers={"content-type": "image/png", "sec-fetch-site": "cross-site"})
    assert rebound.status_code == 403
    own = guarded.post("/v1/predict", files=few_shot(photos_dir, 1), headers={"origin": "http://127.0.0.1:8000"})
    assert own.status_code == 200
    assert "evil" not in [m["name"] for m in guarded.get("/v1/models").json()["models"]]


def test_a_key_lets_a_cross_origin_caller_in(recognizer, photos_dir):
    key = "cross-origin-key-0123456789"
    with TestClient(create_app([recognizer], ServeConfig(api_keys=(key,)))) as client:
        headers = {"origin": "https://app.example", "x-api-key": key}
        assert client.post("/v1/predict", files=few_shot(photos_dir, 1), headers=headers).status_code == 200
        assert client.post("/v1/predict", files=few_shot(photos_dir, 1), headers={"origin": "https://app.example"}).status_code == 403


def test_one_anonymous_caller_cannot_take_every_taught_model_slot(recognizer, photos_dir):
    config = ServeConfig(max_taught_models=3, max_taught_per_client=1)
    with TestClient(create_app([recognizer], config), client=("203.0.113.7", 5000)) as stranger:
        assert stranger.post("/v1/teach", data={"label": "a", "model": "one"}, files=few_shot(photos_dir)).status_code == 200
        second = stranger.post("/v1/teach", data={"label": "a", "model": "two"}, files=few_shot(photos_dir))
        assert second.status_code == 400 and "the limit per caller" in second.json()["error"]["message"]
        more = stranger.post("/v1/teach", data={"label": "b", "model": "one"}, files=few_shot(photos_dir))
        assert more.status_code == 200  # adding classes to its own model is fine


# -- smaller ones (item 10) --------------------------------------------------------


def test_a_client_hanging_up_mid_upload_is_not_a_server_error(recognizer, caplog):
    import asyncio
    import logging

    app = create_app([recognizer])
    messages = iter([{"type": "http.request", "body": b"x" * 1000, "more_body": True}, {"type": "http.disconnect"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/predict", "raw_path": b"/v1/predict", "query_string": b"",
             "headers": [(b"content-type", b"image/jpeg"), (b"content-length", b"100000"), (b"host", b"127.0.0.1")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "scheme": "http", "root_path": "",
             "http_version": "1.1", "asgi": {"version": "3.0"}}
    with caplog.at_level(logging.INFO, logger="imagerec"):
        asyncio.run(app(scope, receive, send))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert any("disconnected" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_a_missing_file_in_a_training_csv_is_one_warning_line(tmp_path, photos_dir, models_dir):
    import shutil

    for name in ("cat_train_0.bmp", "dog_train_0.bmp"):
        shutil.copy(photos_dir / "few-shot" / name, tmp_path / name)
    (tmp_path / "train.csv").write_text("cat_train_0.bmp,cat\ndog_train_0.bmp,dog\nmissing.jpg,dog\n")
    result = subprocess.run([sys.executable, "-m", "imagerec", "learn", str(tmp_path / "train.csv"), "-o", str(tmp_path / "m.imagerec")],
                            capture_output=True, text=True, timeout=300)
    assert "warning: skipped 1 unreadable file(s)" in result.stderr and "missing.jpg" in result.stderr
    assert "DatasetWarning" not in result.stderr and "warnings.warn" not in result.stderr


# -- the catalog: unreadable folders (item 8), damage (item 9), killed runs (item 10) --

from imagerec.library import Catalog, index_library  # noqa: E402


@pytest.fixture
def library(tmp_path, photos_dir):
    import shutil

    root = tmp_path / "library"
    for folder, names in {"a": ("cat_720p.jpg", "parrot.jpg"), "b": ("hot_dog.jpg", "owl.jpg", "pets.jpg")}.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(photos_dir / name, root / folder / name)
    return root


def file_states(catalog: Path) -> dict[str, tuple[str, str | None]]:
    import sqlite3

    with sqlite3.connect(catalog) as db:
        return {path: (status, error) for path, status, error in db.execute("SELECT path, status, error FROM files")}


def test_an_unreadable_folder_keeps_its_photos(library, recognizer, monkeypatch):
    import os

    catalog = library / ".imagerec" / "catalog.db"
    assert index_library(library, models=[recognizer]).new == 5
    real_scandir = os.scandir

    def refuse_b(path):  # what chmod 000 (or a mount that went away) does, even for root
        if os.fspath(path).rstrip("/").endswith("/b"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_b)
    summary = index_library(library, models=[recognizer])
    assert (summary.removed, summary.kept, summary.unreadable) == (0, 3, ["b"])
    states = file_states(catalog)
    assert all(states[f"b/{name}"][0] == "ok" and "stale" in states[f"b/{name}"][1] for name in ("hot_dog.jpg", "owl.jpg", "pets.jpg"))
    from imagerec.library import search

    assert "b/hot_dog.jpg" in [hit.path for hit in search("hotdog", catalog=catalog)]
    monkeypatch.setattr(os, "scandir", real_scandir)
    again = index_library(library, models=[recognizer])
    assert (again.kept, again.unchanged) == (0, 5) and all(error is None for _, error in file_states(catalog).values())


def damage(catalog: Path, seed: int = 0) -> None:
    """600 random bytes every 16 KiB from 40 KiB on (from a third of the file in, if it is smaller)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    data = bytearray(catalog.read_bytes())
    for offset in range(min(40 * 1024, len(data) // 3), len(data) - 600, 16 * 1024):
        data[offset:offset + 600] = rng.integers(0, 256, 600, dtype=np.uint8).tobytes()
    catalog.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_damaged_catalog_is_one_line_and_rebuilds_with_its_models(library, recognizer, models_dir):
    catalog = library / ".imagerec" / "catalog.db"
    taught = str(hostile.LEGACY / "pets.imagerec")
    index_library(library, models=[recognizer, taught])
    with Catalog(catalog) as open_catalog:  # fold the WAL into the file, as a closed catalog is
        open_catalog.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage(catalog)
    for verb in (["search", "dog"], ["similar", str(library / "a" / "parrot.jpg")], ["duplicates"], ["index", str(library)]):
        options = ["--catalog", str(catalog)]
        result = subprocess.run([sys.executable, "-m", "imagerec", *verb, *options], capture_output=True, text=True, timeout=300)
        assert result.returncode != 0, (verb, result.stdout)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, (verb, result.stderr)
        assert "damaged" in result.stderr and "--rebuild" in result.stderr
    summary = index_library(library, models=(), rebuild=True)
    assert summary.new == 5 and sorted(summary.models) == ["mobilenet_v2", "pets"]
    assert Path(summary.rebuilt_from).exists()  # set aside, not deleted
    from imagerec.library import search

    assert search("dog", catalog=catalog)


def test_a_killed_run_does_not_stay_running(library, recognizer):
    import sqlite3

    catalog = library / ".imagerec" / "catalog.db"
    with Catalog(catalog, root=library) as killed:
        killed.acquire_lock()
        killed.start_run(["mobilenet_v2"])  # and then the process dies
    index_library(library, models=[recognizer])
    with sqlite3.connect(catalog) as db:
        runs = db.execute("SELECT status, summary FROM runs ORDER BY id").fetchall()
    assert [status for status, _ in runs] == ["failed", "done"] and "interrupted" in runs[0][1]


def test_a_big_picture_without_draft_mode_is_still_answered(client, photos_dir):
    from PIL import Image

    big = Image.open(photos_dir / "hot_dog.jpg").convert("RGB").resize((2600, 2000))  # 5.2 MP: the low-priority path
    reply = client.post("/v1/predict", content=hostile.encode(big, "PNG"), headers={"content-type": "image/png"})
    assert reply.status_code == 200 and reply.json()["results"][0]["predictions"][0]["label"] == "hotdog"


def test_a_backbone_that_points_to_the_file_itself_is_refused(tmp_path, models_dir):
    path = tmp_path / "self.imagerec"

    def points_to_itself(manifest):
        manifest["backbone"] = {"name": "keras:MobileNetV2", "kind": "keras", "sha256": "0" * 64, "dim": 1280,
                                "options": {"application": "MobileNetV2", "weights": str(path), "pooling": "avg"}}
        return manifest

    hostile.rewrite_imagerec(hostile.LEGACY / "pets.imagerec", path, points_to_itself)
    assert_one_line_refusal(path)
