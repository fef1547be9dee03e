"""Fake Google Cloud Vision, Amazon Rekognition and Azure AI Vision on 127.0.0.1.

One real HTTP server (in a thread) answers the three services' label calls
the way their documentation says they answer, error envelopes included, so
the real clients (httpx for the REST services, boto3 for Rekognition) can be
pointed at it:

* Google ``POST /v1/images:annotate`` — https://cloud.google.com/vision/docs/reference/rest/v1/images/annotate,
  errors in Google's envelope ``{"error": {"code", "message", "status", "details"}}``,
  per-image errors as ``responses[i].error`` ``{"code": 3, "message": "Bad image data."}``;
* AWS ``POST /`` with ``X-Amz-Target: RekognitionService.DetectLabels``
  (AWS JSON 1.1) — API_DetectLabels, errors as ``{"__type": ..., "Message": ...}``;
* Azure ``POST /computervision/imageanalysis:analyze?features=tags&api-version=…`` —
  Image Analysis 4.0, errors as ``{"error": {"code", "message", "innererror"}}``.

Tests steer it with ``labels[provider]`` (what it answers), ``faults[provider]``
(a queue of ``(status, headers, body)`` answers sent before any normal one)
and read ``requests[provider]`` (what each request carried).
"""

from __future__ import annotations

import base64
import binascii
import collections
import http.server
import io
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

GOOGLE_KEY = "fake-google-api-key-0123456789"
GOOGLE_TOKEN = "ya29.fake-access-token-abcdef"
AZURE_KEY = "fakeazurekey0123456789abcdef0123"
AWS_ACCESS_KEY = "AKIAFAKEFAKEFAKEFAKE"
AWS_SECRET_KEY = "fakeSecretKey/abcdefghijklmnopqrstuvwxyz01"

AZURE_API_VERSIONS = {"2023-10-01", "2024-02-01"}

DEFAULT_LABELS = {
    "google": [("Cat", 0.96), ("Mammal", 0.93), ("Whiskers", 0.9), ("Felidae", 0.88), ("Small to medium-sized cats", 0.86)],
    "aws": [("Cat", 98.7), ("Pet", 98.7), ("Animal", 98.7), ("Mammal", 98.7), ("Kitten", 72.1)],
    "azure": [("cat", 0.99), ("mammal", 0.98), ("indoor", 0.95), ("whiskers", 0.93), ("animal", 0.9)],
}


@dataclass
class Seen:
    """What one request carried: headers, query and the decoded images."""

    headers: dict[str, str]
    query: dict[str, list[str]]
    images: list[dict[str, Any]] = field(default_factory=list)  # format, size, bytes
    body: Any = None


