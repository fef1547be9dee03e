"""Cloud providers against local fakes that follow each service's documented formats.

The real clients are used: httpx for Google and Azure, boto3 for Rekognition
(pointed at the fake with AWS_ENDPOINT_URL_REKOGNITION and dummy keys).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes.cloud import AWS_ACCESS_KEY, AWS_SECRET_KEY, AZURE_KEY, GOOGLE_KEY, GOOGLE_TOKEN, FakeCloud
from imagerec.cloud import make_provider
from imagerec.cloud.aws import Rekognition, parse_detect_labels
from imagerec.cloud.azure import AzureVision, parse_analyze_response
from imagerec.cloud.base import RetryPolicy, UploadLimits, parse_retry_after, prepare_upload
from imagerec.cloud.google import GoogleVision, parse_annotate_response
from imagerec.core.errors import CloudError, ImageDecodeError

EXAMPLES = Path(__file__).parent / "fakes" / "examples"
ENV_KEYS = (
    "GOOGLE_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "IMAGEREC_GOOGLE_VISION_ENDPOINT",
    "AZURE_VISION_ENDPOINT", "AZURE_VISION_KEY", "VISION_ENDPOINT", "VISION_KEY",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_REKOGNITION",
)


def configure(monkeypatch: pytest.MonkeyPatch, fake: FakeCloud, tmp_path: Path) -> None:
    """Point every provider at ``fake`` with the fake credentials; nothing from the real machine."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", GOOGLE_KEY)
    monkeypatch.setenv("IMAGEREC_GOOGLE_VISION_ENDPOINT", fake.url)
    monkeypatch.setenv("AZURE_VISION_ENDPOINT", fake.url)
    monkeypatch.setenv("AZURE_VISION_KEY", AZURE_KEY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", fake.url)
    # No ~/.aws files and no instance-metadata lookups (they would take seconds offline).
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # google-auth must not find the developer's own ADC file either.
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    server = FakeCloud()
    configure(monkeypatch, server, tmp_path)
    yield server
    server.close()


class Sleeps(list):
    """Records the waits a provider asks for instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def provider(name: str, **options):
    return make_provider(name, retry=RetryPolicy(attempts=4, base_delay=0.5, max_delay=30.0), sleep=Sleeps(), **options)


def jpeg_bytes(size=(320, 240), color=(200, 120, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    """A JPEG whose header is fine but whose data stops early: only the service notices."""
    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()[:2000]


# -- documented example responses --------------------------------------------


def test_google_documented_example_parses_exactly():
    body = json.loads((EXAMPLES / "google_labels_response.json").read_text())
    [labels] = parse_annotate_response(body, 1)
    assert [(p.label, p.score) for p in labels] == [
        ("Street", 0.87294734), ("Snapshot", 0.8523099), ("Town", 0.8481104), ("Night", 0.80408716), ("Alley", 0.7133322)
    ]


def test_aws_documented_example_parses_exactly():
    body = json.loads((EXAMPLES / "aws_detect_labels_response.json").read_text())
    labels, aliases = parse_detect_labels(body)
    assert len(labels) == 37
    assert labels[0].label == "Person" and labels[0].score == pytest.approx(0.9925074005126953)
    assert labels[-1].label == "Pedestrian" and labels[-1].score == pytest.approx(0.5064869689941406)
    assert all(0.0 <= p.score <= 1.0 for p in labels) and aliases == {}


def test_azure_documented_example_parses_exactly():
    body = json.loads((EXAMPLES / "azure_tags_response.json").read_text())
    labels = parse_analyze_response(body, top_k=3)
    assert [(p.label, p.score) for p in labels] == [
        ("grass", 0.9960499405860901), ("outdoor", 0.9956876635551453), ("building", 0.9893627166748047)
    ]


@pytest.mark.parametrize("name,example", [("google", "google_labels_response.json"), ("azure", "azure_tags_response.json"),
                                          ("aws", "aws_detect_labels_response.json")])
def test_documented_example_through_the_real_client(fake, name, example):
    body = json.loads((EXAMPLES / example).read_text())
    fake.faults[name].append((200, {}, body))
    [labels] = provider(name).labels([jpeg_bytes()], top_k=2)
    expected = {"google": ["Street", "Snapshot"], "azure": ["grass", "outdoor"], "aws": ["Person", "People"]}[name]
    assert [p.label for p in labels] == expected


# -- requests as documented ---------------------------------------------------


def test_google_batches_up_to_16_images_per_request(fake, photos_dir):
    results = provider("google").label_files([jpeg_bytes()] * 17, top_k=3)
    assert all(r.ok for r in results) and [p.label for p in results[0].predictions] == ["Cat", "Mammal", "Whiskers"]
    assert [len(seen.images) for seen in fake.requests["google"]] == [16, 1]
    first = fake.requests["google"][0]
    assert first.headers["x-goog-api-key"] == GOOGLE_KEY and "key" not in first.query
    assert first.body["requests"][0]["features"] == [{"type": "LABEL_DETECTION", "maxResults": 3}]


def test_google_requests_stay_under_the_10_mb_json_limit(fake, photos_dir):
    photos = [photos_dir / "parrot.jpg"] * 17  # 0.6 MB each, 0.8 MB in base64
    assert all(r.ok for r in provider("google").label_files(photos, top_k=1))
    sizes = [len(json.dumps(seen.body)) for seen in fake.requests["google"]]
    assert len(sizes) == 2 and max(sizes) <= 10 * 1024 * 1024


def test_azure_request_follows_the_documented_form(fake, photos_dir):
    [labels] = provider("azure").labels([photos_dir / "parrot.jpg"], top_k=2)
    assert [p.label for p in labels] == ["cat", "mammal"]
    [seen] = fake.requests["azure"]
    assert seen.query == {"features": ["tags"], "api-version": ["2024-02-01"]}
    assert seen.headers["content-type"] == "application/octet-stream"
    assert seen.images[0]["format"] == "JPEG"


def test_aws_request_is_signed_and_scores_are_scaled(fake, photos_dir):
    rekognition = provider("aws")
    [labels] = rekognition.labels([photos_dir / "parrot.jpg"], top_k=2)
    assert [(p.label, p.score) for p in labels] == [("Cat", pytest.approx(0.987)), ("Pet", pytest.approx(0.987))]
    assert rekognition.aliases("Cat") == ("Kitty",)
    [seen] = fake.requests["aws"]
    assert "Credential=AKIAFAKEFAKEFAKEFAKE/" in seen.headers["authorization"] and "/us-east-1/rekognition/" in seen.headers["authorization"]
    assert seen.body == {"MaxLabels": 2}


def use_service_account(tmp_path, monkeypatch, token_uri: str) -> None:
    """Point Application Default Credentials at a fresh service-account file whose token service is ``token_uri``."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    account = {
        "type": "service_account", "project_id": "imagerec-test", "private_key_id": "k1", "private_key": pem,
        "client_email": "tester@imagerec-test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": token_uri,
    }
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(account))
    monkeypatch.delenv("GOOGLE_API_KEY")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))


