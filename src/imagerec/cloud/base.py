"""The one interface every label provider (cloud or local) implements.

A :class:`Provider` turns a batch of images into labels — lists of
:class:`imagerec.recognizer.Prediction` carrying the provider's own scores
(scaled to 0–1) — sending as many images per request as the service allows.
This module also owns what all the cloud adapters share: making an image fit
a service's upload limits (re-encode and downscale only when needed),
bounded retries with backoff that honour ``Retry-After``, and keeping
credentials out of every message.

>>> from imagerec.cloud.base import UploadLimits
>>> UploadLimits(max_bytes=5 * 1024 * 1024, formats=("JPEG", "PNG")).max_bytes
5242880
"""

from __future__ import annotations

import email.utils
import io
import math
import os
import random
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from PIL import Image

from ..core.errors import CloudError, ImageDecodeError, UsageError
from ..core.images import SUPPORTED_FORMATS, ImageSource, Limits, describe_source, load_pil
from ..recognizer import FileResult, Prediction

__all__ = [
    "UploadLimits",
    "Upload",
    "LabelResult",
    "Provider",
    "UnavailableProvider",
    "RetryPolicy",
    "Retryable",
    "prepare_upload",
    "parse_retry_after",
    "one_line",
]

_T = TypeVar("_T")

# Pillow's format names; the services name the same formats (MPO is a JPEG
# with extra pictures inside, which every service reads as a JPEG).
_JPEG_LIKE = {"JPEG", "MPO"}


@dataclass(frozen=True)
class UploadLimits:
    """What a service accepts in one uploaded image.

    ``max_bytes`` bounds the encoded file, ``max_pixels`` the width×height
    and ``max_side`` each side; ``formats`` lists the Pillow format names
    that may be sent unchanged (anything else is re-encoded as JPEG).
    """

    max_bytes: int
    max_pixels: int | None = None
    max_side: int | None = None
    formats: tuple[str, ...] = ("JPEG", "PNG")


@dataclass(frozen=True)
class Upload:
    """An image ready to send: its bytes and what was done to it."""

    name: str
    data: bytes
    format: str
    size: tuple[int, int]  # (width, height) of what is sent
    original_size: tuple[int, int]
    reencoded: bool


# One image's labels (or error) and latency is the recognizer's FileResult
# with ``seconds`` set; the name this package gave it stays importable.
LabelResult = FileResult


