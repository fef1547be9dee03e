"""``imagerec serve`` as a real process on 127.0.0.1: the official Cloud Vision
client gets labels from it, API keys are enforced, and no key reaches the log."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

KEY = "serve-test-key-7f3a9c1e5b"
WRONG_KEY = "not-the-key-00000000000"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_server(folder: Path, *arguments: str, keys: tuple[str, ...] = ()) -> Server:
    """``imagerec serve`` on a free port of 127.0.0.1, once it answers /readyz."""
    command = [sys.executable, "-m", "imagerec", "serve", "--port", str(free_port()), *arguments]
    if keys:
        key_file = folder / "keys.txt"
        key_file.write_text("# test keys\n" + "\n".join(keys) + "\n")
        command += ["--api-key-file", str(key_file)]
    log = folder / "server.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{command[command.index('--port') + 1]}", log)
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            pytest.fail(f"imagerec serve exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(server.url + "/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"imagerec serve did not become ready: {log.read_text()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory) -> Server:
    running = start_server(tmp_path_factory.mktemp("serve"), "--max-batch", "8", keys=(KEY,))
    yield running
    running.stop()


def vision_client(server: Server, **options):
    from google.cloud import vision

    client_options = {"api_endpoint": server.url, **options}
    if "api_key" in options:
        return vision.ImageAnnotatorClient(transport="rest", client_options=client_options)
    from google.auth.credentials import AnonymousCredentials

    return vision.ImageAnnotatorClient(credentials=AnonymousCredentials(), transport="rest", client_options=client_options)


def test_official_cloud_vision_client_gets_labels(server, photos_dir):
    from google.cloud import vision

    client = vision_client(server, api_key=KEY)
    response = client.label_detection(image=vision.Image(content=(photos_dir / "parrot.jpg").read_bytes()), max_results=3)
    assert not response.error.message
    labels = response.label_annotations
    assert len(labels) == 3
    assert labels[0].description == "macaw"
    assert 0.5 < labels[0].score <= 1.0 and labels[0].topicality == pytest.approx(labels[0].score)

    batch = client.batch_annotate_images(
        requests=[
            {"image": {"content": (photos_dir / "hot_dog.jpg").read_bytes()}, "features": [{"type_": "LABEL_DETECTION", "max_results": 1}]},
            {"image": {"content": b"this is not an image"}, "features": [{"type_": "LABEL_DETECTION"}]},
        ]
    )
    good, bad = batch.responses
    assert [label.description for label in good.label_annotations] == ["hotdog"]
    assert bad.error.code == 3 and "not a recognised image" in bad.error.message


def test_official_client_with_anonymous_credentials_on_an_open_server(models_dir, photos_dir, tmp_path):
    from google.cloud import vision

    open_server = start_server(tmp_path)  # no --api-key-file: anonymous callers are served
    try:
        client = vision_client(open_server)  # AnonymousCredentials, REST transport
        response = client.label_detection(image=vision.Image(content=(photos_dir / "hot_dog.jpg").read_bytes()), max_results=2)
        assert not response.error.message
        assert [label.description for label in response.label_annotations][:1] == ["hotdog"]
        assert len(response.label_annotations) == 2
    finally:
        open_server.stop()


def test_official_client_sees_request_errors(server, photos_dir):
    from google.api_core import exceptions

    # Without a key: 401 in Google's error shape. (The official client, given
    # anonymous credentials, answers a 401 by trying to refresh them, so
    # this one is checked over plain HTTP.)
    keyless = httpx.post(server.url + "/v1/images:annotate", json={"requests": []})
    assert keyless.status_code == 401
    assert keyless.json()["error"]["status"] == "UNAUTHENTICATED"
    entry = {"image": {"content": b"x"}, "features": [{"type_": "LABEL_DETECTION"}]}
    with pytest.raises(exceptions.BadRequest, match="at most 16"):
        vision_client(server, api_key=KEY).batch_annotate_images(requests=[entry] * 17)


def test_keys_are_enforced_and_never_logged(server, photos_dir):
    photo = (photos_dir / "hot_dog.jpg").read_bytes()
    raw = {"content": photo, "headers": {"content-type": "image/jpeg"}}
    refused = [
        httpx.post(server.url + "/v1/predict", **raw),
        httpx.post(server.url + "/v1/predict", content=photo, headers={**raw["headers"], "x-api-key": WRONG_KEY}),
        httpx.post(server.url + f"/v1/predict?key={WRONG_KEY}", **raw),
        httpx.get(server.url + "/metrics"),
    ]
    assert [reply.status_code for reply in refused] == [401] * 4
    accepted = [
        httpx.post(server.url + "/v1/predict", content=photo, headers={**raw["headers"], "x-api-key": KEY}),
        httpx.post(server.url + f"/v1/predict?key={KEY}", **raw),
        httpx.get(server.url + "/metrics", params={"key": KEY}),
    ]
    assert [reply.status_code for reply in accepted] == [200] * 3
    assert accepted[0].json()["results"][0]["predictions"][0]["label"] == "hotdog"
    time.sleep(0.3)  # let the access log lines land
    log = server.log_text()
    assert "POST /v1/predict 401" in log and "POST /v1/predict 200" in log  # requests are logged...
    assert KEY not in log and WRONG_KEY not in log  # ...keys are not
    assert "key=" not in log


def test_the_page_is_served(server):
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>imagerec" in page.text


def test_bad_key_file_is_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "imagerec", "serve", "--api-key-file", str(tmp_path / "missing.txt")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot read the API key file" in result.stderr and "Traceback" not in result.stderr


def test_sigterm_finishes_the_requests_in_flight(models_dir, photos_dir, tmp_path):
    import asyncio
    import signal

    running = start_server(tmp_path, "--max-batch", "4")
    photo = (photos_dir / "hot_dog.jpg").read_bytes()
    files = [("file", (f"{i}.jpg", photo)) for i in range(16)]  # a request that takes a while

    def count(text: str, prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    async def scenario():
        async with httpx.AsyncClient(timeout=60) as http:
            tasks = [asyncio.create_task(http.post(running.url + "/v1/predict", files=files)) for _ in range(3)]
            in_flight = 0.0
            for _ in range(600):  # wait until the server holds all three requests...
                text = (await http.get(running.url + "/metrics")).text
                in_flight = count(text, "imagerec_queue_depth{")
                if in_flight + count(text, "imagerec_images_total{") >= 48:  # in flight + answered
                    break
                await asyncio.sleep(0.02)
            running.process.send_signal(signal.SIGTERM)  # ...then tell it to stop
            return in_flight, await asyncio.gather(*tasks, return_exceptions=True)

    try:
        in_flight, replies = asyncio.run(scenario())
        assert in_flight > 0  # the signal came while images were being recognised
        assert all(isinstance(reply, httpx.Response) and reply.status_code == 200 for reply in replies), replies
        assert all(len(reply.json()["results"]) == 16 for reply in replies)
        # uvicorn re-raises the signal once it has shut down cleanly (systemd counts that as a clean stop).
        assert running.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in running.log_text()
    finally:
        running.stop()
