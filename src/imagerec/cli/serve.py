"""``imagerec serve [--model NAME|FILE ...] [--host 127.0.0.1] [--port 8000] [--api-key-file F]``."""

from __future__ import annotations

import logging
import sys
from typing import List, Optional

import typer

from ._app import app

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@app.command()
def serve(
    models: Optional[List[str]] = typer.Option(
        None, "--model", "-m", help="A zoo model name or a model file; repeat to serve several (the first is the default)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="Port to listen on."),
    api_key_file: Optional[str] = typer.Option(
        None, "--api-key-file", help="File with one API key a line; requests must then send one."
    ),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Most images in one backend batch (1 = no batching)."),
    max_wait_ms: float = typer.Option(0.0, "--max-wait-ms", min=0.0, help="Longest wait to fill a batch, in ms (0: batch what is queued)."),
    max_queue: int = typer.Option(256, "--max-queue", min=1, help="Images in flight per model before 503."),
    max_images: int = typer.Option(16, "--max-images", min=1, help="Most images in one request."),
    max_request_mb: float = typer.Option(40.0, "--max-request-mb", min=0.001, help="Largest request body, MiB (413 above)."),
    max_inflight_mb: float = typer.Option(
        256.0, "--max-inflight-mb", min=0.001, help="Request bodies held at once, all requests, MiB (503 above)."
    ),
    max_image_mb: float = typer.Option(20.0, "--max-image-mb", min=0.001, help="Largest image file, MiB (413 above)."),
    max_pixels: int = typer.Option(50_000_000, "--max-pixels", min=1, help="Largest image in pixels (400 above)."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds before a request is abandoned (504)."),
    max_connections: int = typer.Option(
        512, "--max-connections", min=1, help="Open connections before new ones get 503."
    ),
    teach: bool = typer.Option(True, "--teach/--no-teach", help="Offer POST /v1/teach (new classes from a few photos)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Inference threads per model (default: all cores)."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Serve recognition over HTTP: /v1/predict, Cloud Vision images:annotate, a web page at /."""
    import uvicorn

    from ..core.errors import UsageError
    from ..serving import ServeConfig, create_app, load_models, read_api_keys

    if log_level.lower() not in LOG_LEVELS:
        raise UsageError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    keys = read_api_keys(api_key_file) if api_key_file else ()
    config = ServeConfig(
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        max_images=max_images,
        max_request_bytes=int(max_request_mb * 1024 * 1024),
        max_image_bytes=int(max_image_mb * 1024 * 1024),
        max_inflight_bytes=int(max_inflight_mb * 1024 * 1024),
        max_pixels=max_pixels,
        request_timeout=timeout,
        num_threads=threads,
        api_keys=keys,
        teach=teach,
    )
    _configure_logging(log_level)
    recognizers = load_models(models or ["mobilenet_v2"], config)
    application = create_app(recognizers, config)
    log = logging.getLogger("imagerec.serving")
    log.info(
        "serving %s on http://%s:%d (API keys: %s)",
        ", ".join(r.name for r in recognizers),
        host,
        port,
        f"{len(keys)} configured" if keys else "off",
    )
    # uvicorn's own access log prints query strings, where a ?key= would
    # appear; imagerec's access log (logger imagerec.serving.access) does not.
    uvicorn.run(
        application,
        host=host,
        port=port,
        access_log=False,
        log_level=log_level.lower(),
        limit_concurrency=max_connections,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=int(timeout) + 1,
        server_header=False,
    )


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("imagerec")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