def one_line(text: object, limit: int = 300) -> str:
    """Collapse whitespace so a service's message fits on one line.

    >>> one_line("Bad image\\n  data.")
    'Bad image data.'
    """
    flat = re.sub(r"\s+", " ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- uploads ---------------------------------------------------------------


def _source_bytes(source: ImageSource, where: str) -> bytes | None:
    """The file's own bytes when the source is a file or bytes; else None."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source))
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ImageDecodeError("no such file", path=where) from exc
        except IsADirectoryError as exc:
            raise ImageDecodeError("is a folder, not an image file", path=where) from exc
        except OSError as exc:
            raise ImageDecodeError(f"cannot read file ({exc.strerror or exc})", path=where) from exc
    return None


def prepare_upload(source: ImageSource, limits: UploadLimits, *, name: str | None = None) -> Upload:
    """Make ``source`` acceptable to a service with ``limits``.

    The original bytes are sent when the format is accepted and the file is
    within every limit (no quality lost, the service sees EXIF as-is).
    Otherwise the picture is decoded upright, scaled down to fit the pixel
    and side limits, and saved as JPEG, lowering quality and then size until
    it fits ``max_bytes``.

    >>> import numpy as np
    >>> upload = prepare_upload(np.zeros((4000, 3000, 3), np.uint8), UploadLimits(max_bytes=10**6, max_side=1000))
    >>> upload.size, upload.reencoded
    ((750, 1000), True)
    """
    where = name or describe_source(source)
    raw = _source_bytes(source, where)
    if raw is not None:
        if not raw:
            raise ImageDecodeError("empty file (0 bytes)", path=where)
        try:
            with Image.open(io.BytesIO(raw), formats=SUPPORTED_FORMATS) as probe:
                fmt, size = probe.format or "", probe.size
        except Exception as exc:  # Pillow signals bad data with many types
            raise ImageDecodeError("not a recognised image (expected JPEG, PNG, BMP, GIF, WebP or TIFF)", path=where) from exc
        accepted = fmt in limits.formats or (fmt in _JPEG_LIKE and "JPEG" in limits.formats)
        if accepted and len(raw) <= limits.max_bytes and _fits(size, limits):
            return Upload(where, raw, "JPEG" if fmt in _JPEG_LIKE else fmt, size, size, False)
        image = load_pil(raw, limits=Limits(max_bytes=max(len(raw), 1)))
    else:
        image = load_pil(source)
    original = image.size
    return _reencode(image, limits, where, original)


def _fits(size: tuple[int, int], limits: UploadLimits) -> bool:
    width, height = size
    if limits.max_pixels is not None and width * height > limits.max_pixels:
        return False
    if limits.max_side is not None and max(width, height) > limits.max_side:
        return False
    return True


def _reencode(image: Image.Image, limits: UploadLimits, where: str, original: tuple[int, int]) -> Upload:
    width, height = image.size
    scale = 1.0
    if limits.max_pixels is not None and width * height > limits.max_pixels:
        scale = min(scale, math.sqrt(limits.max_pixels / (width * height)))
    if limits.max_side is not None and max(width, height) > limits.max_side:
        scale = min(scale, limits.max_side / max(width, height))
    image = image.convert("RGB")
    # Try a few qualities at each size; shrink by 3/4 per side when even
    # quality 70 is too big. Each step is bounded, so this always ends.
    for _ in range(12):
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        resized = image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)
        for quality in (90, 80, 70):
            buffer = io.BytesIO()
            resized.save(buffer, format="JPEG", quality=quality, optimize=True)
            if buffer.tell() <= limits.max_bytes:
                return Upload(where, buffer.getvalue(), "JPEG", size, original, True)
        scale *= 0.75
    raise ImageDecodeError(f"cannot fit the image into {limits.max_bytes:,} bytes", path=where)


# -- retries ---------------------------------------------------------------


class Retryable(Exception):
    """Raised inside a request function: try again (after ``retry_after`` s if given)."""

    def __init__(self, error: CloudError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    >>> parse_retry_after("7")
    7.0
    >>> parse_retry_after("soon") is None
    True
    """
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``attempts`` tries in all, exponential backoff with
    jitter from ``base_delay``, a service's ``Retry-After`` honoured up to
    ``max_delay`` seconds (a longer wait gives up instead of hanging)."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to sleep before try ``attempt + 1``; None means give up."""
        if attempt >= self.attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_delay else None
        backoff = self.base_delay * (2 ** (attempt - 1))
        return min(self.max_delay, backoff * (0.5 + random.random() / 2))


# -- providers -------------------------------------------------------------


class Provider(ABC):
    """Labels for images from one service (or a local model).

    Subclasses set ``name``, ``limits``, ``max_batch`` (images per request)
    and implement :meth:`_annotate`, which sends one request and returns, for
    each upload, its predictions or a per-image :class:`CloudError`.

    >>> class Echo(Provider):
    ...     name = "echo"
    ...     def _annotate(self, uploads, top_k):
    ...         return [[Prediction(u.format.lower(), 1.0, -1)] for u in uploads]
    >>> import numpy as np
    >>> Echo().labels([np.zeros((8, 8, 3), np.uint8)])[0][0].label
    'jpeg'
    """

    name: str = "provider"
    limits: UploadLimits = UploadLimits(max_bytes=4 * 1024 * 1024, formats=("JPEG", "PNG"))
    max_batch: int = 1
    max_request_bytes: int | None = None  # encoded payload of one request

    def __init__(self, *, retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.requests_sent = 0
        self._aliases: dict[str, tuple[str, ...]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # -- what subclasses provide ------------------------------------------

    @abstractmethod
    def _annotate(self, uploads: Sequence[Upload], top_k: int) -> list[list[Prediction] | CloudError]:
        """Send one request for ``uploads``; a whole-request failure raises."""

    def _secrets(self) -> Iterable[str]:
        """Credential strings that must never appear in a message."""
        return ()

    def _request_size(self, upload: Upload) -> int:
        return len(upload.data)

    def setup(self) -> None:
        """Do the one-time work (load a model, build a client, get a token)
        so that it is not counted as the first image's latency."""

    def aliases(self, label: str) -> tuple[str, ...]:
        """Other names the provider gave for ``label`` (e.g. Rekognition's Aliases)."""
        return self._aliases.get(label, ())

    def prepare(self, source: ImageSource, name: str | None = None) -> Upload:
        """``source`` as this provider will upload it (downscaled when over its limits)."""
        return prepare_upload(source, self.limits, name=name)

    # -- public API -------------------------------------------------------

    def labels(self, images: Sequence[ImageSource], top_k: int = 10) -> list[list[Prediction]]:
        """The provider's labels for each image, best first; raises on the first error."""
        results = self.label_files(images, top_k=top_k)
        for result in results:
            if result.error is not None:
                raise result.error
        return [result.predictions for result in results]

    def label_files(
        self,
        sources: Sequence[ImageSource],
        top_k: int = 10,
        *,
        on_result: Callable[[FileResult], None] | None = None,
    ) -> list[FileResult]:
        """One :class:`~imagerec.recognizer.FileResult` per source, in order, with its
        ``seconds``; errors are kept per image.

        ``on_result`` is called with each result as it is known (for progress).

        A failure that will repeat for every image (credentials, quota,
        configuration) stops the run: the images not yet sent get the same
        error instead of a request each.
        """
        sources = self._checked_request(sources, top_k)
        results: list[FileResult | None] = [None] * len(sources)
        pending: list[tuple[int, Upload]] = []
        for i, source in enumerate(sources):
            name = describe_source(source)
            try:
                pending.append((i, self.prepare(source, name)))
            except ImageDecodeError as exc:
                results[i] = FileResult(name, error=exc, seconds=0.0)
                if on_result is not None:
                    on_result(results[i])
        fatal: CloudError | None = None
        for chunk in self._chunks(pending):
            names = [upload.name for _, upload in chunk]
            if fatal is not None:
                for (i, _), name in zip(chunk, names):
                    results[i] = FileResult(name, error=fatal, seconds=0.0)
                    if on_result is not None:
                        on_result(results[i])
                continue
            started = time.perf_counter()
            try:
                answers = self._call([upload for _, upload in chunk], top_k)
            except CloudError as exc:
                answers = [exc] * len(chunk)
                if exc.kind in ("auth", "quota", "config"):
                    fatal = exc
            share = (time.perf_counter() - started) / len(chunk)
            for (i, _), name, answer in zip(chunk, names, answers):
                if isinstance(answer, CloudError):
                    results[i] = FileResult(name, error=answer, seconds=share)
                else:
                    results[i] = FileResult(name, predictions=list(answer)[:top_k], seconds=share)
                if on_result is not None:
                    on_result(results[i])
        return [result for result in results if result is not None]

    # -- internals --------------------------------------------------------

    @staticmethod
    def _checked_request(sources: Iterable[ImageSource], top_k: int) -> list[ImageSource]:
        """``sources`` as a list; a usage error for ``top_k`` below 1 or no images at all."""
        if top_k < 1:
            raise UsageError(f"top_k must be at least 1, got {top_k}")
        sources = list(sources)
        if not sources:
            raise UsageError("no images given")
        return sources

    def _chunks(self, pending: list[tuple[int, Upload]]) -> Iterable[list[tuple[int, Upload]]]:
        chunk: list[tuple[int, Upload]] = []
        size = 0
        for item in pending:
            cost = self._request_size(item[1])
            too_big = self.max_request_bytes is not None and chunk and size + cost > self.max_request_bytes
            if len(chunk) >= self.max_batch or too_big:
                yield chunk
                chunk, size = [], 0
            chunk.append(item)
            size += cost
        if chunk:
            yield chunk

    def _call(self, uploads: list[Upload], top_k: int) -> list[list[Prediction] | CloudError]:
        def request() -> list[list[Prediction] | CloudError]:
            self.requests_sent += 1
            return [self._scrub(answer) for answer in self._annotate(uploads, top_k)]

        return self._retrying(request)

    def _retrying(self, request: Callable[[], _T]) -> _T:
        """``request()``, tried again with backoff while it raises :class:`Retryable`;
        then the last error as a :class:`CloudError` saying how often it was tried."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return request()
            except Retryable as retry:
                wait = self.retry.delay(attempt, retry.retry_after)
                if wait is None:
                    error = retry.error
                    if retry.retry_after is not None and retry.retry_after > self.retry.max_delay:
                        why = f"the service asked to wait {retry.retry_after:.0f} s, longer than the {self.retry.max_delay:.0f} s imagerec waits"
                    else:
                        why = f"gave up after {attempt} attempt{'s' if attempt != 1 else ''}"
                    raise self._scrub(CloudError(self.name, f"{_strip(error)} ({why})", kind=error.kind, status=error.status)) from retry
                self.sleep(wait)
            except CloudError as exc:
                raise self._scrub(exc) from exc.__cause__

    def _scrub(self, answer):
        """Replace any credential in an error message by ``***``."""
        if not isinstance(answer, CloudError):
            return answer
        text = answer.message
        for secret in self._secrets():
            if secret and len(secret) >= 4 and secret in text:
                text = text.replace(secret, "***")
        if text == answer.message:
            return answer
        clean = CloudError(self.name, text.split(": ", 1)[1] if text.startswith(f"{self.name}: ") else text, kind=answer.kind, status=answer.status)
        return clean


def _strip(error: CloudError) -> str:
    prefix = f"{error.provider}: "
    return error.message[len(prefix):] if error.message.startswith(prefix) else error.message



class UnavailableProvider(Provider):
    """Stands in for a provider that could not be set up: every image gets its error.

    >>> from imagerec.core.errors import CloudError
    >>> UnavailableProvider("azure", CloudError("azure", "no key", kind="config")).label_files([b"x"])[0].error.kind
    'config'
    """

    def __init__(self, name: str, error: CloudError) -> None:
        super().__init__()
        self.name = name
        self.error = error

    def _annotate(self, uploads: Sequence[Upload], top_k: int) -> list[list[Prediction] | CloudError]:
        raise self.error

    def label_files(self, sources, top_k: int = 10, *, on_result=None) -> list[FileResult]:
        results = [FileResult(describe_source(source), error=self.error, seconds=0.0) for source in sources]
        if on_result is not None:
            for result in results:
                on_result(result)
        return results
