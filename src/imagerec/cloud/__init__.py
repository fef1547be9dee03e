"""Cloud vision services and local models behind one labelling interface.

``make_provider("google" | "aws" | "azure" | "local")`` builds a
:class:`~imagerec.cloud.base.Provider` configured from the environment and
the services' standard configuration files; :func:`compare` runs photos
through several and measures agreement, latency and cost.

>>> from imagerec.cloud import PROVIDER_NAMES
>>> PROVIDER_NAMES
('local', 'google', 'aws', 'azure')
"""

from __future__ import annotations

from typing import Any

from ..core.errors import UsageError
from .base import LabelResult, Provider, RetryPolicy, UploadLimits, prepare_upload
from .compare import Comparison, compare

__all__ = [
    "PROVIDER_NAMES",
    "make_provider",
    "Provider",
    "LabelResult",
    "RetryPolicy",
    "UploadLimits",
    "prepare_upload",
    "Comparison",
    "compare",
]

PROVIDER_NAMES = ("local", "google", "aws", "azure")


def make_provider(name: str, *, model: str = "mobilenet_v2", **options: Any) -> Provider:
    """A provider by name; ``model`` is the local model (zoo name or file).

    Cloud providers read their credentials only when they first send a
    request (Azure checks that an endpoint and key are set right away).
    """
    key = name.strip().lower()
    if key == "local":
        from .local import LocalProvider

        return LocalProvider(model, **options)
    if key == "google":
        from .google import GoogleVision

        return GoogleVision(**options)
    if key == "aws":
        from .aws import Rekognition

        return Rekognition(**options)
    if key == "azure":
        from .azure import AzureVision

        return AzureVision(**options)
    raise UsageError(f"unknown provider {name!r} (expected one of {', '.join(PROVIDER_NAMES)})")