class FakeCloud:
    """The three services' label endpoints on one local server."""

    def __init__(self) -> None:
        self.labels: dict[str, list[tuple[str, float]]] = {k: list(v) for k, v in DEFAULT_LABELS.items()}
        self.aliases: dict[str, list[str]] = {"Cat": ["Kitty"]}
        self.faults: dict[str, collections.deque] = {k: collections.deque() for k in ("google", "aws", "azure", "token")}
        self.requests: dict[str, list[Seen]] = {k: [] for k in ("google", "aws", "azure", "token")}
        self.echo_credentials = False  # put the received key in error messages (a hostile or buggy service)
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                headers = {k.lower(): v for k, v in self.headers.items()}
                if url.path == "/v1/images:annotate":
                    answer = fake._google(headers, query, body)
                elif url.path == "/computervision/imageanalysis:analyze":
                    answer = fake._azure(headers, query, body)
                elif url.path == "/" and "x-amz-target" in headers:
                    answer = fake._aws(headers, query, body)
                elif url.path == "/token":
                    answer = fake._token(headers, body)
                else:
                    answer = (404, {}, {"error": {"code": 404, "message": "not found"}})
                status, extra, payload = answer
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                content_type = "application/x-amz-json-1.1" if url.path == "/" else "application/json; charset=utf-8"
                self.send_header("Content-Type", content_type)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- helpers ----------------------------------------------------------

    def _fault(self, provider: str):
        queue = self.faults[provider]
        return queue.popleft() if queue else None

    @staticmethod
    def _decode(data: bytes) -> dict[str, Any] | None:
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return {"format": image.format, "size": image.size, "bytes": len(data)}
        except Exception:  # noqa: BLE001 - any failure means "not an image" here
            return None

    # -- Google -----------------------------------------------------------

    def _google_error(self, status: int, code: str, message: str, reason: str | None = None):
        error: dict[str, Any] = {"code": status, "message": message, "status": code}
        if reason:
            error["details"] = [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com",
                 "metadata": {"service": "vision.googleapis.com"}}
            ]
        return status, {}, {"error": error}

    def _google(self, headers, query, body):
        seen = Seen(headers, query)
        self.requests["google"].append(seen)
        fault = self._fault("google")
        if fault:
            return fault
        if "key" in query:
            return self._google_error(400, "INVALID_ARGUMENT", "imagerec must send the key in a header, not the URL")
        key = headers.get("x-goog-api-key")
        bearer = headers.get("authorization", "")
        if key is not None and key != GOOGLE_KEY:
            echo = f" (got {key})" if self.echo_credentials else ""
            return self._google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key." + echo, "API_KEY_INVALID")
        if key is None and bearer != f"Bearer {GOOGLE_TOKEN}":
            if bearer:
                return self._google_error(
                    401, "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                )
            return self._google_error(403, "PERMISSION_DENIED", "The request is missing a valid API key.")
        if len(body) > 10 * 1024 * 1024:
            return self._google_error(400, "INVALID_ARGUMENT", "Request payload size exceeds the limit: 10485760 bytes.")
        try:
            request = json.loads(body)
        except ValueError:
            return self._google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        seen.body = request
        items = request.get("requests") if isinstance(request, dict) else None
        if not isinstance(items, list) or not items:
            return self._google_error(400, "INVALID_ARGUMENT", "No requests specified.")
        if len(items) > 16:
            return self._google_error(400, "INVALID_ARGUMENT", "At most 16 images may be sent in one request.")
        responses = []
        for item in items:
            features = item.get("features") or []
            if not any(f.get("type") == "LABEL_DETECTION" for f in features):
                return self._google_error(400, "INVALID_ARGUMENT", "No feature requested.")
            max_results = next(int(f.get("maxResults", 10)) for f in features if f.get("type") == "LABEL_DETECTION")
            try:
                data = base64.b64decode(item["image"]["content"], validate=True)
            except (KeyError, TypeError, binascii.Error):
                return self._google_error(400, "INVALID_ARGUMENT", "Invalid value at 'requests[0].image.content' (TYPE_BYTES)")
            info = self._decode(data)
            seen.images.append(info or {"format": None, "bytes": len(data)})
            if info is None:
                responses.append({"error": {"code": 3, "message": "Bad image data."}})
                continue
            if len(data) > 20 * 1024 * 1024 or info["size"][0] * info["size"][1] > 75_000_000:
                responses.append({"error": {"code": 3, "message": "Image size too large."}})
                continue
            responses.append(
                {
                    "labelAnnotations": [
                        {"mid": f"/m/fake{i}", "description": name, "score": score, "topicality": score}
                        for i, (name, score) in enumerate(self.labels["google"][:max_results])
                    ]
                }
            )
        return 200, {}, {"responses": responses}

    # -- OAuth token endpoint (for Application Default Credentials) -------

    def _token(self, headers, body):
        self.requests["token"].append(Seen(headers, {}, body=body))
        fault = self._fault("token")
        if fault:
            return fault
        form = urllib.parse.parse_qs(body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or "assertion" not in form:
            return 400, {}, {"error": "invalid_grant", "error_description": "Invalid grant."}
        return 200, {}, {"access_token": GOOGLE_TOKEN, "expires_in": 3599, "token_type": "Bearer"}

    # -- Azure ------------------------------------------------------------

    def _azure(self, headers, query, body):
        seen = Seen(headers, query)
        self.requests["azure"].append(seen)
        fault = self._fault("azure")
        if fault:
            return fault
        key = headers.get("ocp-apim-subscription-key")
        if key != AZURE_KEY:
            echo = f" (got {key})" if self.echo_credentials else ""
            return 401, {}, {
                "error": {
                    "code": "401",
                    "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                    "valid key for an active subscription and use a correct regional API endpoint for your resource." + echo,
                }
            }
        if query.get("api-version", [""])[0] not in AZURE_API_VERSIONS:
            return 400, {}, {"error": {"code": "InvalidRequest", "message": "The requested API version is not supported.",
                                        "innererror": {"code": "NotSupportedApiVersion", "message": "The requested API version is not supported."}}}
        if query.get("features") != ["tags"]:
            return 400, {}, {"error": {"code": "InvalidRequest", "message": "The feature list is not valid.",
                                        "innererror": {"code": "InvalidParameter", "message": "The feature list is not valid."}}}
        if headers.get("content-type") != "application/octet-stream":
            return 415, {}, {"error": {"code": "InvalidRequest", "message": "Content type is not supported."}}
        if not body or len(body) > 20971520:
            return 400, {}, {"error": {"code": "InvalidRequest", "message": "The image size is not allowed to be zero or larger than 20971520 bytes."}}
        info = self._decode(body)
        seen.images.append(info or {"format": None, "bytes": len(body)})
        if info is None:
            return 400, {}, {"error": {"code": "InvalidRequest", "message": "Image format is not valid.",
                                        "innererror": {"code": "InvalidImageFormat", "message": "Input data is not a valid image."}}}
        width, height = info["size"]
        if min(width, height) < 50 or max(width, height) > 16000:
            message = "The image dimension is not allowed to be smaller than 50 and larger than 16000."
            return 400, {}, {"error": {"code": "InvalidRequest", "message": message, "innererror": {"code": "InvalidImageSize", "message": message}}}
        return 200, {}, {
            "modelVersion": "2023-10-01",
            "metadata": {"width": width, "height": height},
            "tagsResult": {"values": [{"name": n, "confidence": c} for n, c in self.labels["azure"]]},
        }

    # -- AWS --------------------------------------------------------------

    def _aws_error(self, status: int, code: str, message: str):
        return status, {"x-amzn-RequestId": "00000000-0000-0000-0000-000000000000", "x-amzn-ErrorType": f"{code}:"}, {"__type": code, "Message": message}

    def _aws(self, headers, query, body):
        seen = Seen(headers, query)
        self.requests["aws"].append(seen)
        fault = self._fault("aws")
        if fault:
            return fault
        if headers.get("x-amz-target") != "RekognitionService.DetectLabels":
            return self._aws_error(400, "UnknownOperationException", "")
        if headers.get("content-type") != "application/x-amz-json-1.1":
            return self._aws_error(400, "SerializationException", "Unexpected content type")
        match = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/\d{8}/([a-z0-9-]+)/rekognition/aws4_request, "
                         r"SignedHeaders=[^,]+, Signature=[0-9a-f]{64}$", headers.get("authorization", ""))
        if not match:
            return self._aws_error(400, "MissingAuthenticationTokenException", "Missing Authentication Token")
        if match.group(1) != AWS_ACCESS_KEY:
            echo = f" ({match.group(1)})" if self.echo_credentials else ""
            return self._aws_error(400, "UnrecognizedClientException", "The security token included in the request is invalid." + echo)
        try:
            request = json.loads(body)
            data = base64.b64decode(request["Image"]["Bytes"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            return self._aws_error(400, "InvalidParameterException", "Request has invalid parameters")
        seen.body = {k: v for k, v in request.items() if k != "Image"}
        info = self._decode(data)
        seen.images.append(info or {"format": None, "bytes": len(data)})
        if len(data) > 5242880:
            return self._aws_error(400, "ImageTooLargeException", "Image size is too large.")
        if info is None or info["format"] not in ("JPEG", "PNG"):
            return self._aws_error(400, "InvalidImageFormatException", "Request has invalid image format")
        if max(info["size"]) > 10_000:  # limits.html: DetectLabels takes at most 10K pixels a side
            return self._aws_error(400, "ImageTooLargeException", "Image dimensions are too large.")
        limit = int(request.get("MaxLabels", 1000))
        labels = []
        for name, confidence in self.labels["aws"][:limit]:
            labels.append({
                "Name": name,
                "Confidence": confidence,
                "Instances": [],
                "Parents": [{"Name": "Animal"}] if name != "Animal" else [],
                "Aliases": [{"Name": alias} for alias in self.aliases.get(name, [])],
                "Categories": [{"Name": "Animals and Pets"}],
            })
        return 200, {"x-amzn-RequestId": "11111111-1111-1111-1111-111111111111"}, {"Labels": labels, "LabelModelVersion": "3.0"}
