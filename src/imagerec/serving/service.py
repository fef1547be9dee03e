"""The service behind the routes: loaded models, admission, decoding, batching.

Nothing here knows about HTTP. A :class:`ModelHost` wraps one
:class:`~imagerec.recognizer.Recognizer` with a :class:`MicroBatcher`;
``await host.predict(images, top_k)`` admits the images (or raises
:class:`QueueFullError` at once), decodes them on a thread pool so the event
loop never decodes, queues the pixel arrays for the batcher and returns one
:class:`~imagerec.recognizer.FileResult` per image: predictions, or the error
for that image.
A :class:`ModelRegistry` holds the hosts by name; a taught model may also
belong to a *scope* (the API key that taught it, :func:`key_scope`), so the
same name under two keys is two models and :meth:`ModelRegistry.scoped`
gives the view one caller sees.

>>> import asyncio, imagerec
>>> registry = ModelRegistry(ServeConfig())
>>> host = registry.add("mobilenet_v2", imagerec.load("mobilenet_v2"))
>>> photo = open("../shared/photos/parrot.jpg", "rb").read()
>>> outcome = asyncio.run(host.predict([NamedImage("parrot.jpg", photo)], top_k=1))[0]
>>> outcome.predictions[0].label
'macaw'
>>> registry.close()
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core.errors import ImageDecodeError, ImagerecError, ImageTooLargeError, UnknownModelError, UsageError
from ..core.images import Detail, load_model_input, stack
from ..recognizer import FileResult, Prediction, Recognizer
from .batching import BatcherClosedError, BatchStats, MicroBatcher, QueueFullError
from .config import ServeConfig
from .metrics import Metrics

__all__ = [
    "NamedImage",
    "ModelHost",
    "ModelRegistry",
    "ScopedRegistry",
    "key_scope",
    "UploadTooLargeError",
    "QueueFullError",
    "BatcherClosedError",
]


class UploadTooLargeError(ImageTooLargeError):
    """One image's bytes are over ``max_image_bytes`` (not its pixel count)."""


@dataclass(frozen=True)
class NamedImage:
    """The bytes of one uploaded image and the name to report it by.

    ``error`` is set instead when the request already showed the image is
    unusable (bad base64, unsupported source) so it is reported in place.
    """

    name: str
    content: bytes = b""
    error: ImagerecError | None = None


