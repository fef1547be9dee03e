"""Amazon Rekognition ``DetectLabels`` through boto3.

The request and answer follow the API reference
(https://docs.aws.amazon.com/rekognition/latest/APIReference/API_DetectLabels.html)::

    {"Image": {"Bytes": <image bytes>}, "MaxLabels": 10}
    -> {"Labels": [{"Name": "Skateboard", "Confidence": 99.2, "Parents": [...],
                    "Aliases": [{"Name": "..."}], "Categories": [...]}],
        "LabelModelVersion": "3.0"}

Errors are the AWS JSON protocol's ``{"__type": "InvalidImageFormatException",
"Message": "..."}`` — AccessDeniedException, ImageTooLargeException,
InvalidImageFormatException, InvalidParameterException (HTTP 400),
ProvisionedThroughputExceededException (400), ThrottlingException and
InternalServerError (500) — which botocore raises as ``ClientError``.

Credentials and region come from boto3's standard chain (environment,
``~/.aws/credentials`` and ``~/.aws/config``, SSO, instance roles); the
endpoint may be overridden with ``endpoint_url`` or boto3's own
``AWS_ENDPOINT_URL_REKOGNITION``. botocore's retries are switched off so
that imagerec's bounded, ``Retry-After``-honouring policy is the only one.
One image per request: DetectLabels has no batch call.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from ..core.errors import CloudError
from ..recognizer import Prediction
from .base import Provider, Retryable, RetryPolicy, Upload, UploadLimits, one_line, parse_retry_after

__all__ = ["Rekognition", "parse_detect_labels"]

# https://docs.aws.amazon.com/rekognition/latest/APIReference/API_Image.html:
# "Blob of image bytes up to 5 MBs" (maximum length 5242880); DetectLabels
# takes "either a PNG or JPEG formatted file" (API_DetectLabels), and
# https://docs.aws.amazon.com/rekognition/latest/dg/limits.html: "The maximum
# image dimensions for DetectLabels is 10K pixels for both width and height"
# (and at least 80 pixels each, which we cannot fix by scaling down).
_LIMITS = UploadLimits(max_bytes=5 * 1024 * 1024, max_side=10_000, formats=("JPEG", "PNG"))

_AUTH_CODES = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "MissingAuthenticationToken",
}
_THROTTLE_CODES = {"ThrottlingException", "ProvisionedThroughputExceededException", "LimitExceededException", "TooManyRequestsException"}
_IMAGE_CODES = {"InvalidImageFormatException", "ImageTooLargeException", "InvalidParameterException"}


def parse_detect_labels(body: Any, top_k: int | None = None) -> tuple[list[Prediction], dict[str, tuple[str, ...]]]:
    """Predictions (Confidence/100) and each label's aliases from a DetectLabels answer.

    >>> parse_detect_labels({"Labels": [{"Name": "Car", "Confidence": 87.8, "Aliases": [{"Name": "Automobile"}]}]})
    ([Prediction(label='Car', score=0.878, index=-1)], {'Car': ('Automobile',)})
    """
    labels: list[Prediction] = []
    aliases: dict[str, tuple[str, ...]] = {}
    for label in (body or {}).get("Labels") or []:
        name = label.get("Name")
        if not name:
            continue
        labels.append(Prediction(str(name), round(float(label.get("Confidence", 0.0)) / 100.0, 8), -1))
        names = tuple(str(a["Name"]) for a in label.get("Aliases") or [] if isinstance(a, dict) and a.get("Name"))
        if names:
            aliases[str(name)] = names
    labels.sort(key=lambda p: -p.score)
    return (labels[:top_k] if top_k else labels), aliases


class Rekognition(Provider):
    """Labels from Amazon Rekognition DetectLabels, one image a request.

    >>> Rekognition(region="us-east-1").limits.max_bytes
    5242880
    """

    name = "aws"
    limits = _LIMITS
    max_batch = 1

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        min_confidence: float | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        **options: Any,
    ) -> None:
        super().__init__(retry=retry, **options)
        self.region = region
        self.endpoint_url = endpoint_url
        self.profile = profile
        self.min_confidence = min_confidence
        self.timeout = timeout
        self._client: Any = None
        self._secret_values: list[str] = []

    def setup(self) -> None:
        self._rekognition()  # loading botocore's service model takes a while

    def _rekognition(self) -> Any:
        if self._client is None:
            import boto3
            import botocore.config
            import botocore.exceptions

            config = botocore.config.Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=min(self.timeout, 10.0),
                read_timeout=self.timeout,
            )
            try:
                # botocore reads AWS_DEFAULT_REGION; the AWS CLI and newer SDKs
                # also read AWS_REGION, so accept both.
                region = self.region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None
                session = boto3.session.Session(profile_name=self.profile, region_name=region)
                self._client = session.client("rekognition", endpoint_url=self.endpoint_url, config=config)
                credentials = session.get_credentials()
            except botocore.exceptions.NoRegionError as exc:
                raise CloudError(
                    "aws", "no region configured — set AWS_REGION or AWS_DEFAULT_REGION (e.g. us-east-1) or `region` in ~/.aws/config", kind="config"
                ) from exc
            except botocore.exceptions.ProfileNotFound as exc:
                raise CloudError("aws", f"{one_line(exc)} — check AWS_PROFILE and ~/.aws/config", kind="config") from exc
            if credentials is not None:
                try:  # only to keep them out of messages; the call itself resolves them again
                    frozen = credentials.get_frozen_credentials()
                    self._secret_values = [v for v in (frozen.access_key, frozen.secret_key, frozen.token) if v]
                except Exception:  # noqa: BLE001 - a refresh failure surfaces on the request
                    self._secret_values = []
        return self._client

    def _secrets(self) -> list[str]:
        return list(self._secret_values)

    def _annotate(self, uploads: Sequence[Upload], top_k: int) -> list[list[Prediction] | CloudError]:
        import botocore.exceptions

        client = self._rekognition()
        results: list[list[Prediction] | CloudError] = []
        for upload in uploads:
            request: dict[str, Any] = {"Image": {"Bytes": upload.data}, "MaxLabels": top_k}
            if self.min_confidence is not None:
                request["MinConfidence"] = self.min_confidence
            try:
                body = client.detect_labels(**request)
            except botocore.exceptions.NoCredentialsError as exc:
                raise CloudError(
                    "aws",
                    "no credentials found — set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run `aws configure`",
                    kind="config",
                ) from exc
            except botocore.exceptions.ClientError as exc:
                error = self._client_error(exc)
                if error.kind == "invalid_image" and len(uploads) == 1:
                    results.append(error)
                    continue
                raise error from exc
            except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionError) as exc:
                raise Retryable(
                    CloudError("aws", f"cannot reach the service ({one_line(exc, 200)}) — check the network and AWS_REGION", kind="network")
                ) from exc
            except botocore.exceptions.ReadTimeoutError as exc:
                raise Retryable(CloudError("aws", "no answer within the timeout", kind="network")) from exc
            except botocore.exceptions.BotoCoreError as exc:
                raise CloudError("aws", f"request failed ({one_line(exc, 200)})", kind="config") from exc
            labels, aliases = parse_detect_labels(body, top_k)
            self._aliases.update(aliases)
            results.append(labels)
        return results

    def _client_error(self, exc: Any) -> CloudError:
        """A :class:`CloudError` for a botocore ``ClientError`` (raises Retryable when worth retrying)."""
        info = exc.response.get("Error", {})
        code = str(info.get("Code") or "")
        message = one_line(info.get("Message") or "")
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode") or 0) or None
        detail = f"{code}{': ' + message if message else ''}" + (f", HTTP {status}" if status else "")
        if code in _AUTH_CODES or status in (401, 403):
            return CloudError("aws", f"the service refused the credentials ({detail}) — check the AWS credentials and the rekognition:DetectLabels permission", kind="auth", status=status)
        retry_after = parse_retry_after((meta.get("HTTPHeaders") or {}).get("retry-after"))
        if code in _THROTTLE_CODES or status == 429:
            raise Retryable(CloudError("aws", f"rate limit or quota exceeded ({detail}) — wait and retry, or request a higher TPS quota", kind="quota", status=status), retry_after)
        if status is not None and status >= 500:
            raise Retryable(CloudError("aws", f"the service failed ({detail})", kind="server", status=status), retry_after)
        if code in _IMAGE_CODES:
            return CloudError("aws", f"the service rejected the image ({detail})", kind="invalid_image", status=status)
        return CloudError("aws", f"request failed ({detail})", kind="invalid_image" if status == 400 else "server", status=status)
