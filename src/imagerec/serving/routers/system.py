"""``GET /v1/models``, ``/v1/models/{name}/file``, ``/healthz``, ``/readyz`` and ``/metrics``.

``/v1/models/{name}/file?format=imagerec|tflite|onnx`` hands out a taught
(learned) model: its ``.imagerec`` file, or one checked TFLite / ONNX graph.

``/healthz`` says the process answers; ``/readyz`` that every model is
loaded and its batcher running (load balancers send traffic only then).
Both are open; ``/v1/models`` and ``/metrics`` need a key when keys are set
(a Prometheus scrape job passes it as the ``key`` parameter).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask

from ...core.errors import ImagerecError
from ..downloads import DOWNLOAD_FORMATS, model_file
from ..metrics import CONTENT_TYPE
from ._http import api_error, config, error_response, metrics, registry, require_api_key

router = APIRouter(tags=["operations"])


@router.get("/v1/models", dependencies=[Depends(require_api_key)], summary="The models this server answers with")
async def list_models(request: Request) -> JSONResponse:
    hosts = registry(request).hosts
    models = [{**host.describe(), "default": position == 0} for position, host in enumerate(hosts)]
    return JSONResponse({"models": models})


@router.get(
    "/v1/models/{name}/file",
    dependencies=[Depends(require_api_key)],
    summary="A taught model as a file: .imagerec, or exported to tflite / onnx",
)
async def model_download(request: Request, name: str, format: str = Query("imagerec")) -> FileResponse:
    folder = Path(tempfile.mkdtemp(prefix="imagerec-download-"))
    try:
        host = registry(request).get(name)
        path = await asyncio.to_thread(model_file, host.recognizer, format, folder)
    except ImagerecError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise api_error(exc, config(request)) from exc
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        path,
        media_type=DOWNLOAD_FORMATS[format],
        filename=path.name,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: models loaded, batchers running")
async def readyz(request: Request) -> JSONResponse:
    served = registry(request)
    if not served.ready:
        return error_response(503, "not ready: no model loaded or a batcher has stopped", {"Retry-After": "1"})
    return JSONResponse({"status": "ready", "models": [host.name for host in served.hosts]})


@router.get("/metrics", dependencies=[Depends(require_api_key)], summary="Prometheus metrics")
async def prometheus_metrics(request: Request) -> Response:
    return Response(metrics(request).render(), media_type=CONTENT_TYPE)