class ModelHost:
    """One recognizer served through a micro-batcher with bounded admission."""

    def __init__(
        self,
        name: str,
        recognizer: Recognizer,
        config: ServeConfig,
        metrics: Metrics,
        decode_pool: ThreadPoolExecutor,
        heavy_pool: ThreadPoolExecutor | None = None,
        scope: str | None = None,
    ) -> None:
        self.name = name
        self.scope = scope  # the API key's scope of a taught model; None: every caller's
        self.recognizer = recognizer
        self.config = config
        self.metrics = metrics
        self._pool = decode_pool
        self._heavy_pool = heavy_pool or decode_pool
        self._lock = threading.Lock()
        self._admitted = 0
        self._decoding = 0  # admitted images not yet handed to the batcher
        self.batcher: MicroBatcher[tuple[np.ndarray, int], list[Prediction]] = MicroBatcher(
            self._run_batch,
            max_batch=config.max_batch,
            max_wait=config.max_wait_ms / 1000.0,
            # Admission below never lets more than max_queue images in, so
            # the batcher's own bound is only a second line of defence.
            max_queue=config.max_queue,
            on_batch=self._record_batch,
            # Wait for more only while admitted images are still being decoded.
            expecting=lambda: self._decoding,
            name=f"batcher-{name}",
        )

    def describe(self) -> dict:
        """Name, label count, input size and checksum, for ``GET /v1/models``."""
        recognizer = self.recognizer
        return {
            "name": self.name,
            "labels": recognizer.num_classes,
            "input_size": list(recognizer.preprocessing.size),
            "sha256": recognizer.sha256,
            "can_embed": recognizer.can_embed,
            "learned": getattr(recognizer, "head", None) is not None,
        }

    @property
    def in_flight(self) -> int:
        return self._admitted

    async def predict(self, images: Sequence[NamedImage], top_k: int) -> list[FileResult]:
        """Predictions (or an error) for each image, in order.

        Raises :class:`QueueFullError` before doing any work when admitting
        the images would take the host over ``max_queue``.
        """
        if not 1 <= top_k <= self.config.max_top_k:
            raise UsageError(f"top_k must be between 1 and {self.config.max_top_k}, got {top_k}")
        self._admit(len(images))
        try:
            loop = asyncio.get_running_loop()
            outcomes = await asyncio.gather(*(self._predict_one(loop, image, top_k) for image in images))
        finally:
            self._release(len(images))
        for outcome in outcomes:
            self.metrics.images.inc(model=self.name, outcome="ok" if outcome.ok else "error")
        return list(outcomes)

    def close(self) -> None:
        self.batcher.close()

    # -- internals --------------------------------------------------------

    def _admit(self, count: int) -> None:
        with self._lock:
            if self._admitted + count > self.config.max_queue:
                self.metrics.rejected.inc(model=self.name)
                raise QueueFullError(
                    f"model {self.name!r} is busy ({self._admitted} images in flight, limit "
                    f"{self.config.max_queue}); retry in a moment"
                )
            self._admitted += count
            self._decoding += count
            self.metrics.queue_depth.set(self._admitted, model=self.name)

    def _release(self, count: int) -> None:
        with self._lock:
            self._admitted -= count
            self.metrics.queue_depth.set(self._admitted, model=self.name)

    def _decoded(self) -> None:
        with self._lock:
            self._decoding -= 1

    async def _predict_one(self, loop: asyncio.AbstractEventLoop, image: NamedImage, top_k: int) -> FileResult:
        # Three ranked classes at least, so a draft-mode near-tie can be seen and refined.
        depth = max(top_k, 3)
        try:
            if image.error is not None:
                return FileResult(image.name, error=image.error)
            try:
                decoded = await loop.run_in_executor(self._pool, self._decode_unless_heavy, image)
                if decoded is None:  # a big picture without draft mode: decoded when the CPU is otherwise idle
                    decoded = await loop.run_in_executor(self._heavy_pool, self._decode, image, "draft")
                array, approximate = decoded
            except ImagerecError as exc:
                return FileResult(image.name, error=exc)
            future = self.batcher.submit((array, depth))
        finally:
            self._decoded()
        # Cancelling the awaiting task (timeout, client gone) cancels the
        # queued item too, so the batcher skips it.
        predictions = await asyncio.wrap_future(future)
        if approximate:
            predictions = await self._refine(loop, image, depth, predictions)
        return FileResult(image.name, predictions=predictions[:top_k])

    @staticmethod
    def _margin(predictions: list[Prediction]) -> float:
        scores = [p.score for p in predictions if p.index >= 0][:2]
        return scores[0] - scores[1] if len(scores) == 2 else float("inf")

    async def _refine(
        self, loop: asyncio.AbstractEventLoop, image: NamedImage, depth: int, first: list[Prediction]
    ) -> list[Prediction]:
        """The answer from finer decodes while it is a near-tie, as :meth:`Recognizer.refine` gives."""
        predictions, level, approximate = first, "draft", True
        while approximate and (detail := self.recognizer.next_detail(self._margin(predictions), level)):
            try:
                array, approximate = await loop.run_in_executor(self._pool, self._decode, image, detail)
            except ImagerecError:
                return predictions  # decoded once already, so this cannot happen short of running out of memory
            predictions = await asyncio.wrap_future(self.batcher.submit((array, depth)))
            level = detail
        return predictions

    def _decode_unless_heavy(self, image: NamedImage) -> tuple[np.ndarray, bool] | None:
        return None if _heavy(image.content) else self._decode(image, "draft")

    def _decode(self, image: NamedImage, detail: Detail) -> tuple[np.ndarray, bool]:
        size = len(image.content)
        if size > self.config.max_image_bytes:
            raise UploadTooLargeError(
                f"image is {size:,} bytes, over the limit of {self.config.max_image_bytes:,} bytes", path=image.name
            )
        stream = io.BytesIO(image.content)
        stream.name = image.name  # error messages name the upload, not "<bytes>"
        try:
            return load_model_input(stream, self.recognizer.preprocessing, limits=self.config.limits, detail=detail)
        except MemoryError as exc:
            raise ImageDecodeError("out of memory while decoding", path=image.name) from exc

    def _run_batch(self, items: list[tuple[np.ndarray, int]]) -> list[list[Prediction]]:
        # One backend call for the whole batch at the largest top_k asked
        # for; a smaller top_k is a prefix of the same ranking.
        deepest = max(top_k for _, top_k in items)
        ranked = self.recognizer.predict_batch(stack([array for array, _ in items]), top_k=deepest)
        return [predictions[:top_k] for predictions, (_, top_k) in zip(ranked, items)]

    def _record_batch(self, stats: BatchStats) -> None:
        self.metrics.batch_size.observe(stats.size, model=self.name)
        self.metrics.inference.observe(stats.seconds, model=self.name)


