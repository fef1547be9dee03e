"""Turn request bodies into images: bounded reading, multipart, JSON, base64.

These functions raise imagerec errors only; the routers decide what HTTP
status each one becomes. Problems with the request as a whole (not JSON,
too many images, wrong content type) raise; problems with one image (bad
base64, a missing ``content``) are carried on that image's
:class:`~imagerec.serving.service.NamedImage` so the others still run.

>>> decode_base64("aGVsbG8=", "images[0]")
b'hello'
>>> parse_json(b'{"images": [{"content": "aGk="}]}')["images"][0]["content"]
'aGk='
>>> parse_json(b'{"images": [')
Traceback (most recent call last):
...
imagerec.core.errors.UsageError: the request body is not valid JSON (line 1, column 13: Expecting value)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping

import threading

from ..core.errors import ImageDecodeError, ImagerecError, UsageError
from .batching import QueueFullError
from .service import NamedImage

__all__ = [
    "RequestTooLargeError",
    "UnsupportedMediaTypeError",
    "check_json_content_type",
    "BodyBudget",
    "PredictRequest",
    "AnnotateItem",
    "read_body",
    "decode_base64",
    "parse_json",
    "parse_predict",
    "parse_form",
    "parse_annotate",
    "parse_annotate_async",
    "media_type",
]

LABEL_DETECTION = "LABEL_DETECTION"
# Cloud Vision's Feature.Type enum, for clients that send numbers
# (the official REST transport does: enum-encoding=int).
_FEATURE_TYPES = {
    0: "TYPE_UNSPECIFIED",
    1: "FACE_DETECTION",
    2: "LANDMARK_DETECTION",
    3: "LOGO_DETECTION",
    4: "LABEL_DETECTION",
    5: "TEXT_DETECTION",
    11: "DOCUMENT_TEXT_DETECTION",
    6: "SAFE_SEARCH_DETECTION",
    7: "IMAGE_PROPERTIES",
    9: "CROP_HINTS",
    10: "WEB_DETECTION",
    12: "PRODUCT_SEARCH",
    19: "OBJECT_LOCALIZATION",
}
DEFAULT_MAX_RESULTS = 10  # Cloud Vision's default for labels


class RequestTooLargeError(ImagerecError):
    """The request body is over ``max_request_bytes``."""


class UnsupportedMediaTypeError(UsageError):
    """The request's content type is not one this route reads."""


@dataclass(frozen=True)
class PredictRequest:
    """What ``POST /v1/predict`` asked for."""

    images: list[NamedImage]
    model: str | None = None
    top_k: int | None = None


@dataclass(frozen=True)
class AnnotateItem:
    """One entry of a Cloud Vision ``requests`` list."""

    image: NamedImage
    max_results: int = DEFAULT_MAX_RESULTS


class BodyBudget:
    """Bytes of request bodies held at once, over all requests together.

    Each request takes a ticket; reading its body draws on the budget and
    the ticket gives it back when the request is answered. When the budget
    is spent, :class:`~imagerec.serving.batching.QueueFullError` (503)
    refuses the request, so many large uploads at once cannot exhaust memory.

    >>> budget = BodyBudget(100)
    >>> with budget.ticket() as ticket:
    ...     ticket.take(60)
    ...     budget.used
    60
    >>> budget.used
    0
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def ticket(self) -> "BodyTicket":
        return BodyTicket(self)


class BodyTicket:
    """One request's share of a :class:`BodyBudget`."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.held = 0

    def take(self, size: int) -> None:
        budget = self.budget
        with budget._lock:
            if budget.used + size > budget.limit:
                raise QueueFullError(
                    f"the server is already holding {budget.used:,} bytes of uploads (limit {budget.limit:,}); "
                    "retry in a moment"
                )
            budget.used += size
            self.held += size

    def release(self) -> None:
        with self.budget._lock:
            self.budget.used -= self.held
            self.held = 0

    def __enter__(self) -> "BodyTicket":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def media_type(content_type: str | None) -> str:
    """``"multipart/form-data; boundary=x"`` -> ``"multipart/form-data"``.

    >>> media_type("Application/JSON; charset=utf-8")
    'application/json'
    """
    return (content_type or "").split(";", 1)[0].strip().lower()


