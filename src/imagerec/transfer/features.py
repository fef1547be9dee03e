"""Embeddings from frozen backbones, cached on disk.

A :class:`~imagerec.transfer.backbones.base.Backbone` turns a uint8
``N×H×W×3`` batch into ``N×D`` float32 embeddings: zoo models with an
embedding output run through LiteRT (``mobilenet_v2`` 1280-d,
``mobilenet_v1_embedder`` 1024-d), Keras applications through ONNX Runtime
(see :mod:`imagerec.transfer.backbones.keras`).

:func:`extract` embeds many images with decoding in parallel and an
:class:`EmbeddingCache` (SQLite) keyed by the backbone's sha256, the image
file's content hash, the preprocessing and the augmentation variant — so
fitting another head, or adding photos, only embeds what was never seen.
Images that cannot be decoded are reported, never fatal, unless asked.

>>> from imagerec.transfer.backbones import get_backbone
>>> from imagerec.transfer.features import extract
>>> backbone = get_backbone("mobilenet_v2")
>>> result = extract(["../shared/photos/parrot.jpg"], backbone, cache=None)
>>> result.embeddings.shape
(1, 1, 1280)
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from ..core.errors import ImageDecodeError, ModelFileError, UsageError
from ..core.images import DEFAULT_LIMITS, ImageSource, Limits, describe_source, load_pil, resize, stack
from ..core.pipeline import default_workers
from ..core.preprocessing import Preprocessing
from ..core.progress import progress as progress_bar
from ..core.sqlite import open_database
from ..zoo import cache_dir
from .backbones import Backbone, get_backbone

__all__ = [
    "VARIANTS",
    "variants_for",
    "EmbeddingCache",
    "default_cache",
    "Extraction",
    "extract",
    "content_key",
]

# Deterministic augmentations (names go into cache keys, so never rename one).
# Crops keep 80 % of each side of the decoded photo before the model's resize.
VARIANTS: tuple[str, ...] = (
    "original", "flip", "crop_center", "crop_center_flip", "crop_tl", "crop_tr", "crop_bl", "crop_br",
)


def variants_for(augment: int) -> tuple[str, ...]:
    """The original plus the first ``augment`` augmentations.

    >>> variants_for(2)
    ('original', 'flip', 'crop_center')
    """
    if not 0 <= augment < len(VARIANTS):
        raise UsageError(f"augment must be between 0 and {len(VARIANTS) - 1} extra copies, got {augment}")
    return VARIANTS[: augment + 1]


# -- the cache ----------------------------------------------------------------------


def default_cache_path() -> Path:
    """``<imagerec cache>/embeddings.sqlite`` (``IMAGEREC_CACHE_DIR`` moves it)."""
    return cache_dir().parent / "embeddings.sqlite"


class EmbeddingCache:
    """Embeddings in one SQLite file, keyed by a hex digest (see :func:`extract`).

    SQLite makes concurrent readers and writers safe and a killed process
    harmless: a write is a transaction, so the file never holds half an
    embedding.

    >>> import tempfile, numpy as np
    >>> cache = EmbeddingCache(tempfile.mkdtemp() + "/e.sqlite")
    >>> cache.put({"k": np.ones(3, np.float32)}); cache.get(["k", "x"])["k"].tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = open_database(self.path)
            self._db.execute("CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, dim INTEGER, data BLOB)")
        except sqlite3.DatabaseError as exc:
            raise ModelFileError(
                f"{self.path}: not a usable embedding cache ({exc}); delete the file to start a new one",
                path=str(self.path),
            ) from exc

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for key, dim, data in self._db.execute(
                    f"SELECT key, dim, data FROM embeddings WHERE key IN ({marks})", chunk
                ):
                    vector = np.frombuffer(data, dtype=np.float32)
                    if vector.size == dim:  # anything else is damage: recompute it
                        found[key] = vector
        return found

    def put(self, items: dict[str, np.ndarray]) -> None:
        rows = [(key, int(v.size), np.ascontiguousarray(v, np.float32).tobytes()) for key, v in items.items()]
        with self._lock:
            # One transaction for the batch: all rows or none, and one fsync.
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", rows)

    def count(self) -> int:
        """How many embeddings are stored."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


_DEFAULT_CACHES: dict[Path, EmbeddingCache] = {}


def default_cache() -> EmbeddingCache:
    """The process-wide cache at :func:`default_cache_path` (opened once per path)."""
    path = default_cache_path()
    if path not in _DEFAULT_CACHES:
        _DEFAULT_CACHES[path] = EmbeddingCache(path)
    return _DEFAULT_CACHES[path]


# -- reading and hashing sources ------------------------------------------------------


def content_key(source: ImageSource, limits: Limits = DEFAULT_LIMITS) -> tuple[str | None, object]:
    """``(sha256 of the content, what to decode)`` for one source.

    Files are read once: the bytes are hashed and then decoded. Sources
    whose content cannot be pinned (URLs) get ``None`` and are not cached.
    """
    if isinstance(source, np.ndarray):
        digest = hashlib.sha256(f"array{source.shape}{source.dtype}".encode())
        digest.update(np.ascontiguousarray(source).tobytes())
        return digest.hexdigest(), source
    if isinstance(source, Image.Image):
        digest = hashlib.sha256(f"pil{source.size}{source.mode}".encode())
        digest.update(source.tobytes())
        return digest.hexdigest(), source
    if isinstance(source, (str, os.PathLike)) and not str(source).startswith(("http://", "https://")):
        where = os.fspath(source)
        try:
            size = os.stat(where).st_size
        except FileNotFoundError as exc:
            raise ImageDecodeError("no such file", path=where) from exc
        except OSError as exc:
            raise ImageDecodeError(f"cannot read file ({exc.strerror or exc})", path=where) from exc
        limits.check_bytes(size, where)
        try:
            data = Path(where).read_bytes()
        except IsADirectoryError as exc:
            raise ImageDecodeError("is a folder, not an image file", path=where) from exc
        except OSError as exc:
            raise ImageDecodeError(f"cannot read file ({exc.strerror or exc})", path=where) from exc
        return hashlib.sha256(data).hexdigest(), data
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return hashlib.sha256(data).hexdigest(), data
    if hasattr(source, "read"):
        data = source.read(limits.max_bytes + 1)
        if isinstance(data, (bytes, bytearray)):
            limits.check_bytes(len(data), describe_source(source))
            return hashlib.sha256(data).hexdigest(), bytes(data)
    return None, source


def _apply_variant(image: Image.Image, variant: str) -> Image.Image:
    if variant == "original":
        return image
    if variant == "flip":
        return ImageOps.mirror(image)
    width, height = image.size
    cw, ch = max(1, round(width * 0.8)), max(1, round(height * 0.8))
    corner = variant.split("_")[1]
    left = {"center": (width - cw) // 2, "tl": 0, "bl": 0, "tr": width - cw, "br": width - cw}[corner]
    top = {"center": (height - ch) // 2, "tl": 0, "tr": 0, "bl": height - ch, "br": height - ch}[corner]
    cropped = image.crop((left, top, left + cw, top + ch))
    return ImageOps.mirror(cropped) if variant.endswith("_flip") else cropped


def _decode_variants(
    payload: object, where: str, preprocessing: Preprocessing, variants: Sequence[str], limits: Limits
) -> list[np.ndarray]:
    try:
        if variants == ("original",) or list(variants) == ["original"]:
            image = load_pil(payload, preprocessing, limits=limits)
            return [np.asarray(resize(image, preprocessing), dtype=np.uint8)]
        # Augmented crops need the photo at more than the model's size.
        image = load_pil(payload, None, limits=limits)
        return [np.asarray(resize(_apply_variant(image, v), preprocessing), dtype=np.uint8) for v in variants]
    except ImageDecodeError as exc:
        if exc.path == where:
            raise
        # Decoding from the bytes read for hashing: name the real file.
        raise type(exc)(exc.reason, path=where) from exc


# -- extraction ---------------------------------------------------------------------


@dataclass
class Extraction:
    """What :func:`extract` returns.

    ``embeddings`` is ``N×V×D`` (V variants per source); rows of sources
    that failed are zero and ``ok`` is False for them, with the reason in
    ``errors`` (``{position: message}``).
    """

    embeddings: np.ndarray
    ok: np.ndarray
    errors: dict[int, str]
    variants: tuple[str, ...]
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else float("nan")


def _key(backbone: Backbone, content: str, variant: str) -> str:
    text = json.dumps(
        [backbone.sha256, backbone.name, backbone.options, backbone.preprocessing.to_dict(), variant, content],
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def extract(
    sources: Sequence[ImageSource],
    backbone: Backbone | str,
    *,
    variants: Sequence[str] = ("original",),
    cache: EmbeddingCache | None | bool = True,
    on_error: str = "skip",
    batch_size: int = 32,
    workers: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    progress: bool | None = None,
) -> Extraction:
    """Embed every source (and each requested augmentation variant).

    ``cache=True`` uses :func:`default_cache`; ``None``/``False`` disables
    caching. ``on_error="raise"`` raises the first ``ImageDecodeError``
    instead of recording it. ``progress`` shows a bar (default: on a terminal).
    """
    if on_error not in ("skip", "raise"):
        raise UsageError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    variants = tuple(variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise UsageError(f"unknown augmentation variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    backbone = get_backbone(backbone)
    store = default_cache() if cache is True else (None if cache is None or cache is False else cache)
    sources = list(sources)
    n, v = len(sources), len(variants)
    out = np.zeros((n, v, backbone.dim), np.float32)
    ok = np.ones(n, bool)
    errors: dict[int, str] = {}
    started = time.perf_counter()
    workers = workers or default_workers()

    def fail(position: int, exc: ImageDecodeError) -> None:
        if on_error == "raise":
            raise exc
        ok[position] = False
        errors[position] = str(exc)

    computed = cached = 0
    # A bar for one image would only flicker.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imagerec-embed") as pool, progress_bar(
        n, "embedding", enabled=progress if n > 1 else False
    ) as advance:
        for start in range(0, n, batch_size):
            chunk = range(start, min(n, start + batch_size))
            hashed = list(pool.map(lambda i: _hash_safely(sources[i], limits), chunk))
            keys: dict[int, list[str] | None] = {}
            payloads: dict[int, object] = {}
            for i, (digest, payload, error) in zip(chunk, hashed):
                if error is not None:
                    fail(i, error)
                    continue
                keys[i] = [_key(backbone, digest, var) for var in variants] if digest and store is not None else None
                payloads[i] = payload
            found = store.get([k for ks in keys.values() if ks for k in ks]) if store else {}
            todo = []
            for i, ks in keys.items():
                if ks and all(k in found for k in ks):
                    out[i] = np.stack([found[k] for k in ks])
                    cached += 1
                else:
                    todo.append(i)
            decoded = list(
                pool.map(
                    lambda i: _decode_safely(payloads[i], describe_source(sources[i]), backbone.preprocessing, variants, limits),
                    todo,
                )
            )
            arrays, owners = [], []
            for i, (images, error) in zip(todo, decoded):
                if error is not None:
                    fail(i, error)
                    continue
                arrays.extend(images)
                owners.append(i)
            if arrays:
                embeddings = backbone.embed_batch(stack(arrays)).reshape(len(owners), v, -1)
                fresh = {}
                for i, rows in zip(owners, embeddings):
                    out[i] = rows
                    if keys.get(i):
                        fresh.update({k: row for k, row in zip(keys[i], rows)})
                if fresh and store is not None:
                    store.put(fresh)
                computed += len(owners)
            advance(len(chunk))
    return Extraction(out, ok, errors, variants, computed, cached, time.perf_counter() - started)


def _hash_safely(source, limits):
    try:
        digest, payload = content_key(source, limits)
        return digest, payload, None
    except ImageDecodeError as exc:
        return None, None, exc


def _decode_safely(payload, where, preprocessing, variants, limits):
    try:
        return _decode_variants(payload, where, preprocessing, variants, limits), None
    except ImageDecodeError as exc:
        return None, exc
    except MemoryError:
        return None, ImageDecodeError("out of memory while decoding", path=where)
    except Exception as exc:  # an unexpected Pillow failure on one image must not stop the others
        return None, ImageDecodeError(f"cannot prepare the image ({type(exc).__name__}: {exc})", path=where)
