"""Build the FastAPI app: models, routers, error handlers, access log, metrics.

>>> import imagerec
>>> from fastapi.testclient import TestClient
>>> from imagerec.serving import create_app
>>> app = create_app([imagerec.load("mobilenet_v2")])
>>> with TestClient(app) as client:
...     with open("../shared/photos/hot_dog.jpg", "rb") as photo:
...         reply = client.post("/v1/predict", files={"file": photo})
>>> reply.json()["results"][0]["predictions"][0]["label"]
'hotdog'
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import AsyncIterator, Iterable, Mapping, Sequence

from fastapi import FastAPI, Request
from starlette.requests import ClientDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..core.version import __version__
from ..core.errors import UsageError
from ..recognizer import Recognizer
from .auth import ApiKeys
from .config import ServeConfig
from .metrics import Metrics
from .origins import CrossOriginGuard
from .payloads import BodyBudget
from .routers import describe, explain, predict, system, teach, ui, vision
from .routers._http import ApiError, error_response
from .service import ModelRegistry
from .teach import Teacher

__all__ = ["create_app", "load_models"]

access_log = logging.getLogger("imagerec.serving.access")


def load_models(names: Iterable[str], config: ServeConfig = ServeConfig()) -> list[Recognizer]:
    """Load each zoo name or model file, as ``imagerec.load`` does.

    >>> [r.name for r in load_models(["mobilenet_v2"])]
    ['mobilenet_v2']
    """
    import imagerec

    recognizers = [imagerec.load(name, num_threads=config.num_threads, limits=config.limits) for name in names]
    for recognizer in recognizers:
        if not recognizer.classifies:
            raise UsageError(f"cannot serve {recognizer.name!r}: it is an embedding model with no labels; "
                             f"teach it classes first (imagerec learn DATA --backbone {recognizer.name})")
    return recognizers


def create_app(
    recognizers: Sequence[Recognizer] | Mapping[str, Recognizer],
    config: ServeConfig = ServeConfig(),
    *,
    metrics: Metrics | None = None,
) -> FastAPI:
    """An app serving ``recognizers`` (the first is the default model).

    A mapping gives the names to serve them under; otherwise each
    recognizer's own ``name`` is used.
    """
    named = list(recognizers.items()) if isinstance(recognizers, Mapping) else [(r.name, r) for r in recognizers]
    if not named:
        raise UsageError("no model to serve (give at least one model name or file)")
    names = [name for name, _ in named]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UsageError(f"two models are named {duplicates[0]!r}; rename a file so each model has its own name")
    metrics = metrics or Metrics()
    registry = ModelRegistry(config, metrics)
    for name, recognizer in named:
        registry.add(name, recognizer)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        registry.close()

    # FastAPIOffline: /docs and /redoc from the Swagger UI and ReDoc files that
    # fastapi-offline ships, not from a CDN, so the API page works with no internet.
    app = FastAPIOffline(
        title="imagerec",
        version=__version__,
        description="Recognise what is in images. Cloud-Vision-compatible `images:annotate`, plus `/v1/predict`.",
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.metrics = metrics
    app.state.registry = registry
    app.state.api_keys = ApiKeys(config.api_keys)
    app.state.body_budget = BodyBudget(config.max_inflight_bytes)
    app.state.teacher = Teacher(registry) if config.teach else None
    for module in (predict, vision, system, teach, ui, explain, describe):
        app.include_router(module.router)
    _install_error_handlers(app)
    # The last added runs first: log everything, then check Host, then Origin.
    app.add_middleware(CrossOriginGuard, api_keys=app.state.api_keys)
    if config.allowed_hosts is not None and "*" not in config.allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts), www_redirect=False)
    app.add_middleware(AccessMiddleware, metrics=metrics)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', ()) if part not in ('query', 'body'))}: {error.get('msg')}"
            for error in exc.errors()
        )
        return error_response(400, f"invalid request parameters ({problems})")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404:
            message = f"no such route: {request.method} {request.url.path}"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect):
        # Not a server error: the caller hung up mid-upload; nobody reads the answer.
        logging.getLogger("imagerec.serving").info("client disconnected during the request to %s", request.url.path)
        return error_response(400, "the client disconnected before the request was complete")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        logging.getLogger("imagerec.serving").error("unhandled error on %s", request.url.path, exc_info=exc)
        return error_response(500, "internal error; the server log has the details")


class AccessMiddleware:
    """Count, time and log every request.

    The log line holds the method, the path *without its query string* (a
    ``?key=`` must never reach a log), the status and the time; metrics are
    labelled by route template so the label set stays small.
    """

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_watch(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "?")
            self.metrics.requests.inc(route=route, method=method, status=str(status))
            self.metrics.latency.observe(elapsed, route=route)
            if status >= 400:
                self.metrics.errors.inc(route=route, kind=str(status))
            client = scope.get("client") or ("-", 0)
            access_log.info("%s %s %s %d %.1fms", client[0], method, scope.get("path", ""), status, elapsed * 1000)