async def read_body(
    chunks: AsyncIterator[bytes], declared_length: str | None, limit: int, ticket: BodyTicket | None = None
) -> bytes:
    """The whole body, refusing it as soon as it is known to exceed ``limit``.

    A declared ``Content-Length`` over the limit is refused before a byte is
    read; a chunked body is counted as it arrives, so at most ``limit``
    bytes are ever held. With a ``ticket``, the bytes are also drawn from
    the server-wide budget (the declared length at once).
    """
    reserved = 0
    if declared_length is not None:
        try:
            declared = int(declared_length)
        except ValueError:
            raise UsageError(f"Content-Length must be a number, got {declared_length[:40]!r}") from None
        if declared > limit:
            raise RequestTooLargeError(_too_large(declared, limit))
        if ticket is not None and declared > 0:
            ticket.take(declared)
            reserved = declared
    parts: list[bytes] = []
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise RequestTooLargeError(_too_large(received, limit, at_least=True))
        if ticket is not None and received > reserved:
            ticket.take(received - reserved)
            reserved = received
        parts.append(chunk)
    return b"".join(parts)


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    amount = f"at least {size:,}" if at_least else f"{size:,}"
    return f"the request body is {amount} bytes, over the limit of {limit:,} bytes; send fewer or smaller images"


def decode_base64(text: Any, name: str) -> bytes:
    """Bytes from standard or URL-safe base64, padded or not (as protobuf JSON allows)."""
    if not isinstance(text, str):
        raise ImageDecodeError(f"expected a base64 string in 'content', got {type(text).__name__}", path=name)
    compact = "".join(text.split())
    if not compact:
        raise ImageDecodeError("'content' is empty (expected the image bytes in base64)", path=name)
    compact = compact.replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError(f"'content' is not valid base64 ({exc})", path=name) from exc


def parse_json(body: bytes) -> Any:
    """The decoded JSON document; :class:`UsageError` with the position when malformed."""
    if not body:
        raise UsageError("the request body is empty (expected a JSON document)")
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise UsageError("the request body is not UTF-8 text (expected a JSON document)") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"the request body is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    except RecursionError:
        raise UsageError("the request body nests JSON arrays or objects too deeply") from None
    except ValueError as exc:  # Python's cap on integer digits (sys.get_int_max_str_digits)
        raise UsageError(f"the request body holds a number too long to read ({str(exc).split(';')[0]})") from None


async def parse_predict(headers: Mapping[str, str], body: bytes, max_images: int) -> PredictRequest:
    """Images from a multipart form, a JSON document, or a raw image body."""
    kind = media_type(headers.get("content-type"))
    if kind == "multipart/form-data":
        request = await _parse_multipart(headers, body, max_images)
    elif kind == "application/json":
        request = await _off_the_loop_if_large(len(body), lambda: _parse_predict_json(parse_json(body), max_images))
    elif kind.startswith("image/") or kind == "application/octet-stream":
        if not body:
            raise UsageError("the request body is empty (expected the bytes of an image)")
        request = PredictRequest([NamedImage("body", body)])
    else:
        shown = kind or "none"
        raise UnsupportedMediaTypeError(
            f"content type {shown!r} is not accepted; send multipart/form-data (file fields), "
            "application/json ({\"images\": [{\"content\": \"<base64>\"}]}) or the raw image bytes as image/*"
        )
    if not request.images:
        raise UsageError("no images in the request (expected at least one)")
    return request


async def _parse_multipart(headers: Mapping[str, str], body: bytes, max_images: int) -> PredictRequest:
    images, fields = await parse_form(headers, body, max_images)
    return PredictRequest(images, model=fields.get("model") or None, top_k=_int_field(fields.get("top_k"), "top_k"))


async def parse_form(headers: Mapping[str, str], body: bytes, max_images: int) -> tuple[list[NamedImage], dict[str, str]]:
    """The files (any field name) and the text fields of a multipart form."""
    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    if media_type(headers.get("content-type")) != "multipart/form-data":
        raise UnsupportedMediaTypeError("expected a multipart/form-data form with the photos as file fields")
    if not body:
        raise UsageError("the request body is empty (expected a multipart form with image files)")

    async def stream() -> AsyncIterator[bytes]:
        yield body

    # One file past the limit is enough to know the request is too big.
    parser = MultiPartParser(Headers(headers=dict(headers)), stream(), max_files=max_images + 1, max_fields=32)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if "Too many files" in str(exc):
            raise UsageError(_too_many(f"more than {max_images}", max_images)) from exc
        raise UsageError(f"the multipart form cannot be read ({exc})") from exc
    images: list[NamedImage] = []
    fields: dict[str, str] = {}
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                images.append(NamedImage(value.filename or key, await value.read()))
            else:
                fields[key] = value
    finally:
        await form.close()
    if len(images) > max_images:
        raise UsageError(_too_many(len(images), max_images))
    return images, fields


