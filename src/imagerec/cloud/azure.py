"""Azure AI Vision Image Analysis 4.0, the ``tags`` feature, over REST.

Request and response follow "Call the Image Analysis 4.0 Analyze API"
(https://learn.microsoft.com/azure/ai-services/computer-vision/how-to/call-analyze-image-40)
and "Image tagging (version 4.0)" (.../computer-vision/concept-tag-images-40)::

    POST {endpoint}/computervision/imageanalysis:analyze?features=tags&api-version=2024-02-01
    Ocp-Apim-Subscription-Key: <key>
    Content-Type: application/octet-stream
    <image bytes>
    -> {"modelVersion": "2023-10-01", "metadata": {"width": 300, "height": 200},
        "tagsResult": {"values": [{"name": "grass", "confidence": 0.996}]}}

Errors come as ``{"error": {"code": "InvalidRequest", "message": "...",
"innererror": {"code": "InvalidImageFormat", "message": "..."}}}``; a wrong
key is HTTP 401, throttling HTTP 429 with ``Retry-After``.

The endpoint and key come from ``AZURE_VISION_ENDPOINT`` / ``AZURE_VISION_KEY``
(or ``VISION_ENDPOINT`` / ``VISION_KEY``, the names Microsoft's quickstarts use).
One image per request: the service has no batch call.

>>> from imagerec.cloud.azure import AzureVision
>>> AzureVision(endpoint="https://x.cognitiveservices.azure.com", key="k").max_batch
1
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

import httpx

from ..core.errors import CloudError
from ..recognizer import Prediction
from . import _http
from .base import Provider, RetryPolicy, Upload, UploadLimits

__all__ = ["AzureVision", "parse_analyze_response", "API_VERSION"]

API_VERSION = "2024-02-01"  # the GA Image Analysis 4.0 version

# Image requirements (…/computer-vision/overview-image-analysis, "Image
# requirements", 4.0): JPEG, PNG, GIF, BMP, WEBP, ICO, TIFF or MPO; file
# under 20 MB (the service says "larger than 20971520 bytes" when over);
# each side between 50 and 16,000 pixels.
_LIMITS = UploadLimits(
    max_bytes=20 * 1024 * 1024,
    max_side=16_000,
    formats=("JPEG", "PNG", "GIF", "BMP", "WEBP", "ICO", "TIFF"),
)

_HINTS = {
    "auth": "check AZURE_VISION_KEY and that AZURE_VISION_ENDPOINT is the endpoint of the same resource",
    "quota": "wait and retry, or move the resource to a higher pricing tier",
    "network": "check the network and AZURE_VISION_ENDPOINT",
}


def parse_analyze_response(body: Any, top_k: int | None = None) -> list[Prediction]:
    """Predictions from an ``imageanalysis:analyze`` answer with ``tags``.

    >>> parse_analyze_response({"tagsResult": {"values": [{"name": "grass", "confidence": 0.99}]}})
    [Prediction(label='grass', score=0.99, index=-1)]
    """
    if not isinstance(body, dict) or not isinstance(body.get("tagsResult"), dict):
        raise CloudError("azure", "the answer has no tagsResult (was features=tags sent?)", kind="server")
    labels = [
        Prediction(str(tag["name"]), float(tag.get("confidence", 0.0)), -1)
        for tag in body["tagsResult"].get("values") or []
        if isinstance(tag, dict) and tag.get("name")
    ]
    labels.sort(key=lambda p: -p.score)
    return labels[:top_k] if top_k else labels


def _parse_error(body: Any) -> tuple[str, str] | None:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    inner = error.get("innererror") if isinstance(error.get("innererror"), dict) else {}
    code = inner.get("code") or error.get("code") or ""
    message = inner.get("message") or error.get("message") or ""
    return str(code), str(message)


class AzureVision(Provider):
    """Tags from Azure AI Vision Image Analysis 4.0, one image a request."""

    name = "azure"
    limits = _LIMITS
    max_batch = 1

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        key: str | None = None,
        api_version: str = API_VERSION,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        **options: Any,
    ) -> None:
        super().__init__(retry=retry, **options)
        endpoint = endpoint or os.environ.get("AZURE_VISION_ENDPOINT") or os.environ.get("VISION_ENDPOINT")
        key = key or os.environ.get("AZURE_VISION_KEY") or os.environ.get("VISION_KEY")
        if not endpoint or not key:
            missing = " and ".join(name for name, value in (("AZURE_VISION_ENDPOINT", endpoint), ("AZURE_VISION_KEY", key)) if not value)
            raise CloudError(
                "azure",
                f"no {missing} set — give the endpoint and key of an Azure AI Vision resource "
                "(Azure portal → the resource → Keys and Endpoint)",
                kind="config",
            )
        if not endpoint.startswith(("https://", "http://")):
            raise CloudError("azure", f"AZURE_VISION_ENDPOINT must be a URL like https://NAME.cognitiveservices.azure.com, got {endpoint!r}", kind="config")
        self.endpoint = endpoint.rstrip("/")
        self.api_version = api_version
        self._key = key
        self._client = httpx.Client(timeout=timeout)

    def _secrets(self) -> Iterable[str]:
        return [self._key]

    def _annotate(self, uploads: Sequence[Upload], top_k: int) -> list[list[Prediction] | CloudError]:
        results: list[list[Prediction] | CloudError] = []
        for upload in uploads:
            try:
                body = _http.post_json(
                    self._client,
                    self.name,
                    f"{self.endpoint}/computervision/imageanalysis:analyze",
                    parse_error=_parse_error,
                    hints=_HINTS,
                    params={"features": "tags", "api-version": self.api_version},
                    headers={"Ocp-Apim-Subscription-Key": self._key, "Content-Type": "application/octet-stream"},
                    content=upload.data,
                )
            except CloudError as exc:
                if exc.kind != "invalid_image" or len(uploads) > 1:
                    raise
                results.append(exc)
                continue
            results.append(parse_analyze_response(body, top_k))
        return results

    def close(self) -> None:
        self._client.close()
