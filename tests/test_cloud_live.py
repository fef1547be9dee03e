"""The real services, opt-in: ``IMAGEREC_CLOUD_TESTS=1 pytest -m cloud tests/test_cloud_live.py``.

Each test runs only when its provider's credentials are configured (the same
environment variables and config files the providers read) and is skipped
otherwise. They cost a few requests each (well inside every free tier).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagerec.cloud import make_provider
from imagerec.cloud.compare import labels_match
from imagerec.core.errors import CloudError

pytestmark = pytest.mark.cloud


def _opted_in() -> None:
    if os.environ.get("IMAGEREC_CLOUD_TESTS") != "1":
        pytest.skip("real cloud calls are opt-in: set IMAGEREC_CLOUD_TESTS=1")


def _has_credentials(name: str) -> bool:
    if name == "google":
        if os.environ.get("GOOGLE_API_KEY"):
            return True
        try:
            import google.auth

            google.auth.default()
            return True
        except Exception:  # noqa: BLE001 - any failure means "not configured"
            return False
    if name == "aws":
        import boto3

        session = boto3.session.Session()
        return session.get_credentials() is not None and bool(session.region_name or os.environ.get("AWS_REGION"))
    if name == "azure":
        return bool((os.environ.get("AZURE_VISION_ENDPOINT") or os.environ.get("VISION_ENDPOINT"))
                    and (os.environ.get("AZURE_VISION_KEY") or os.environ.get("VISION_KEY")))
    return False


@pytest.fixture(autouse=True)
def _real_services(monkeypatch):
    # The suite's fakes set endpoints for other tests; a live run must not inherit them.
    for key in ("IMAGEREC_GOOGLE_VISION_ENDPOINT", "AWS_ENDPOINT_URL_REKOGNITION"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("name", ["google", "aws", "azure"])
def test_real_service_labels_a_cat(name: str, photos_dir: Path):
    _opted_in()
    if not _has_credentials(name):
        pytest.skip(f"no {name} credentials configured")
    provider = make_provider(name)
    [labels] = provider.labels([photos_dir / "cat_720p.jpg"], top_k=10)
    assert labels and all(0.0 <= p.score <= 1.0 for p in labels)
    assert any(labels_match(p.label, "cat") for p in labels), [p.label for p in labels]


@pytest.mark.parametrize("name", ["google", "aws", "azure"])
def test_real_service_rejects_a_broken_image(name: str, photos_dir: Path):
    _opted_in()
    if not _has_credentials(name):
        pytest.skip(f"no {name} credentials configured")
    broken = (photos_dir / "cat_720p.jpg").read_bytes()[:3000]
    [result] = make_provider(name).label_files([broken])
    # Some services label what they can decode of a truncated JPEG; either way
    # the answer must be labels or a one-line invalid-image error.
    if not result.ok:
        assert isinstance(result.error, CloudError) and result.error.kind == "invalid_image"
        assert "\n" not in str(result.error)
