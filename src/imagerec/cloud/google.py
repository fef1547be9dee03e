"""Google Cloud Vision ``images:annotate`` with ``LABEL_DETECTION``, over REST.

Request and response follow the v1 reference
(https://cloud.google.com/vision/docs/reference/rest/v1/images/annotate and
https://cloud.google.com/vision/docs/labels)::

    POST https://vision.googleapis.com/v1/images:annotate
    {"requests": [{"image": {"content": "<base64>"},
                   "features": [{"type": "LABEL_DETECTION", "maxResults": 10}]}]}
    -> {"responses": [{"labelAnnotations": [{"mid": "/m/01c8br", "description": "Street",
                                             "score": 0.87, "topicality": 0.87}]},
                      {"error": {"code": 3, "message": "Bad image data."}}]}

A failed call as a whole answers with Google's error envelope
``{"error": {"code": 403, "message": "...", "status": "PERMISSION_DENIED"}}``.

Credentials, in this order: an API key in ``GOOGLE_API_KEY`` (sent in the
``x-goog-api-key`` header, never in the URL), else Application Default
Credentials through google-auth (``GOOGLE_APPLICATION_CREDENTIALS``, the
gcloud ADC file, or the metadata server).

>>> from imagerec.cloud.google import GoogleVision
>>> GoogleVision(api_key="k").max_batch
16
"""

from __future__ import annotations

import base64
import os
from typing import Any, Iterable, Sequence

import httpx

from ..core.errors import CloudError
from ..recognizer import Prediction
from . import _http
from .base import Provider, Retryable, RetryPolicy, Upload, UploadLimits, one_line

__all__ = ["GoogleVision", "parse_annotate_response"]

DEFAULT_ENDPOINT = "https://vision.googleapis.com"
SCOPES = ("https://www.googleapis.com/auth/cloud-vision",)