def test_google_application_default_credentials(fake, monkeypatch, tmp_path):
    """Without an API key, a service-account file (ADC) is exchanged for a bearer token."""
    use_service_account(tmp_path, monkeypatch, f"{fake.url}/token")
    [labels] = provider("google").labels([jpeg_bytes()], top_k=1)
    assert labels[0].label == "Cat"
    assert len(fake.requests["token"]) == 1
    assert fake.requests["google"][0].headers["authorization"] == f"Bearer {GOOGLE_TOKEN}"


# -- errors -------------------------------------------------------------------


@pytest.mark.parametrize("name,setting", [("google", "GOOGLE_API_KEY"), ("azure", "AZURE_VISION_KEY"), ("aws", "AWS_ACCESS_KEY_ID")])
def test_wrong_credentials_are_an_auth_error_naming_the_provider(fake, monkeypatch, name, setting):
    wrong = "WRONGKEYWRONGKEY1234"
    monkeypatch.setenv(setting, wrong)
    fake.echo_credentials = True  # a service that repeats the key back must not make us print it
    results = provider(name).label_files([jpeg_bytes(), jpeg_bytes()])
    error = results[0].error
    assert isinstance(error, CloudError) and error.kind == "auth" and error.provider == name
    assert str(error).startswith(f"{name}: ") and "\n" not in str(error)
    assert wrong not in str(error)
    # Credentials fail for every image: the second image is not sent.
    assert len(fake.requests[name]) == 1 and results[1].error is error


