"""``POST /v1/images:annotate``: Google Cloud Vision's REST method, LABEL_DETECTION only.

Existing Cloud Vision clients work unchanged when pointed at this server
(``client_options={"api_endpoint": "http://host:8000"}``). Request::

    {"requests": [{"image": {"content": "<base64>"},
                   "features": [{"type": "LABEL_DETECTION", "maxResults": 5}]}]}

Response, one entry per request entry, in order::

    {"responses": [{"labelAnnotations": [{"description": "macaw", "score": 0.97, "topicality": 0.97}]},
                   {"error": {"code": 3, "message": "requests[1]: not a recognised image ..."}}]}

As in Cloud Vision, an unusable image gives that entry an ``error``
(google.rpc.Status: ``code`` 3 = INVALID_ARGUMENT) and the call still
answers 200; a malformed call (not JSON, no ``requests``, more than 16
images) is refused with 400 and ``{"error": {"code", "message", "status"}}``.
``mid`` is left out: imagerec's labels have no Knowledge Graph ids. An
image a learned recognizer answers "unknown" for gets no labels (``{}``, as
Cloud Vision answers when no label passes its threshold). The optional
``model`` query parameter picks a served model.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from ...core.errors import ImagerecError
from .. import payloads
from ._http import api_error, config, metrics, registry, request_body, require_api_key, rpc_status

router = APIRouter(prefix="/v1", tags=["cloud vision"], dependencies=[Depends(require_api_key)])


@router.post("/images:annotate", summary="Cloud Vision images:annotate (LABEL_DETECTION)")
async def annotate(
    request: Request,
    model: Optional[str] = Query(None, description="Model name (default: the first one served)."),
) -> JSONResponse:
    settings = config(request)
    try:
        payloads.check_json_content_type(request.headers.get("content-type"))
        with request.app.state.body_budget.ticket() as ticket:
            async with asyncio.timeout(settings.request_timeout):
                body = await request_body(request, ticket)
                items = await payloads.parse_annotate_async(body, settings.max_images)
                host = registry(request).get(model)
                deepest = min(settings.max_top_k, max(item.max_results for item in items))
                outcomes = await host.predict([item.image for item in items], deepest)
    except (ImagerecError, TimeoutError) as exc:
        raise api_error(exc, settings) from exc
    responses = []
    for item, outcome in zip(items, outcomes):
        if not outcome.ok:
            metrics(request).errors.inc(route="/v1/images:annotate", kind="image")
            responses.append({"error": rpc_status(outcome.error)})
            continue
        # An "unknown" image has no label above the threshold, so none is returned
        # (Cloud Vision leaves labelAnnotations out when nothing qualifies).
        answer = outcome.predictions
        labels = [] if answer.unknown else [
            {"description": p.label, "score": round(p.score, 6), "topicality": round(p.score, 6)}
            for p in answer[: item.max_results]
        ]
        responses.append({"labelAnnotations": labels} if labels else {})
    return JSONResponse({"responses": responses})
