"""``GET /v1/models``, ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` says the process answers; ``/readyz`` that every model is
loaded and its batcher running (load balancers send traffic only then).
Both are open; ``/v1/models`` and ``/metrics`` need a key when keys are set
(a Prometheus scrape job passes it as the ``key`` parameter).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from ..metrics import CONTENT_TYPE
from ._http import error_response, metrics, registry, require_api_key

router = APIRouter(tags=["operations"])


@router.get("/v1/models", dependencies=[Depends(require_api_key)], summary="The models this server answers with")
async def list_models(request: Request) -> JSONResponse:
    hosts = registry(request).hosts
    models = [{**host.describe(), "default": position == 0} for position, host in enumerate(hosts)]
    return JSONResponse({"models": models})


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
