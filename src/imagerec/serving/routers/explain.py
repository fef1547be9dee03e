"""``POST /v1/explain``: where the served model looked, per photo, as a heat map over the photo.

Query parameters: ``model`` (default: the first served), ``label`` (the
class to explain; default: each photo's answer) and ``method`` (``auto`` —
Grad-CAM when the model gives gradients, else occlusion —, ``occlusion``
or ``grad-cam``). The body takes the same three forms as ``/v1/predict``
(multipart file fields, JSON ``{"images": [{"content": "<base64>"}]}``, raw
image bytes). Response::

    {"model": "mobilenet_v2",
     "results": [{"name": "cat.jpg", "label": "tabby", "method": "occlusion", "score": 0.41,
                  "peak": [x, y], "width": 1280, "height": 720,
                  "overlay": "data:image/jpeg;base64,..."},
                 {"name": "notes.txt", "error": {"code": 400, "status": "INVALID_ARGUMENT", "message": ...}}]}

``peak`` is in the photo's own pixels (``width`` × ``height``, EXIF
orientation applied); ``overlay`` is the photo with the heat map over it,
at most 512 px on its longer side. An explanation costs up to 82 model runs
(occlusion), so they run one at a time on their own worker thread, off the
event loop, through the served model's recognizer
(:meth:`imagerec.Recognizer.explain`); a request arriving when
:data:`MAX_WAITING` photos are already waiting is refused with 503 and
``Retry-After``. The status is that of the first failure when every photo
failed, as for ``/v1/predict``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from PIL import Image

from ...core.errors import ImageDecodeError, ImagerecError, UsageError
from ...core.images import Limits, load_pil
from ...explain import check_label, check_method
from ...recognizer import Recognizer
from .. import payloads
from ..batching import QueueFullError
from ..service import NamedImage, UploadTooLargeError
from ._http import api_error, config, image_error, per_image_response, registry, request_body, require_api_key

router = APIRouter(prefix="/v1", tags=["explain"], dependencies=[Depends(require_api_key)])

OVERLAY_SIDE = 512  # the overlay's longer side, in pixels
# A photo is explained from a copy at most this long a side (the model sees 224 pixels or so
# anyway): a 100-megapixel upload never becomes 100-megapixel float heat maps.
WORKING_SIDE = 1024
MAX_WAITING = 16  # photos admitted to wait for an explanation, over all requests

# One explanation at a time: each already keeps both cores busy with its batches of model runs.
_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagerec-explain")
_waiting = 0
_waiting_lock = threading.Lock()


@router.post("/explain", summary="Heat maps of where the model looked, one per photo")
async def explain(
    request: Request,
    model: Optional[str] = Query(None, description="Model name (default: the first one served)."),
    label: Optional[str] = Query(None, description="The class to explain (default: each photo's answer)."),
    method: str = Query("auto", description="auto (Grad-CAM where the model gives gradients), occlusion or grad-cam."),
) -> JSONResponse:
    settings = config(request)
    try:
        check_method(method)
        with request.app.state.body_budget.ticket() as ticket:
            # Up to 82 model runs a photo: allow more time than a prediction.
            async with asyncio.timeout(settings.request_timeout * 4):
                body = await request_body(request, ticket)
                parsed = await payloads.parse_predict(request.headers, body, settings.max_images)
                host = registry(request).get(model or parsed.model)
                recognizer = host.recognizer
                if not recognizer.classifies:
                    raise UsageError(f"{host.name!r} is an embedding model: it has no labels to explain")
                if label is not None:
                    check_label(recognizer.labels, label)
                if method == "grad-cam" and not recognizer.gives_gradients:
                    raise UsageError(f"{host.name!r} gives no gradients (only Keras models do); "
                                     "use method=occlusion or method=auto")
                results = await _explain_all(parsed.images, recognizer, label, method, settings)
    except (ImagerecError, TimeoutError) as exc:
        raise api_error(exc, settings) from exc
    return per_image_response(request, "/v1/explain", host.name, results, "explained")


async def _explain_all(images: list[NamedImage], recognizer: Recognizer, label: str | None, method: str,
                       settings) -> list[dict]:
    """One result per image, in order, each explained on the worker thread."""
    global _waiting
    with _waiting_lock:
        if _waiting + len(images) > MAX_WAITING:
            raise QueueFullError(f"the server is already explaining {_waiting} photos (limit {MAX_WAITING}); "
                                 "retry in a moment")
        _waiting += len(images)
    loop = asyncio.get_running_loop()
    try:
        results = []
        for image in images:
            if image.error is not None:
                results.append({"name": image.name, "error": image_error(image.error)})
                continue
            work = loop.run_in_executor(_worker, _explain_one, image, recognizer, label, method,
                                        settings.max_image_bytes, settings.limits)
            try:
                results.append(await work)
            except ImagerecError as exc:
                results.append({"name": image.name, "error": image_error(exc)})
        return results
    finally:
        with _waiting_lock:
            _waiting -= len(images)


def _explain_one(image: NamedImage, recognizer: Recognizer, label: str | None, method: str,
                 max_bytes: int, limits: Limits) -> dict:
    """Decode one upload and explain it (on the worker thread): the result object of the response."""
    if len(image.content) > max_bytes:
        raise UploadTooLargeError(f"image is {len(image.content):,} bytes, over the limit of {max_bytes:,} bytes",
                                  path=image.name)
    stream = io.BytesIO(image.content)
    stream.name = image.name  # error messages name the upload, not "<bytes>"
    try:
        photo = load_pil(stream, limits=limits)
        width, height = photo.size
        if max(width, height) > WORKING_SIDE:
            photo.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
        heat = recognizer.explain(photo, label=label, method=method)
        overlay = io.BytesIO()
        heat.overlay(max_side=OVERLAY_SIDE).save(overlay, format="JPEG", quality=85)
    except MemoryError as exc:
        raise ImageDecodeError("out of memory while explaining", path=image.name) from exc
    # The peak in the photo's own pixels: the middle of the working copy's peak pixel, scaled back.
    peak = [min(width - 1, int((heat.peak[0] + 0.5) * width / photo.width)),
            min(height - 1, int((heat.peak[1] + 0.5) * height / photo.height))]
    return {"name": image.name, "label": heat.label, "method": heat.method, "score": round(heat.score, 6),
            "peak": peak, "width": width, "height": height,
            "overlay": "data:image/jpeg;base64," + base64.b64encode(overlay.getvalue()).decode("ascii")}

