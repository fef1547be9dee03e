"""One JSON-over-HTTPS call with the error handling the REST adapters share.

Google Cloud Vision and Azure AI Vision are plain REST services; this turns
their answers into either parsed JSON or a :class:`CloudError` with the
right ``kind``, raising :class:`Retryable` for 429 and 5xx (with the
service's ``Retry-After``) and for network failures.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import httpx

from ..core.errors import CloudError
from .base import Retryable, one_line, parse_retry_after

__all__ = ["post_json", "kind_for_status"]

ErrorParser = Callable[[Any], "tuple[str, str] | None"]


def kind_for_status(status: int) -> str:
    """The :class:`CloudError` kind an HTTP status means.

    >>> kind_for_status(403), kind_for_status(429), kind_for_status(503)
    ('auth', 'quota', 'server')
    """
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "quota"
    if status >= 500:
        return "server"
    return "invalid_image"


def post_json(
    client: httpx.Client,
    provider: str,
    url: str,
    *,
    parse_error: ErrorParser,
    hints: dict[str, str],
    classify: Callable[[int, Any], "str | None"] | None = None,
    **request: Any,
) -> Any:
    """POST and return the JSON body of a 200 answer.

    ``parse_error(body)`` extracts ``(code, message)`` from the service's
    documented error envelope (or None); ``hints`` maps an error kind to a
    short "what to do" appended to the message; ``classify(status, body)``
    may name the kind when the status alone does not tell (Google answers
    a wrong API key with HTTP 400).
    """
    try:
        response = client.post(url, **request)
    except httpx.TimeoutException as exc:
        raise Retryable(CloudError(provider, f"no answer within the timeout ({type(exc).__name__})", kind="network")) from exc
    except httpx.TransportError as exc:
        reason = one_line(exc) or type(exc).__name__
        raise Retryable(CloudError(provider, f"cannot reach the service ({reason}){_hint(hints, 'network')}", kind="network")) from exc
    status = response.status_code
    body: Any = None
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        body = None
    if status == 200:
        if body is None:
            raise CloudError(provider, "the service answered HTTP 200 with a body that is not JSON", kind="server", status=status)
        return body
    parsed = parse_error(body) if body is not None else None
    code, message = parsed if parsed else ("", one_line(response.text, 200) or response.reason_phrase)
    kind = (classify(status, body) if classify else None) or kind_for_status(status)
    detail = f"HTTP {status}" + (f" {code}" if code and code != str(status) else "") + (f": {one_line(message)}" if message else "")
    text = f"{_summary(kind)} ({detail}){_hint(hints, kind)}"
    error = CloudError(provider, text, kind=kind, status=status)
    if status == 429 or status >= 500:
        raise Retryable(error, parse_retry_after(response.headers.get("Retry-After")))
    raise error


def _summary(kind: str) -> str:
    return {
        "auth": "the service refused the credentials",
        "quota": "rate limit or quota exceeded",
        "server": "the service failed",
        "invalid_image": "the service rejected the request",
    }.get(kind, "request failed")


def _hint(hints: dict[str, str], kind: str) -> str:
    hint = hints.get(kind)
    return f" — {hint}" if hint else ""