class ModelRegistry:
    """The models a service answers with, by name; the first is the default."""

    def __init__(self, config: ServeConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self._hosts: dict[tuple[str | None, str], ModelHost] = {}  # by (scope, name)
        self._lock = threading.Lock()
        self.decode_pool = ThreadPoolExecutor(
            max_workers=config.decode_threads, thread_name_prefix="imagerec-serve-decode"
        )
        # One low-priority thread for big pictures that have no cheap reduced
        # decode (PNG, TIFF, WebP...): a stream of them cannot starve photos.
        self.heavy_pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="imagerec-serve-heavy", initializer=_lower_priority
        )

    def add(self, name: str, recognizer: Recognizer, *, replace: bool = False, scope: str | None = None) -> ModelHost:
        """Serve ``recognizer`` as ``name`` (in ``scope``); ``replace`` swaps out an existing one."""
        host = ModelHost(name, recognizer, self.config, self.metrics, self.decode_pool, self.heavy_pool, scope)
        with self._lock:
            old = self._hosts.get((scope, name))
            if old is not None and not replace:
                host.close()
                raise UsageError(f"a model named {name!r} is already being served")
            self._hosts[(scope, name)] = host
        if old is not None:
            old.close()
        return host

    def remove(self, name: str, *, scope: str | None = None) -> None:
        """Stop serving ``name`` of ``scope`` (its queued images are answered first)."""
        with self._lock:
            host = self._hosts.pop((scope, name), None)
        if host is None:
            raise UnknownModelError(f"no model named {name!r} is served here", name=name)
        host.close()

    def get(self, name: str | None = None, *, scope: str | None = None) -> ModelHost:
        """The host named ``name`` (``scope``'s own first), or the default one when ``name`` is empty."""
        with self._lock:
            if not self._hosts:
                raise UnknownModelError("no model is loaded", name=name)
            if not name:
                return next(iter(self._hosts.values()))
            host = self._hosts.get((scope, name)) or self._hosts.get((None, name))
            if host is None:
                known = ", ".join(h.name for (owner, _), h in self._hosts.items() if owner in (None, scope))
                raise UnknownModelError(f"no model named {name!r} is served here; served: {known}", name=name)
            return host

    def __contains__(self, name: str) -> bool:
        return (None, name) in self._hosts

    def has(self, name: str, scope: str | None = None) -> bool:
        """Whether ``scope`` sees a model named ``name`` (its own or everyone's)."""
        return (scope, name) in self._hosts or (None, name) in self._hosts

    @property
    def hosts(self) -> list[ModelHost]:
        with self._lock:
            return list(self._hosts.values())

    def visible(self, scope: str | None) -> list[ModelHost]:
        """The hosts a caller of ``scope`` sees: everyone's and its own."""
        with self._lock:
            return [host for (owner, _), host in self._hosts.items() if owner in (None, scope)]

    def scoped(self, scope: str | None) -> "ScopedRegistry":
        return ScopedRegistry(self, scope)

    @property
    def ready(self) -> bool:
        hosts = self.hosts
        return bool(hosts) and all(host.batcher.alive for host in hosts)

    def close(self) -> None:
        for host in self.hosts:
            host.close()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.heavy_pool.shutdown(wait=False, cancel_futures=True)


class ScopedRegistry:
    """A :class:`ModelRegistry` as one caller sees it: names resolve to that caller's taught models first."""

    def __init__(self, registry: ModelRegistry, scope: str | None) -> None:
        self.registry = registry
        self.scope = scope

    def get(self, name: str | None = None) -> ModelHost:
        return self.registry.get(name, scope=self.scope)

    def __contains__(self, name: str) -> bool:
        return self.registry.has(name, self.scope)

    @property
    def hosts(self) -> list[ModelHost]:
        return self.registry.visible(self.scope)

    @property
    def ready(self) -> bool:
        return self.registry.ready

    def __getattr__(self, name: str):
        # Everything else (decode pools, config, metrics) is the registry's own.
        return getattr(self.registry, name)


def key_scope(key: str | None) -> str | None:
    """The scope of taught models made with API key ``key``: a digest that never shows the key.

    >>> key_scope(None) is None, len(key_scope("correct-horse-battery-staple"))
    (True, 16)
    """
    if not key:
        return None
    return hashlib.sha256(b"imagerec-taught-scope\0" + key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


HEAVY_PIXELS = 4_000_000  # above this, a picture JPEG draft mode cannot shrink is decoded at low priority


def _heavy(content: bytes) -> bool:
    """Whether decoding ``content`` costs far more than a photo: many pixels and no draft mode.

    Only the header is read. JPEGs never are (draft mode decodes them at
    the model's scale); what Pillow cannot open goes the normal way, to its error.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(content)) as probe:
            return probe.format not in ("JPEG", "MPO") and probe.width * probe.height > HEAVY_PIXELS
    except Exception:
        return False


def _lower_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: the nice value is per thread)."""
    import os
    import sys

    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 15)
        except OSError:
            pass
