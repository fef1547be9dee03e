"""The API documentation pages (/docs, /redoc) work with no internet: every file they load is served here."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

import imagerec
from imagerec.serving import ServeConfig, create_app


@pytest.fixture(scope="module")
def client() -> TestClient:
    # With API keys on, as a deployed server runs: the documentation stays readable.
    app = create_app([imagerec.load("mobilenet_v2")], ServeConfig(api_keys=("docs-test-key",)))
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_files_this_server_serves(client: TestClient, page: str) -> None:
    reply = client.get(page)
    assert reply.status_code == 200
    references = re.findall(r"""(?:src|href|url)\s*[=:]\s*["']([^"']+)["']""", reply.text)
    assert references, reply.text
    for url in references:
        assert not re.match(r"^(https?:)?//", url), f"{page} loads {url} from the internet"
        assert client.get(url).status_code == 200, url


def test_the_openapi_document_the_docs_render_is_served(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "/v1/predict" in document["paths"]
