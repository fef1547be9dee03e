"""``POST /v1/describe``: a title and a description of each photo, like ``imagerec describe``.

Query parameter ``model`` (default: the first served). The body takes the
same three forms as ``/v1/predict`` (multipart file fields, JSON
``{"images": [{"content": "<base64>"}]}``, raw image bytes). Response::

    {"model": "mobilenet_v2",
     "results": [{"name": "pets.jpg", "title": "Dog (Italian greyhound), July 2010",
                  "description": "A dog (Italian greyhound), mostly green, taken on 31 July 2010 with a Panasonic DMC-G1."},
                 {"name": "notes.txt", "error": {"code": 400, "status": "INVALID_ARGUMENT", "message": ...}}]}

Each result holds the fields of :class:`imagerec.library.describe.Description`
(``title``, ``description``): what the served model recognised (its best
label, with the general word: "a dog (Italian greyhound)"; nothing when no
label reaches 0.3), the photo's colours, and when, where (the EXIF GPS
position named offline) and with what camera it was taken — only what was
recognised and read, nothing invented. Nothing is stored.

The photos are recognised through the served model's batching queue, like
``/v1/predict``; reading their EXIF and colours (a small decode each) and
naming the place run on a worker thread, off the event loop. The status is
that of the first failure when every photo failed, as for ``/v1/predict``.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from ...core.errors import ImagerecError, UsageError
from ...library.describe import answer_labels, describe_image
from .. import payloads
from ._http import api_error, config, image_error, per_image_response, registry, request_body, require_api_key

router = APIRouter(prefix="/v1", tags=["describe"], dependencies=[Depends(require_api_key)])

TOP_K = 3  # labels asked of the model per photo, as `imagerec describe` does (the best sure one is said)


@router.post("/describe", summary="A title and a description of each photo")
async def describe(
    request: Request,
    model: Optional[str] = Query(None, description="Model name (default: the first one served)."),
) -> JSONResponse:
    settings = config(request)
    try:
        with request.app.state.body_budget.ticket() as ticket:
            async with asyncio.timeout(settings.request_timeout):
                body = await request_body(request, ticket)
                parsed = await payloads.parse_predict(request.headers, body, settings.max_images)
                host = registry(request).get(model or parsed.model)
                if not host.recognizer.classifies:
                    raise UsageError(f"{host.name!r} is an embedding model: it has no labels to describe photos with")
                outcomes = await host.predict(parsed.images, TOP_K)
                results = [await _describe_one(image, outcome) for image, outcome in zip(parsed.images, outcomes)]
    except (ImagerecError, TimeoutError) as exc:
        raise api_error(exc, settings) from exc
    return per_image_response(request, "/v1/describe", host.name, results, "described")


async def _describe_one(image, outcome) -> dict:
    """The result object of one photo: its description, or the error that stopped it."""
    if not outcome.ok:
        return {"name": outcome.path, "error": image_error(outcome.error)}
    labels = answer_labels(outcome.predictions)
    try:
        # EXIF, a small decode for the colours, the reverse geocoder: CPU work, off the event loop.
        text = await asyncio.to_thread(describe_image, image.content, labels)
    except ImagerecError as exc:
        return {"name": outcome.path, "error": image_error(exc)}
    except (OSError, ValueError) as exc:  # Pillow's own complaints about a file the model could still read
        return {"name": outcome.path, "error": image_error(UsageError(f"{image.name}: cannot read its metadata ({exc})"))}
    return {"name": outcome.path, **text.to_dict()}
