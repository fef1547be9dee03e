"""``imagerec serve [--model NAME|FILE ...] [--host 127.0.0.1] [--port 8000] [--api-key-file F] [--taught-dir DIR]``."""

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
        4096, "--max-connections", min=1,
        help="Open connections; over it the oldest one still sending headers is closed (capped by the file limit).",
    ),
    max_client_connections: int = typer.Option(
        128, "--max-client-connections", min=1,
        help="Open connections per client address; over it that client's oldest idle one is closed.",
    ),
    allowed_hosts: Optional[List[str]] = typer.Option(
        None, "--allowed-host",
        help="A Host name clients use to reach the server (repeat; '*' for any). Default: loopback names, "
             "plus this machine's names and addresses with --host 0.0.0.0.",
    ),
    header_timeout: float = typer.Option(
        5.0, "--header-timeout", min=0.1, help="Seconds a connection may take to send its request headers."
    ),
    teach: bool = typer.Option(True, "--teach/--no-teach", help="Offer POST /v1/teach (new classes from a few photos)."),
    taught_dir: Optional[str] = typer.Option(
        None, "--taught-dir", help="Folder where taught models the user keeps are saved, and served again at the next start."
    ),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Inference threads per model (default: all cores)."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Serve recognition over HTTP: /v1/predict, Cloud Vision images:annotate, a web page at /."""
    import uvicorn

    from ..core.errors import UsageError
    from ..serving import ServeConfig, create_app, load_models, read_api_keys
    from ..serving.connections import ConnectionLimits, guarded_protocol
    from ..serving.origins import default_allowed_hosts

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
        taught_dir=taught_dir,
        allowed_hosts=tuple(default_allowed_hosts(host) + list(allowed_hosts or [])),
    )
    limits = ConnectionLimits(
        header_timeout=header_timeout,
        max_connections=_within_file_limit(max_connections),
        max_per_client=max_client_connections,
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
    log.info(
        "decoding holds at most %d MiB (%d threads × %d MiB); connections: %d, %d per client, headers within %g s",
        config.decode_memory >> 20, config.decode_threads + 1, config.limits.decode_bytes >> 20,
        limits.max_connections, limits.max_per_client, limits.header_timeout,
    )
    # uvicorn's own access log prints query strings, where a ?key= would
    # appear; imagerec's access log (logger imagerec.serving.access) does not.
    # Connections are capped by the guarded protocol, not limit_concurrency:
    # uvicorn's cap counts sockets that never sent their headers and answers
    # 503 to everyone, health checks included, once they fill it.
    uvicorn.run(
        application,
        host=host,
        port=port,
        http=guarded_protocol(limits),
        access_log=False,
        log_level=log_level.lower(),
        timeout_keep_alive=5,
        timeout_graceful_shutdown=int(timeout) + 1,
        server_header=False,
    )


def _within_file_limit(wanted: int) -> int:
    """Raise the open-file limit towards ``wanted`` connections; the cap that fits.

    Past the limit ``accept()`` fails and nobody gets in, so the connection
    cap stays below it with room for models, logs and the catalog.
    """
    import resource

    spare = 128
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + spare
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    fits = max(1, soft - spare)
    if fits < wanted:
        logging.getLogger("imagerec.serving").warning(
            "the open-file limit (%d) allows %d connections, not %d (raise ulimit -n)", soft, fits, wanted
        )
    return min(wanted, fits)


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("imagerec")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