def test_google_missing_credentials_is_a_config_error(fake, monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY")
    error = provider("google").label_files([jpeg_bytes()])[0].error
    assert error.kind == "config" and "GOOGLE_API_KEY" in str(error) and "application-default" in str(error)
    assert fake.requests["google"] == []


def test_aws_missing_credentials_and_region_are_config_errors(fake, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    error = provider("aws").label_files([jpeg_bytes()])[0].error
    assert error.kind == "config" and "AWS_ACCESS_KEY_ID" in str(error)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY)
    monkeypatch.delenv("AWS_REGION")
    error = provider("aws").label_files([jpeg_bytes()])[0].error
    assert error.kind == "config" and "AWS_REGION" in str(error)


def test_azure_without_endpoint_fails_when_built(fake, monkeypatch):
    monkeypatch.delenv("AZURE_VISION_ENDPOINT")
    with pytest.raises(CloudError, match="azure: no AZURE_VISION_ENDPOINT set"):
        make_provider("azure")


@pytest.mark.parametrize("name", ["google", "azure", "aws"])
def test_invalid_image_is_a_per_image_error(fake, name):
    results = provider(name).label_files([truncated_jpeg(), jpeg_bytes()], top_k=2)
    assert results[0].error.kind == "invalid_image" and results[0].error.provider == name
    assert results[1].ok and results[1].predictions
    message = str(results[0].error)
    expected = {"google": "Bad image data", "azure": "InvalidImageFormat", "aws": "InvalidImageFormatException"}[name]
    assert expected in message


def _throttled(name: str, retry_after: str):
    body = {
        "google": {"error": {"code": 429, "message": "Quota exceeded for quota metric 'Requests'.", "status": "RESOURCE_EXHAUSTED"}},
        "azure": {"error": {"code": "429", "message": "Rate limit is exceeded. Try again in 7 seconds."}},
        "aws": {"__type": "ProvisionedThroughputExceededException", "Message": "Provisioned rate exceeded"},
    }[name]
    return (429 if name != "aws" else 400), {"Retry-After": retry_after}, body


@pytest.mark.parametrize("name", ["google", "azure", "aws"])
def test_throttling_honours_retry_after_then_succeeds(fake, name):
    fake.faults[name].append(_throttled(name, "7"))
    p = provider(name)
    [labels] = p.labels([jpeg_bytes()], top_k=1)
    assert labels and len(fake.requests[name]) == 2
    assert p.sleep == [7.0]


@pytest.mark.parametrize("name", ["google", "azure", "aws"])
def test_server_errors_are_retried_with_backoff(fake, name):
    body = {"google": {"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}},
            "azure": {"error": {"code": "InternalServerError", "message": "An internal server error occurred."}},
            "aws": {"__type": "InternalServerError", "Message": "Internal server error"}}[name]
    fake.faults[name].extend([(500, {}, body), (503, {}, body)])
    p = provider(name)
    [labels] = p.labels([jpeg_bytes()], top_k=1)
    assert labels and len(fake.requests[name]) == 3
    assert len(p.sleep) == 2 and 0.25 <= p.sleep[0] <= 0.5 and 0.5 <= p.sleep[1] <= 1.0


def test_retries_are_bounded(fake):
    fake.faults["azure"].extend([_throttled("azure", "1")] * 10)
    p = provider("azure")
    error = p.label_files([jpeg_bytes(), jpeg_bytes()])[0].error
    assert error.kind == "quota" and "gave up after 4 attempts" in str(error) and "Rate limit is exceeded" in str(error)
    assert len(fake.requests["azure"]) == 4 and p.sleep == [1.0, 1.0, 1.0]


def test_a_retry_after_longer_than_the_cap_is_not_waited_for(fake):
    fake.faults["google"].append(_throttled("google", "3600"))
    p = provider("google")
    error = p.label_files([jpeg_bytes()])[0].error
    assert error.kind == "quota" and "asked to wait 3600 s" in str(error) and p.sleep == []


@pytest.mark.parametrize("name", ["google", "azure"])
def test_a_garbled_answer_is_a_one_line_server_error(fake, name):
    fake.faults[name].append((200, {}, b"<html>gateway</html>"))
    error = provider(name).label_files([jpeg_bytes()])[0].error
    assert error.kind == "server" and "not JSON" in str(error) and "\n" not in str(error)


def test_google_answer_with_the_wrong_number_of_responses(fake):
    fake.faults["google"].append((200, {}, {"responses": [{}, {}]}))
    error = provider("google").label_files([jpeg_bytes()])[0].error
    assert error.kind == "server" and "expected 1 responses" in str(error)


def test_progress_callback_sees_every_image(fake):
    seen = []
    provider("google").label_files([jpeg_bytes(), b"not an image", jpeg_bytes()], on_result=seen.append)
    assert len(seen) == 3 and sum(r.ok for r in seen) == 2


def test_network_failure_is_retried_then_reported(monkeypatch, tmp_path):
    server = FakeCloud()
    configure(monkeypatch, server, tmp_path)
    server.close()  # nothing listens on that port any more
    p = provider("azure")
    error = p.label_files([jpeg_bytes()])[0].error
    assert error.kind == "network" and error.provider == "azure" and "cannot reach the service" in str(error)
    assert len(p.sleep) == 3


# -- image size limits ----------------------------------------------------------


def noisy_png(side: int) -> bytes:
    """A PNG that compresses badly, so it is big in bytes for its pixels."""
    noise = np.random.default_rng(1).integers(0, 255, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def test_oversize_image_is_downscaled_before_upload_to_rekognition(fake, tmp_path):
    big = noisy_png(1400)
    assert len(big) > 5 * 1024 * 1024
    path = tmp_path / "big.png"
    path.write_bytes(big)
    [labels] = provider("aws").labels([path], top_k=1)
    assert labels[0].label == "Cat"
    [seen] = fake.requests["aws"]
    assert seen.images[0]["bytes"] <= 5 * 1024 * 1024 and seen.images[0]["format"] == "JPEG"


def test_too_many_pixels_a_side_is_downscaled_for_rekognition(fake):
    wide = io.BytesIO()
    Image.new("RGB", (12_000, 60), (90, 90, 90)).save(wide, format="PNG")  # small file, too wide
    provider("aws").labels([wide.getvalue()], top_k=1)
    [seen] = fake.requests["aws"]
    assert seen.images[0]["size"] == (10_000, 50)


def test_formats_a_service_refuses_are_reencoded(fake, photos_dir):
    provider("aws").labels([photos_dir / "grace_hopper.bmp"], top_k=1)
    provider("google").labels([photos_dir / "grace_hopper.bmp"], top_k=1)
    assert fake.requests["aws"][0].images[0]["format"] == "JPEG"  # Rekognition takes JPEG and PNG only
    assert fake.requests["google"][0].images[0]["format"] == "BMP"  # Google takes BMP as it is


def test_prepare_upload_limits():
    photo = jpeg_bytes((400, 300))
    same = prepare_upload(photo, UploadLimits(max_bytes=10**6))
    assert same.data == photo and not same.reencoded
    small = prepare_upload(photo, UploadLimits(max_bytes=10**6, max_pixels=30_000))
    assert small.reencoded and small.size[0] * small.size[1] <= 30_000 and small.original_size == (400, 300)
    side = prepare_upload(photo, UploadLimits(max_bytes=10**6, max_side=100))
    assert max(side.size) == 100
    tight = prepare_upload(noisy_png(300), UploadLimits(max_bytes=20_000, formats=("PNG",)))
    assert len(tight.data) <= 20_000 and tight.format == "JPEG"
    with pytest.raises(ImageDecodeError, match="not a recognised image"):
        prepare_upload(b"not an image", UploadLimits(max_bytes=10**6))


def test_documented_limits_are_the_ones_used():
    assert Rekognition.limits.max_bytes == 5 * 1024 * 1024 and set(Rekognition.limits.formats) == {"JPEG", "PNG"}
    assert Rekognition.limits.max_side == 10_000
    assert AzureVision.limits.max_bytes == 20 * 1024 * 1024 and AzureVision.limits.max_side == 16000
    assert GoogleVision.limits.max_pixels == 75_000_000 and GoogleVision.max_batch == 16
    assert GoogleVision.limits.max_bytes * 4 / 3 < 10 * 1024 * 1024  # base64 inside a 10 MB JSON request


def test_parse_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after(None) is None and parse_retry_after("-3") == 0.0


def test_google_token_fetch_without_network_is_a_retried_network_error(fake, monkeypatch, tmp_path):
    """The token service cannot be reached: a network error after the retries, not a credentials problem."""
    import socket

    with socket.socket() as probe:  # a local port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    use_service_account(tmp_path, monkeypatch, f"http://127.0.0.1:{port}/token")
    google = provider("google")
    with pytest.raises(CloudError) as info:
        google.setup()
    assert info.value.kind == "network" and "network" in str(info.value) and "gave up after 4 attempts" in str(info.value)
    assert "credentials" not in str(info.value).lower() and "\n" not in str(info.value)
    assert len(google.sleep) == 3  # retried with backoff like any request
    [result] = provider("google").label_files([jpeg_bytes()])
    assert result.error.kind == "network" and str(result.error).startswith("google: cannot reach the token service")
    assert fake.requests["google"] == []