def _parse_predict_json(document: Any, max_images: int) -> PredictRequest:
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise UsageError('expected a JSON object {"images": [{"content": "<base64>"}, ...]}')
    entries = document["images"]
    if len(entries) > max_images:
        raise UsageError(_too_many(len(entries), max_images))
    images = []
    for position, entry in enumerate(entries):
        name = f"images[{position}]"
        if not isinstance(entry, dict) or "content" not in entry:
            images.append(NamedImage(name, error=ImageDecodeError('expected {"content": "<base64>"}', path=name)))
            continue
        label = entry.get("name") if isinstance(entry.get("name"), str) else name
        try:
            images.append(NamedImage(label, decode_base64(entry["content"], label)))
        except ImageDecodeError as exc:
            images.append(NamedImage(label, error=exc))
    model = document.get("model")
    if model is not None and not isinstance(model, str):
        raise UsageError(f"'model' must be a string, got {type(model).__name__}")
    top_k = document.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool)):
        raise UsageError(f"'top_k' must be an integer, got {top_k!r}")
    return PredictRequest(images, model=model or None, top_k=top_k)


def check_json_content_type(content_type: str | None) -> None:
    """Refuse a body declared as something other than JSON (415).

    No declared type is accepted, as Google's endpoint does for ``curl -d``.

    >>> check_json_content_type("application/json; charset=utf-8")
    """
    kind = media_type(content_type)
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaTypeError(f"content type {kind[:60]!r} is not accepted; send the request as application/json")


async def parse_annotate_async(body: bytes, max_images: int) -> list[AnnotateItem]:
    """:func:`parse_annotate`, on a worker thread when the body is large."""
    return await _off_the_loop_if_large(len(body), lambda: parse_annotate(body, max_images))


# JSON and base64 of a few megabytes take tens of milliseconds: above this
# size they run on a worker thread so the event loop keeps serving others.
_LARGE_BODY = 512 * 1024


async def _off_the_loop_if_large(size: int, work):
    if size < _LARGE_BODY:
        return work()
    return await asyncio.to_thread(work)


def parse_annotate(body: bytes, max_images: int) -> list[AnnotateItem]:
    """The entries of a Cloud Vision ``images:annotate`` request.

    Only ``LABEL_DETECTION`` with ``image.content`` is served; an entry
    asking for anything else carries an error for that entry.
    """
    document = parse_json(body)
    if not isinstance(document, dict) or not isinstance(document.get("requests"), list):
        raise UsageError('expected a JSON object {"requests": [{"image": {"content": ...}, "features": [...]}]}')
    entries = document["requests"]
    if not entries:
        raise UsageError("'requests' is empty (expected at least one image)")
    if len(entries) > max_images:
        raise UsageError(_too_many(len(entries), max_images))
    return [_annotate_item(position, entry) for position, entry in enumerate(entries)]


def _annotate_item(position: int, entry: Any) -> AnnotateItem:
    name = f"requests[{position}]"

    def failed(reason: str) -> AnnotateItem:
        return AnnotateItem(NamedImage(name, error=ImageDecodeError(reason, path=name)))

    if not isinstance(entry, dict):
        return failed("expected an object with 'image' and 'features'")
    features = entry.get("features")
    if not isinstance(features, list) or not features:
        return failed("the request must specify image and features (no 'features' given)")
    max_results = None
    unsupported = []
    for feature in features:
        kind = feature.get("type") if isinstance(feature, dict) else None
        kind = _FEATURE_TYPES.get(kind, str(kind)) if isinstance(kind, int) else kind
        if kind != LABEL_DETECTION:
            unsupported.append(str(kind))
            continue
        wanted = feature.get("maxResults", feature.get("max_results"))
        try:
            wanted = int(wanted) if wanted is not None else 0
        except (TypeError, ValueError, OverflowError):  # OverflowError: 1e400 is float("inf")
            return failed(f"maxResults must be an integer, got {str(wanted)[:40]!r}")
        max_results = wanted if wanted > 0 else DEFAULT_MAX_RESULTS
    if unsupported:
        return failed(f"only LABEL_DETECTION is supported by this server, got {', '.join(unsupported)}")
    image = entry.get("image")
    if not isinstance(image, dict):
        return failed("the request must specify image and features (no 'image' given)")
    if "content" not in image:
        if image.get("source"):
            return failed("image.source (a URI) is not supported by this server; send the bytes in image.content")
        return failed("image.content is missing (expected the image bytes in base64)")
    try:
        content = decode_base64(image["content"], name)
    except ImageDecodeError as exc:
        return AnnotateItem(NamedImage(name, error=exc))
    return AnnotateItem(NamedImage(name, content), max_results=max_results or DEFAULT_MAX_RESULTS)


def _too_many(count: int | str, limit: int) -> str:
    return f"too many images: {count} in one request, at most {limit} allowed; split the request"


def _int_field(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name!r} must be an integer, got {value[:40]!r}") from None
