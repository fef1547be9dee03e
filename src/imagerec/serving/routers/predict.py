"""``POST /v1/predict``: one or many images in, top labels per image out.

Request (any of):

- ``multipart/form-data`` with one or more file fields (any field name),
  optional form fields ``model`` and ``top_k``;
- ``application/json``: ``{"images": [{"content": "<base64>"}], "model": ..., "top_k": ...}``;
- the raw bytes of one image with an ``image/*`` or
  ``application/octet-stream`` content type.

``model`` and ``top_k`` may also be query parameters. Response::

    {"model": "mobilenet_v2",
     "results": [{"name": "cat.jpg", "label": "Egyptian cat", "index": 285, "score": 0.83, "sure": true,
                  "unknown": false, "predictions": [{"label": ..., "score": ..., "index": ...}]},
                 {"name": "notes.txt", "error": {"code": 400, "status": "INVALID_ARGUMENT", "message": ...}}]}

Each result is :meth:`imagerec.answers.Answer.to_dict` — the same fields as
``imagerec predict --json``: the answer (``label``, ``index``, ``score``,
``sure``, ``unknown``; ``closest``, ``match`` and ``threshold`` for a learned
recognizer) and the ranked classes with their own probabilities.

The status is 200 when at least one image was recognised; when every image
failed it is that of the first failure (400 not an image, 413 too many
bytes) and the body also carries a top-level ``error``.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from ...core.errors import ImagerecError
from .. import payloads
from ._http import api_error, config, image_error, per_image_response, registry, request_body, require_api_key

router = APIRouter(prefix="/v1", tags=["predict"], dependencies=[Depends(require_api_key)])

DEFAULT_TOP_K = 5


@router.post("/predict", summary="Recognise what is in one or many images")
async def predict(
    request: Request,
    model: Optional[str] = Query(None, description="Model name (default: the first one served)."),
    top_k: Optional[int] = Query(None, description="Labels per image (default 5)."),
) -> JSONResponse:
    settings = config(request)
    try:
        with request.app.state.body_budget.ticket() as ticket:
            async with asyncio.timeout(settings.request_timeout):
                body = await request_body(request, ticket)
                parsed = await payloads.parse_predict(request.headers, body, settings.max_images)
                host = registry(request).get(model or parsed.model)
                wanted = top_k if top_k is not None else parsed.top_k if parsed.top_k is not None else DEFAULT_TOP_K
                outcomes = await host.predict(parsed.images, wanted)
    except (ImagerecError, TimeoutError) as exc:
        raise api_error(exc, settings) from exc
    results = [{"name": outcome.path, **outcome.predictions.to_dict()} if outcome.ok
               else {"name": outcome.path, "error": image_error(outcome.error)} for outcome in outcomes]
    return per_image_response(request, "/v1/predict", host.name, results, "recognised")

