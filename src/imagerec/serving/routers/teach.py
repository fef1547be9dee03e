"""``POST /v1/teach``: add a class to a taught model from a few photos.

A ``multipart/form-data`` form with the text fields ``label`` (the new
class) and ``model`` (the taught model's name, default ``taught``) and the
photos as file fields. The first lesson creates the model (imprint head on
MobileNet V2 embeddings); later lessons add classes or examples to it.
Answers the model's description and its classes; the model is then listed
by ``/v1/models`` and usable by every prediction route.
"""

from __future__ import annotations

import asyncio
import ipaddress

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ...core.errors import ImagerecError
from .. import payloads
from ._http import ApiError, api_error, config, require_api_key

router = APIRouter(prefix="/v1", tags=["teach"], dependencies=[Depends(require_api_key)])

DEFAULT_MODEL = "taught"


@router.post("/teach", summary="Teach a model a new class from a few photos")
async def teach(request: Request) -> JSONResponse:
    settings = config(request)
    teacher = request.app.state.teacher
    if teacher is None:
        raise ApiError(404, "teaching is turned off on this server")
    try:
        with request.app.state.body_budget.ticket() as ticket:
            # Learning embeds the photos on the CPU: allow it more time than a prediction.
            async with asyncio.timeout(settings.request_timeout * 4):
                body = await payloads.read_body(
                    request.stream(), request.headers.get("content-length"), settings.max_request_bytes, ticket
                )
                images, fields = await payloads.parse_form(request.headers, body, settings.max_images)
                host = await teacher.teach(fields.get("model") or DEFAULT_MODEL, fields.get("label", ""), images,
                                           client=_anonymous_caller(request))
    except (ImagerecError, TimeoutError) as exc:
        raise api_error(exc, settings) from exc
    recognizer = host.recognizer
    examples = (recognizer.metadata.get("training") or {}).get("examples") or {}
    return JSONResponse(
        {"model": host.describe(), "classes": list(recognizer.labels), "examples": examples, "label": fields["label"].strip()}
    )


def _anonymous_caller(request: Request) -> str | None:
    """The address whose share of taught-model slots a request counts against, if any.

    Callers with a key are trusted, and so is this machine (its browser
    pages are same-origin: cross-origin ones are refused before this);
    anyone else without a key gets ``max_taught_per_client`` new models.
    """
    if request.app.state.api_keys.enabled:
        return None
    address = request.client.host if request.client else "-"
    try:
        return None if ipaddress.ip_address(address).is_loopback else address
    except ValueError:
        return address
