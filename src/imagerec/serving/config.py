"""Settings of one running service: limits, batching, keys.

>>> ServeConfig().max_images
16
>>> ServeConfig(max_batch=0)
Traceback (most recent call last):
...
imagerec.core.errors.UsageError: max_batch must be at least 1, got 0
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import UsageError
from ..core.images import Limits

__all__ = ["ServeConfig", "read_api_keys"]


@dataclass(frozen=True)
class ServeConfig:
    """How the service batches, what it accepts and whom it answers.

    ``max_request_bytes`` bounds a whole request body (413 above it) and
    ``max_inflight_bytes`` all bodies held at once (503 above it);
    ``max_image_bytes`` / ``max_pixels`` bound each image (413 / 400).
    ``max_queue`` bounds the images admitted and not yet answered, per
    model (503 with ``Retry-After`` above it). ``api_keys`` empty means no
    authentication.
    """

    max_batch: int = 8  # LiteRT runs a batch image by image: bigger batches only add latency
    max_wait_ms: float = 0.0  # greedy: batch what is already queued (measured best with LiteRT)
    max_queue: int = 256
    max_images: int = 16  # per request, as Cloud Vision allows
    max_top_k: int = 100
    max_request_bytes: int = 40 * 1024 * 1024
    max_image_bytes: int = 20 * 1024 * 1024  # Cloud Vision's image file limit
    max_pixels: int = 50_000_000
    max_inflight_bytes: int = 256 * 1024 * 1024  # request bodies held at once, all requests together
    request_timeout: float = 30.0
    decode_workers: int | None = None
    num_threads: int | None = None
    retry_after_seconds: int = 1
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # never printed
    teach: bool = True
    max_taught_models: int = 8
    # Without keys, callers are told apart only by address: one address (other
    # than this machine's) may create this many taught models.
    max_taught_per_client: int = 3
    # Where kept taught models are saved and loaded at start (None: nothing is kept).
    taught_dir: str | None = None
    # Host headers answered (port excluded); None answers any. `imagerec serve`
    # derives the list from the address it listens on.
    allowed_hosts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "max_images", "max_top_k", "max_request_bytes", "max_image_bytes", "max_pixels", "max_taught_models", "max_inflight_bytes", "max_taught_per_client"):
            value = getattr(self, name)
            if value < 1:
                raise UsageError(f"{name} must be at least 1, got {value}")
        if self.max_wait_ms < 0:
            raise UsageError(f"max_wait_ms must be 0 or more, got {self.max_wait_ms}")
        if self.max_inflight_bytes < self.max_request_bytes:
            raise UsageError(
                f"max_inflight_bytes ({self.max_inflight_bytes:,}) must be at least max_request_bytes "
                f"({self.max_request_bytes:,}), or no request of the largest size could ever be served"
            )
        if self.request_timeout <= 0:
            raise UsageError(f"request_timeout must be positive, got {self.request_timeout}")

    @property
    def limits(self) -> Limits:
        return Limits(max_pixels=self.max_pixels, max_bytes=self.max_image_bytes)

    @property
    def decode_threads(self) -> int:
        from ..core.pipeline import default_workers

        return self.decode_workers or default_workers()

    @property
    def decode_memory(self) -> int:
        """The most memory all decodes together may take: decode threads × one decode's bound.

        The threads are ``decode_threads`` plus the one low-priority thread
        for big pictures without a draft mode.

        >>> ServeConfig(decode_workers=2).decode_memory // 2**20
        728
        """
        return (self.decode_threads + 1) * self.limits.decode_bytes


def read_api_keys(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """API keys from a file: one a line; blank lines and ``#`` comments ignored.

    The file should be readable by the service's user only; a key is never
    echoed, so an error names only the file.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{file}: cannot read the API key file ({exc.strerror or exc})") from exc
    keys = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if not keys:
        raise UsageError(f"{file}: the API key file has no keys (expected one key a line)")
    short = [number for number, key in enumerate(keys, 1) if len(key) < 16]
    if short:
        raise UsageError(f"{file}: key number {short[0]} is shorter than 16 characters; use long random keys")
    return keys
