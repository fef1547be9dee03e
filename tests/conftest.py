"""Shared fixtures: the ../shared folder, an isolated cache, a local HTTP server."""

from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

# Tests that build Keras models import keras themselves; imagerec runs Keras on PyTorch.
os.environ.setdefault("KERAS_BACKEND", "torch")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGEREC_SHARED", ROOT.parent / "shared"))
MODELS = SHARED / "models"
PHOTOS = SHARED / "photos"


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test may download from the internet or touch the user's cache."""
    saved = {key: os.environ.get(key) for key in ("IMAGEREC_OFFLINE", "IMAGEREC_CACHE_DIR", "IMAGEREC_MODEL_DIR")}
    os.environ["IMAGEREC_OFFLINE"] = "1"
    os.environ["IMAGEREC_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    if MODELS.is_dir():
        os.environ["IMAGEREC_MODEL_DIR"] = str(MODELS)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not here (the ../shared folder is needed)")
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return _require(MODELS)


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return _require(PHOTOS)


@pytest.fixture(scope="session")
def recognizer(models_dir: Path):
    import imagerec

    return imagerec.load("mobilenet_v2")


def upscaled_jpegs(photos_dir: Path, folder: Path, size: tuple[int, int]) -> list[Path]:
    """Every shared .jpg and .bmp photo resized to ``size`` and saved as a quality-90 JPEG in ``folder``."""
    from PIL import Image

    paths = []
    for source in sorted(photos_dir.glob("*.jpg")) + sorted(photos_dir.glob("*.bmp")):
        path = folder / f"{source.stem}.jpg"
        Image.open(source).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def large_jpegs(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The shared photos as 1600×1200 JPEGs: large enough for draft mode to scale them by 1/4."""
    return upscaled_jpegs(photos_dir, tmp_path_factory.mktemp("large-jpegs"), (1600, 1200))


class LocalServer:
    """A tiny HTTP server on 127.0.0.1 whose routes tests define.

    A route maps a path to ``(status, headers, body)``; ``body`` may be a
    callable that writes to the socket itself (to cut a transfer short).
    """

    def __init__(self, *, keep_alive: bool = False) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes | Callable]] = {}
        self.requests: list[str] = []
        self.clients: list[tuple[str, int]] = []  # the client's address of each request: one per connection
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.1 keeps a connection open between requests (only for routes with a bytes body).
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                server.clients.append(self.client_address)
                status, headers, body = server.routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if callable(body):
                    self.end_headers()
                    body(self.wfile)
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def insert_generated_photos(cat, model_id: int, taken, cameras, where, labels, scores) -> None:
    """Catalog rows for generated photos, ids 1..n (in the caller's transaction): each content with its EXIF
    time, camera and GPS position (``where[i]``: (latitude, longitude) or None), one file ``pNNNNN.jpg`` each
    — every tenth from the fourth deleted ("gone", never listed) — and its predictions by ``model_id``."""
    for i in range(len(taken)):
        cid = i + 1
        cat.db.execute(
            "INSERT INTO contents (id, sha256, taken_at, camera, latitude, longitude, facts) VALUES (?, ?, ?, ?, ?, ?, 1)",
            (cid, f"{cid:064x}", taken[i], cameras[i], *(where[i] or (None, None))))
        status = "gone" if i % 10 == 3 else "ok"
        cat.db.execute("INSERT INTO files (path, size, mtime_ns, content_id, status, indexed_at)"
                       " VALUES (?, 1, 0, ?, ?, 'x')", (f"p{cid:05d}.jpg", cid, status))
        for label, score in zip(dict.fromkeys(labels[i].tolist()), scores[i]):
            cat.db.execute("INSERT INTO predictions VALUES (?, ?, ?, ?)", (cid, model_id, label, float(score)))


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    server = LocalServer()
    yield server
    server.close()