# https://cloud.google.com/vision/docs/supported-files: image files up to
# 20 MB, at most 75 megapixels; a JSON request is limited to 10 MB, so an
# image sent inline as base64 (4/3 larger) must stay under about 7.5 MB.
# LABEL_DETECTION needs no more than 640×480 to work well, so sending less
# than the limits costs no accuracy. https://cloud.google.com/vision/quotas:
# 16 images per request.
_JSON_LIMIT = 10 * 1024 * 1024
_LIMITS = UploadLimits(
    max_bytes=7 * 1024 * 1024,
    max_pixels=75_000_000,
    formats=("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "ICO"),
)

_HINTS = {
    "auth": "check GOOGLE_API_KEY or your Application Default Credentials and that the Vision API is enabled for the project",
    "quota": "wait and retry, or raise the project's Vision API quota",
    "network": "check the network and the endpoint",
}


def parse_annotate_response(body: Any, expected: int, top_k: int | None = None) -> list[list[Prediction] | CloudError]:
    """Turn an ``images:annotate`` response into predictions or per-image errors.

    >>> body = {"responses": [{"labelAnnotations": [{"mid": "/m/0bt9lr", "description": "Dog", "score": 0.97}]}]}
    >>> parse_annotate_response(body, 1)[0][0]
    Prediction(label='Dog', score=0.97, index=-1)
    """
    responses = body.get("responses") if isinstance(body, dict) else None
    if not isinstance(responses, list) or len(responses) != expected:
        got = len(responses) if isinstance(responses, list) else "no"
        raise CloudError("google", f"expected {expected} responses from images:annotate, got {got}", kind="server")
    results: list[list[Prediction] | CloudError] = []
    for response in responses:
        response = response if isinstance(response, dict) else {}
        error = response.get("error")
        if isinstance(error, dict) and (error.get("code") or error.get("message")):
            results.append(
                CloudError(
                    "google",
                    f"the service rejected the image (code {error.get('code')}: {one_line(error.get('message', ''))})",
                    kind="invalid_image",
                )
            )
            continue
        labels = []
        for annotation in response.get("labelAnnotations") or []:
            name = annotation.get("description")
            if not name:
                continue
            labels.append(Prediction(str(name), float(annotation.get("score", 0.0)), -1))
        labels.sort(key=lambda p: -p.score)
        results.append(labels[:top_k] if top_k else labels)
    return results


def _parse_error(body: Any) -> tuple[str, str] | None:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    return str(error.get("status") or error.get("code") or ""), str(error.get("message") or "")


def _classify(status: int, body: Any) -> str | None:
    """Google answers a wrong API key with HTTP 400 INVALID_ARGUMENT and the
    ErrorInfo reason API_KEY_INVALID: that is a credentials problem."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    reasons = {d.get("reason") for d in error.get("details") or [] if isinstance(d, dict)}
    if reasons & {"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "SERVICE_DISABLED", "ACCESS_TOKEN_EXPIRED"}:
        return "auth"
    if status == 400 and "api key" in str(error.get("message", "")).lower():
        return "auth"
    if error.get("status") in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return "auth"
    if error.get("status") == "RESOURCE_EXHAUSTED":
        return "quota"
    return None


class GoogleVision(Provider):
    """Labels from Google Cloud Vision (``LABEL_DETECTION``), 16 images a request.

    ``api_key`` defaults to ``$GOOGLE_API_KEY``; without one, Application
    Default Credentials are used. ``endpoint`` defaults to
    ``$IMAGEREC_GOOGLE_VISION_ENDPOINT`` or the public service.
    """

    name = "google"
    limits = _LIMITS
    max_batch = 16
    max_request_bytes = _JSON_LIMIT - 64 * 1024  # room for the JSON around the images

    def __init__(
        self,
        *,
        api_key: str | None = None,
        credentials: Any = None,
        endpoint: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        **options: Any,
    ) -> None:
        super().__init__(retry=retry, **options)
        self._api_key = api_key if api_key is not None else os.environ.get("GOOGLE_API_KEY") or None
        self._credentials = credentials
        self.endpoint = (endpoint or os.environ.get("IMAGEREC_GOOGLE_VISION_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self._client = httpx.Client(timeout=timeout)

    def _secrets(self) -> Iterable[str]:
        secrets = [self._api_key or ""]
        token = getattr(self._credentials, "token", None)
        if token:
            secrets.append(token)
        return secrets

    def _request_size(self, upload: Upload) -> int:
        return 4 * ((len(upload.data) + 2) // 3) + 200

    def setup(self) -> None:
        # With ADC: find the credentials and fetch a token (retried like a request when the network fails).
        self._retrying(self._auth_headers)

    def _auth_headers(self) -> dict[str, str]:
        if self._api_key:
            return {"x-goog-api-key": self._api_key}
        credentials = self._load_credentials()
        if not credentials.valid:
            import google.auth.exceptions
            import google.auth.transport.requests

            try:
                credentials.refresh(google.auth.transport.requests.Request())
            except google.auth.exceptions.TransportError as exc:
                # No answer from the token service: the network, not the credentials.
                raise Retryable(CloudError(
                    "google",
                    f"cannot reach the token service for an access token ({one_line(exc, 200)}) — {_HINTS['network']}",
                    kind="network",
                )) from exc
            except google.auth.exceptions.GoogleAuthError as exc:
                raise CloudError(
                    "google",
                    f"cannot get an access token from Application Default Credentials ({one_line(exc, 200)}) — "
                    "run `gcloud auth application-default login` or check GOOGLE_APPLICATION_CREDENTIALS",
                    kind="auth",
                ) from exc
        headers = {"Authorization": f"Bearer {credentials.token}"}
        project = getattr(credentials, "quota_project_id", None)
        if project:
            headers["x-goog-user-project"] = project
        return headers

    def _load_credentials(self) -> Any:
        if self._credentials is None:
            import google.auth
            import google.auth.exceptions

            try:
                self._credentials, _ = google.auth.default(scopes=list(SCOPES))
            except google.auth.exceptions.DefaultCredentialsError as exc:
                raise CloudError(
                    "google",
                    "no credentials: set GOOGLE_API_KEY, or set up Application Default Credentials "
                    "(`gcloud auth application-default login` or GOOGLE_APPLICATION_CREDENTIALS=key.json)",
                    kind="config",
                ) from exc
        return self._credentials

    def _annotate(self, uploads: Sequence[Upload], top_k: int) -> list[list[Prediction] | CloudError]:
        payload = {
            "requests": [
                {
                    "image": {"content": base64.b64encode(upload.data).decode("ascii")},
                    "features": [{"type": "LABEL_DETECTION", "maxResults": top_k}],
                }
                for upload in uploads
            ]
        }
        body = _http.post_json(
            self._client,
            self.name,
            f"{self.endpoint}/v1/images:annotate",
            parse_error=_parse_error,
            hints=_HINTS,
            classify=_classify,
            json=payload,
            headers=self._auth_headers(),
        )
        return parse_annotate_response(body, len(uploads), top_k)

    def close(self) -> None:
        self._client.close()
