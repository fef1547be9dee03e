"""The web page in a real browser: headless Chromium (Debian's ``chromium``)
driven by Playwright, against ``imagerec serve`` on 127.0.0.1.

The page is opened on a phone-sized screen: the API key is asked for and
remembered, a shared photo is uploaded and its expected label appears as the
top bar, then the teach panel adds two classes to a new model from the
few-shot photos and the page recognises them. Screenshots are saved next to
the test's temporary files (their paths are printed). A fast check (no
browser) follows every file the page loads: all shipped, none from elsewhere.
The teaching page's full walk-through is ``test_web_teach.py``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from test_serving_server import start_server

CHROMIUM = os.environ.get("IMAGEREC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KEY = "web-ui-test-key-51c0ffee42"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"no Chromium at {CHROMIUM}: install it with `apt-get install -y chromium` (Debian) to run the browser test",
)


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("web"), keys=(KEY,))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    if os.environ.get("IMAGEREC_REQUIRE_BROWSER"):  # CI: a missing Playwright is a failure, not a skip
        import playwright.sync_api as sync_api
    else:
        sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


def top_label(card) -> str:
    return card.locator(".prediction .label").first.inner_text()


@pytest.mark.slow
def test_upload_and_teach_in_the_browser(server, browser, photos_dir: Path, tmp_path: Path):
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True)
    page.set_default_timeout(60_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(server.url + "/")

    # Keys are configured: the page asks for one, then lists the models.
    page.locator("#key-panel").wait_for(state="visible")
    page.fill("#key", KEY)
    page.click("#key-form button")
    page.locator("#model option[value='mobilenet_v2']").wait_for(state="attached")

    # Nothing taught yet: no "Keep this model" buttons, no results bar.
    assert not page.locator("#teach-downloads").is_visible()
    assert not page.locator("#results-bar").is_visible()

    page.set_input_files("#file-input", str(photos_dir / "hot_dog.jpg"))
    card = page.locator(".result.done").first
    card.wait_for()
    assert top_label(card) == "hotdog"
    percent = card.locator(".prediction .percent").first.inner_text()
    assert percent.endswith("%") and float(percent.rstrip(" %")) > 50
    assert card.locator(".prediction").count() == 5
    shots = tmp_path / "web-ui-predict.png"
    page.screenshot(path=str(shots), full_page=True)

    # A file that is not an image gets its own error, and the page goes on.
    page.set_input_files("#file-input", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"just text"})
    page.locator(".result.failed .error").first.wait_for()
    assert "not a recognised image" in page.locator(".result.failed .error").first.inner_text()

    # The results can be cleared, and they never push the teach panel out of reach.
    assert page.locator(".result").count() == 2
    page.click("#clear-results")
    assert page.locator(".result").count() == 0 and not page.locator("#results-bar").is_visible()
    page.set_input_files("#file-input", [str(photos_dir / "hot_dog.jpg")] * 12)
    page.wait_for_function("() => document.querySelectorAll('.result.done').length === 12")
    results_box = page.locator("#results").bounding_box()
    assert results_box["height"] <= 0.75 * 844  # scrolls inside its panel
    page.click("#clear-results")

    # Teach two classes into a new model; the page switches to it.
    few_shot = photos_dir / "few-shot"
    for label, files in (("hot dog", ["hotdog_train_0.bmp", "hotdog_train_1.bmp"]), ("cat", ["cat_train_0.bmp"])):
        page.fill("#teach-label", label)
        page.set_input_files("#teach-files", [str(few_shot / name) for name in files])
        page.click("#teach-button")
        page.wait_for_function(
            "text => document.querySelector('#teach-status').textContent.includes(text)", arg=f"Learned “{label}”"
        )
    assert page.locator("#model").input_value() == "taught"
    picked = page.locator("#model option[value='taught']").inner_text()
    assert picked == "taught (2 learned classes)", picked
    assert page.locator("#teach-downloads").is_visible()
    assert "hot dog, cat" in page.locator("#teach-status").inner_text()

    for photo, expected in (("cat_720p.jpg", "cat"), ("hot_dog.jpg", "hot dog")):
        page.set_input_files("#file-input", str(photos_dir / photo))
        page.wait_for_function(
            "name => { const c = document.querySelector('.result'); "
            "return c && c.classList.contains('done') && c.querySelector('.name').textContent.startsWith(name + ' · '); }",
            arg=photo,
        )
        assert top_label(page.locator(".result").first) == expected
    # The taught model can be kept: the page downloads its .imagerec file.
    with page.expect_download() as download:
        page.click("#teach-downloads button[data-format='imagerec']")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "taught.imagerec"
    import imagerec

    assert imagerec.load(saved).labels == ["hot dog", "cat"]

    taught = tmp_path / "web-ui-taught.png"
    page.screenshot(path=str(taught), full_page=True)
    print(f"screenshots: {shots} {taught}")
    assert shots.stat().st_size > 10_000 and taught.stat().st_size > 10_000
    assert not problems, problems
    page.close()


def test_the_page_ships_every_file_it_loads_and_calls_no_other_host(models_dir):
    """Every module the page imports is served from the package, and its policy allows this server only."""
    import re

    import imagerec
    from fastapi.testclient import TestClient
    from imagerec.serving import create_app

    with TestClient(create_app([imagerec.load("mobilenet_v2")])) as client:
        page = client.get("/")
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy
        pending, seen = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text), set()
        while pending:
            path = pending.pop()
            if path in seen:
                continue
            seen.add(path)
            reply = client.get(path)
            assert reply.status_code == 200, path
            text = reply.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, never fetched
            assert "http://" not in text and "https://" not in text, path
            if path.endswith(".js"):
                assert reply.headers["content-type"].startswith("text/javascript")
                pending += [f"/static/{name}" for name in re.findall(r'from "\./([\w.-]+\.js)"', reply.text)]
    assert {"/static/main.js", "/static/camera.js", "/static/teach.js", "/static/style.css"} <= seen


@pytest.mark.slow
def test_api_docs_render_with_no_internet(server, browser):
    page = browser.new_page()
    page.set_default_timeout(60_000)
    outside: list[str] = []

    def only_this_server(route):
        if route.request.url.startswith(server.url):
            route.continue_()
        else:  # as on a machine with no internet
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(server.url + "/")
    page.click("footer a[href='/docs']")
    page.locator(".swagger-ui .info .title").wait_for()
    assert "imagerec" in page.locator(".swagger-ui .info .title").inner_text()
    page.locator(".opblock-summary-path", has_text="/v1/predict").first.wait_for()
    assert not outside, outside
    page.close()
