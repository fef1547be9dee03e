"""What every router shares: the error shape, error mapping, auth, the registry.

Every error response has one JSON shape, the one Google APIs (and so Cloud
Vision clients) understand::

    {"error": {"code": 413, "status": "RESOURCE_EXHAUSTED", "message": "..."}}

:func:`http_status` is the single place where imagerec's domain errors
become HTTP status codes.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import Request
from fastapi.responses import JSONResponse

from ...core.errors import ImageDecodeError, ImagerecError, UnknownModelError, UsageError
from .. import payloads
from ..batching import BatcherClosedError, QueueFullError
from ..config import ServeConfig
from ..metrics import Metrics
from ..payloads import RequestTooLargeError, UnsupportedMediaTypeError
from ..service import ScopedRegistry, UploadTooLargeError, key_scope

log = logging.getLogger("imagerec.serving")

# HTTP status -> the canonical status name Google APIs put next to it.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    413: "RESOURCE_EXHAUSTED",
    415: "INVALID_ARGUMENT",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# Canonical status name -> the google.rpc.Code number used in per-image errors.
RPC_CODES = {
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "RESOURCE_EXHAUSTED": 8,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "UNAUTHENTICATED": 16,
}


class ApiError(Exception):
    """Raised inside the HTTP layer; rendered by the app's one handler."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def http_status(exc: BaseException) -> int:
    """The HTTP status code a domain error stands for."""
    if isinstance(exc, (RequestTooLargeError, UploadTooLargeError)):
        return 413
    if isinstance(exc, UnsupportedMediaTypeError):
        return 415
    if isinstance(exc, (QueueFullError, BatcherClosedError)):
        return 503
    if isinstance(exc, UnknownModelError):
        return 404
    if isinstance(exc, (ImageDecodeError, UsageError)):  # includes too many pixels
        return 400
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return 504
    return 500


def error_body(status: int, message: str) -> dict:
    return {"error": {"code": status, "status": STATUS_NAMES.get(status, "UNKNOWN"), "message": message}}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def api_error(exc: BaseException, config: ServeConfig, *, timeout_message: str | None = None) -> ApiError:
    """The :class:`ApiError` to raise for a domain error (or a timeout)."""
    status = http_status(exc)
    headers = {"Retry-After": str(config.retry_after_seconds)} if status == 503 else None
    if status == 504:
        message = timeout_message or f"the request took longer than {config.request_timeout:g} s and was abandoned"
    elif status == 500:
        log.error("internal error while serving a request", exc_info=exc)
        message = "internal error; the server log has the details"
    else:
        message = str(exc)
    return ApiError(status, message, headers)


def image_error(exc: ImagerecError) -> dict:
    """The per-image error object of ``/v1/predict`` (HTTP-style code)."""
    status = http_status(exc)
    return {"code": status, "status": STATUS_NAMES.get(status, "UNKNOWN"), "message": str(exc)}


def per_image_response(request: Request, route: str, model: str, results: list[dict], verb: str) -> JSONResponse:
    """The answer of a route with one result per image (``/v1/predict``, ``/v1/describe``, ``/v1/explain``).

    Each failed result (``{"name", "error"}``) counts in the metrics. The
    status is 200 when at least one image succeeded; when every one failed it
    is the first failure's, and the body also carries a top-level ``error``
    ("none of the N images could be <verb>; first: …").
    """
    failures = [result["error"] for result in results if "error" in result]
    for _ in failures:
        metrics(request).errors.inc(route=route, kind="image")
    document: dict = {"model": model, "results": results}
    if not results or len(failures) < len(results):
        return JSONResponse(document, status_code=200)
    first = failures[0]
    message = first["message"] if len(results) == 1 else (
        f"none of the {len(results)} images could be {verb}; first: {first['message']}")
    return JSONResponse({**error_body(first["code"], message), **document}, status_code=first["code"])


async def request_body(request: Request, ticket) -> bytes:
    """The request's body, read within the size limit and the body budget's ``ticket``."""
    return await payloads.read_body(
        request.stream(), request.headers.get("content-length"), config(request).max_request_bytes, ticket
    )


def rpc_status(exc: ImagerecError) -> dict:
    """A per-image error in google.rpc.Status shape (``code`` is the RPC code)."""
    name = STATUS_NAMES.get(http_status(exc), "UNKNOWN")
    return {"code": RPC_CODES.get(name, 2), "message": str(exc)}


def registry(request: Request) -> ScopedRegistry:
    """The served models as this caller sees them: its own taught models, and everyone's."""
    return request.app.state.registry.scoped(caller_scope(request))


def caller_scope(request: Request) -> str | None:
    """The scope of the caller's taught models: its API key's (None without keys: one shared scope)."""
    keys = request.app.state.api_keys
    return key_scope(keys.presented(request.headers, request.query_params)) if keys.enabled else None


def config(request: Request) -> ServeConfig:
    return request.app.state.config


def metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def require_api_key(request: Request) -> None:
    """Router dependency: 401 unless the request carries an accepted key."""
    keys = request.app.state.api_keys
    if keys.enabled and not keys.accepts(keys.presented(request.headers, request.query_params)):
        raise ApiError(
            401,
            "missing or invalid API key: send it in the x-api-key header or the key query parameter",
            {"WWW-Authenticate": 'ApiKey header="x-api-key"'},
        )
