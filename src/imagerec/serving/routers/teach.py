"""``/v1/teach``: teach a model classes from a few photos, and see and change what it was taught.

``POST /v1/teach`` takes a ``multipart/form-data`` form with the text fields
``label`` (the class) and ``model`` (the taught model's name, default
``taught``) and the photos as file fields. The first lesson creates the model
(imprint head on MobileNet V2 embeddings); later lessons add classes or
examples to it. It answers the model's description, its classes and its
*card*; the model is then listed by ``/v1/models`` and usable by every
prediction route.

The card of a taught model (``GET /v1/teach/{model}``, and the answer of
every change)::

    {"model": "taught", "backbone": "mobilenet_v2", "kept": false,
     "classes": [{"label": "mug", "count": 12,
                  "examples": [{"id": "Xb3...", "thumbnail": "data:image/jpeg;base64,..."}]}],
     "estimate": null | {"method": "leave-one-out", "examples": 24, "accuracy": 0.83,
                         "per_class": [{"label": "mug", "correct": 9, "of": 12}],
                         "confusions": [{"label": "mug", "as": "cup", "count": 3, "of": 12,
                                         "text": "3 of 12 mugs look like cups"}]}}

Changes: ``DELETE .../examples/{id}``, ``PATCH .../classes/{label}`` with
``{"label": "new name"}``, ``DELETE .../classes/{label}``, ``DELETE
/v1/teach/{model}`` (``{"deleted": model}``; so does removing the last
example or class), ``POST .../open`` (a ``.imagerec`` file as the model) and
``POST .../keep`` (saved in ``imagerec serve --taught-dir DIR`` after every
change, and served again after a restart). On a keyed server a taught model
belongs to the key that taught it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ...core.errors import ImagerecError, UsageError
from ...transfer.examples import read_examples
from ...transfer.learned import load_learned
from .. import payloads
from ..teach import Teacher
from ._http import ApiError, api_error, caller_scope, config, request_body, require_api_key

router = APIRouter(prefix="/v1", tags=["teach"], dependencies=[Depends(require_api_key)])

DEFAULT_MODEL = "taught"
_MAX_RENAME_BYTES = 4096


def _teacher(request: Request) -> Teacher:
    teacher = request.app.state.teacher
    if teacher is None:
        raise ApiError(404, "teaching is turned off on this server")
    return teacher


@router.post("/teach", summary="Teach a model a new class from a few photos")
async def teach(request: Request) -> JSONResponse:
    settings = config(request)
    teacher = _teacher(request)
    scope = caller_scope(request)
    try:
        with request.app.state.body_budget.ticket() as ticket:
            # Learning embeds the photos on the CPU: allow it more time than a prediction.
            async with asyncio.timeout(settings.request_timeout * 4):
                body = await request_body(request, ticket)
                images, fields = await payloads.parse_form(request.headers, body, settings.max_images)
                model = fields.get("model") or DEFAULT_MODEL
                host = await teacher.teach(model, fields.get("label", ""), images,
                                           client=_anonymous_caller(request), scope=scope)
                card = teacher.card(model, scope)
    except (ImagerecError, TimeoutError) as exc:
        raise api_error(exc, settings) from exc
    recognizer = host.recognizer
    examples = (recognizer.metadata.get("training") or {}).get("examples") or {}
    return JSONResponse({"model": host.describe(), "classes": list(recognizer.labels), "examples": examples,
                         "label": fields["label"].strip(), "card": card})


@router.get("/teach/{model}", summary="A taught model's card: classes, example thumbnails, estimate")
async def card(request: Request, model: str) -> JSONResponse:
    try:
        return JSONResponse(_teacher(request).card(model, caller_scope(request)))
    except ImagerecError as exc:
        raise api_error(exc, config(request)) from exc


@router.delete("/teach/{model}/examples/{example_id}", summary="Forget one example of a taught model")
async def remove_example(request: Request, model: str, example_id: str) -> JSONResponse:
    return await _change(request, model, _teacher(request).remove_example(model, example_id, caller_scope(request)))


@router.patch("/teach/{model}/classes/{label:path}", summary="Rename a class of a taught model")
async def rename_class(request: Request, model: str, label: str) -> JSONResponse:
    settings = config(request)
    try:
        with request.app.state.body_budget.ticket() as ticket:
            body = await payloads.read_body(request.stream(), request.headers.get("content-length"),
                                            _MAX_RENAME_BYTES, ticket)
        new = _new_label(body)
    except ImagerecError as exc:
        raise api_error(exc, settings) from exc
    return await _change(request, model, _teacher(request).rename_class(model, label, new, caller_scope(request)))


@router.delete("/teach/{model}/classes/{label:path}", summary="Delete a class of a taught model")
async def delete_class(request: Request, model: str, label: str) -> JSONResponse:
    return await _change(request, model, _teacher(request).delete_class(model, label, caller_scope(request)))


@router.delete("/teach/{model}", summary="Delete a taught model")
async def delete_model(request: Request, model: str) -> JSONResponse:
    async def deleted() -> None:
        await _teacher(request).delete_model(model, caller_scope(request))

    return await _change(request, model, deleted())


@router.post("/teach/{model}/keep", summary="Keep a taught model across restarts (needs --taught-dir)")
async def keep(request: Request, model: str) -> JSONResponse:
    return await _change(request, model, _teacher(request).keep(model, caller_scope(request)))


@router.post("/teach/{model}/open", summary="Open a .imagerec file as a taught model")
async def open_model(request: Request, model: str) -> JSONResponse:
    settings = config(request)
    teacher = _teacher(request)
    try:
        with request.app.state.body_budget.ticket() as ticket:
            async with asyncio.timeout(settings.request_timeout * 4):
                body = await request_body(request, ticket)
                files, _ = await payloads.parse_form(request.headers, body, 1)
                if len(files) != 1:
                    raise UsageError("send one .imagerec file as a file field of the form")
                recognizer, examples = await asyncio.to_thread(_read_upload, files[0].name, files[0].content, settings)
                result = await teacher.open_model(model, recognizer, examples, scope=caller_scope(request),
                                                  client=_anonymous_caller(request))
    except (ImagerecError, TimeoutError) as exc:
        raise api_error(exc, settings) from exc
    return JSONResponse(result)


async def _change(request: Request, model: str, change) -> JSONResponse:
    """Await a change of a taught model; its card, or ``{"deleted": model}`` when the model is gone."""
    try:
        card = await change
    except ImagerecError as exc:
        raise api_error(exc, config(request)) from exc
    return JSONResponse({"deleted": model} if card is None else card)


def _new_label(body: bytes) -> str:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise UsageError('expected a JSON object {"label": "new name"}') from None
    if not isinstance(document, dict) or not isinstance(document.get("label"), str):
        raise UsageError('expected a JSON object {"label": "new name"}')
    return document["label"]


def _read_upload(filename: str, content: bytes, settings):
    """The learned recognizer (and any kept examples) in an uploaded ``.imagerec`` file; 400 for anything else."""
    shown = Path(filename or "upload").name[:100] or "upload"
    if not shown.lower().endswith(".imagerec"):
        raise UsageError(f"{shown}: not a .imagerec file; open a model saved by imagerec learn or downloaded from here")
    folder = Path(tempfile.mkdtemp(prefix="imagerec-open-"))
    try:
        path = folder / "upload.imagerec"
        path.write_bytes(content)
        recognizer = load_learned(path, num_threads=settings.num_threads, limits=settings.limits)
        examples = read_examples(path, recognizer)
        recognizer.metadata.pop("path", None)  # the temporary copy is about to go
        return recognizer, examples
    except ImagerecError as exc:
        # Named as the caller sent it, never by the server's temporary path; a bad file is the caller's error.
        raise UsageError(str(exc).replace(str(path), shown)) from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
