"""The teaching page in a real browser, with a fake camera.

Headless Chromium (Debian's ``chromium``) driven by Playwright against
``imagerec serve`` on 127.0.0.1, its camera a small Y4M video of a cat made
here from a shared photo. The page is driven the way a person uses it: a
class is recorded from the camera by holding a button (mouse and keyboard),
others are taught by choosing and dropping photos; an example is removed, a
class renamed and deleted; the live preview recognises the cat in the camera
(its frames per second are printed); the held-out estimate appears; the model
is downloaded, kept on the server, opened again from its file, and deleted; a
dropped photo's result shows why (the heat map) and what it shows. Every
request the page makes stays on 127.0.0.1. A screenshot of each state is saved
in the test's folder (``IMAGEREC_SCREENSHOTS=DIR`` saves them there instead).
"""

from __future__ import annotations

import base64
import mimetypes
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_serving_server import start_server
from test_web_ui import ARGS, CHROMIUM

KEY = "web-teach-test-key-7a11ce"
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 860}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}: `apt-get install -y chromium`"),
]


def write_y4m(photo: Path, target: Path, frames: int = 12, size: tuple[int, int] = (320, 240)) -> Path:
    """A short YUV 4:2:0 video of ``photo``, slightly moving, that Chromium plays as its camera (looping)."""
    width, height = size
    source = Image.open(photo).convert("RGB")
    with open(target, "wb") as video:
        video.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(frames):
            # a small drift, as a hand-held camera gives: each frame differs a little
            shift = index * 4
            box = (shift, shift // 2, source.width - (frames * 4 - shift), source.height - (frames * 2 - shift // 2))
            frame = source.crop(box).resize(size, Image.Resampling.BILINEAR).convert("YCbCr")
            y, cb, cr = (np.asarray(plane, dtype=np.uint8) for plane in frame.split())
            video.write(b"FRAME\n")
            video.write(y.tobytes())
            for plane in (cb, cr):
                video.write(plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)).round().astype(np.uint8).tobytes())
    return target


@pytest.fixture(scope="module")
def kept_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kept")


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory, kept_dir):
    running = start_server(tmp_path_factory.mktemp("web-teach"), "--taught-dir", str(kept_dir), keys=(KEY,))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def fake_camera(photos_dir: Path, tmp_path_factory) -> Path:
    return write_y4m(photos_dir / "cat_720p.jpg", tmp_path_factory.mktemp("camera") / "cat.y4m")


@pytest.fixture(scope="module")
def browser(fake_camera: Path):
    if os.environ.get("IMAGEREC_REQUIRE_BROWSER"):
        import playwright.sync_api as sync_api
    else:
        sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    camera_args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                   f"--use-file-for-fake-video-capture={fake_camera}"]
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS + camera_args, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture()
def shots(tmp_path: Path, request):
    folder = Path(os.environ.get("IMAGEREC_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []
    test = request.node.name.removeprefix("test_").split("_")[0]  # "teach", "results", "every"

    def shoot(page, name: str) -> Path:
        path = folder / f"{test}-{len(taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append(path)
        return path

    yield shoot
    print("screenshots:", *taken, sep="\n  ")


def open_page(browser, server, viewport, outside: list[str], problems: list[str]):
    context = browser.new_context(viewport=viewport, device_scale_factor=1, accept_downloads=True,
                                  permissions=["camera"], has_touch=viewport is PHONE)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.on("pageerror", lambda error: problems.append(str(error)))
    # (a 401 before the key and a 404 for a model not made yet are answers the page expects)
    page.on("console", lambda message: message.type == "error" and not message.text.startswith("Failed to load resource")
            and problems.append(message.text))
    page.on("response", lambda reply: reply.status >= 500 and problems.append(f"{reply.status} {reply.url}"))

    def only_this_server(route):
        url = route.request.url
        if url.startswith(server.url) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:  # as on a machine with no internet: anything else is a failure
            outside.append(url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(server.url + "/")
    page.locator("#key-panel").wait_for(state="visible")
    page.fill("#key", KEY)
    page.press("#key", "Enter")
    page.locator("#model option[value='mobilenet_v2']").wait_for(state="attached")
    return page


def card(page, label: str):
    return page.locator(f".class-card[data-label='{label}']")


def count_of(page, label: str) -> int:
    text = card(page, label).locator(".count").inner_text()
    return 0 if text.startswith("no ") else int(text.split()[0])


def wait_count(page, label: str, at_least: int) -> None:
    page.wait_for_function(
        "([label, n]) => { const c = document.querySelector(`.class-card[data-label='${label}'] .count`);"
        " return c && parseInt(c.textContent) >= n; }",
        arg=[label, at_least],
    )


def drop_files(page, selector: str, paths: list[Path]) -> None:
    """Drop files on an element as a person dragging them from their desktop does."""
    payload = [{"name": p.name, "type": mimetypes.guess_type(p.name)[0] or "application/octet-stream",
                "data": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    page.evaluate(
        """([selector, files]) => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, { type: f.type }));
            }
            const target = document.querySelector(selector);
            for (const type of ["dragenter", "dragover", "drop"]) {
                target.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
            }
        }""",
        [selector, payload],
    )


def hold(page, locator, seconds: float) -> None:
    box = locator.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.wait_for_timeout(seconds * 1000)
    page.mouse.up()


def add_class(page, label: str, files: list[Path] = ()) -> None:
    page.fill("#teach-label", label)
    if files:
        page.set_input_files("#teach-files", [str(f) for f in files])
    page.click("#teach-button")
    card(page, label).wait_for()


def test_teach_from_the_camera_and_photos(server, browser, kept_dir: Path, photos_dir: Path, tmp_path: Path, shots):
    outside: list[str] = []
    problems: list[str] = []
    page = open_page(browser, server, PHONE, outside, problems)
    few_shot = photos_dir / "few-shot"
    shots(page, "empty-phone")
    # Nothing taught: no class cards, nothing to keep, the estimate says what it needs.
    assert page.locator(".class-card[data-label]").count() == 0
    assert not page.locator("#teach-downloads").is_visible()
    assert "Teach a class" in page.locator("#estimate").inner_text()

    # A class with no photos waits for the camera; holding the button records a burst.
    add_class(page, "cat")
    assert card(page, "cat").locator(".count").inner_text() == "no examples yet"
    card(page, "cat").locator("button.webcam").click()
    card(page, "cat").locator("video.camera-view").wait_for(state="visible")
    shots(page, "class-waiting-for-camera")
    page.wait_for_function("() => document.querySelector('video.camera-view').readyState >= 2")
    hold(page, card(page, "cat").locator("button.record"), 1.5)
    page.wait_for_function("() => /frames? recorded/.test(document.querySelector('.record-count').textContent)")
    recorded = int(card(page, "cat").locator(".record-count").inner_text().split()[0])
    assert recorded >= 6  # ~10 frames a second while held
    wait_count(page, "cat", recorded)  # every frame taught, batch after batch
    assert count_of(page, "cat") == recorded
    assert card(page, "cat").locator(".thumb img").count() == recorded
    shots(page, "burst-recorded")

    # The keyboard records too: Space held on the focused button.
    card(page, "cat").locator("button.record").focus()
    page.keyboard.down(" ")
    page.wait_for_timeout(700)
    page.keyboard.up(" ")
    wait_count(page, "cat", recorded + 2)
    card(page, "cat").locator("button.webcam").click()  # close its camera view: the camera goes off
    page.wait_for_function("() => document.querySelector('#camera-toggle').textContent === 'Turn camera on'")

    # A class from chosen photos (the styled chooser), another from dropped ones.
    add_class(page, "hot dog", [few_shot / "hotdog_train_0.bmp", few_shot / "hotdog_train_1.bmp"])
    assert count_of(page, "hot dog") == 2
    add_class(page, "dog")
    drop_files(page, ".class-card[data-label='dog']", [few_shot / "dog_train_0.bmp"])
    wait_count(page, "dog", 1)
    card(page, "dog").locator("input[type=file]").set_input_files(str(photos_dir / "pets.jpg"))
    wait_count(page, "dog", 2)
    assert page.locator("#model").input_value() == "taught"
    assert page.locator("#teach-downloads").is_visible()

    # How good is it: the held-out estimate, updated as examples change.
    page.locator("#estimate-accuracy").wait_for()
    before = page.locator("#estimate").inner_text()
    assert "%" in page.locator("#estimate-accuracy").inner_text()
    shots(page, "three-classes-and-estimate")

    # Remove one example of the burst; rename a class; delete it (asked twice).
    total = count_of(page, "cat")
    card(page, "cat").locator(".thumb button.remove-example").first.click()
    wait_count(page, "cat", 1)
    page.wait_for_function("([n]) => parseInt(document.querySelector(`.class-card[data-label='cat'] .count`).textContent) === n",
                           arg=[total - 1])
    card(page, "dog").locator("button.rename").click()
    page.locator(".rename-input").fill("puppy")
    page.keyboard.press("Enter")
    card(page, "puppy").wait_for()
    assert card(page, "dog").count() == 0
    shots(page, "renamed")
    delete = card(page, "puppy").locator("button.delete-class")
    delete.click()
    assert "again" in delete.inner_text()
    assert card(page, "puppy").count() == 1  # the first press only asks
    delete.click()
    card(page, "puppy").wait_for(state="detached")
    page.wait_for_function("before => document.querySelector('#estimate').innerText !== before", arg=before)

    # The live preview: the camera's cat is recognised, frame after frame.
    page.click("#camera-toggle")
    page.wait_for_function("() => { const a = document.querySelector('#preview-answer .answer');"
                           " return a && a.textContent.startsWith('cat'); }")
    start = time.monotonic()
    page.wait_for_timeout(5000)
    fps = float(page.locator("#preview-fps").get_attribute("data-fps"))
    print(f"live preview: {fps:.2f} frames/s (browser-measured over its last 10 frames; "
          f"{time.monotonic() - start:.1f} s watched; shared 2-core machine)")
    assert fps > 0 and "frames/s" in page.locator("#preview-fps").inner_text()
    assert page.locator("#preview-answer .prediction").count() == 2  # a bar per class
    shots(page, "live-preview-camera")
    # A still of what the camera shows (Chromium's colours), to drop as a photo below.
    still = tmp_path / "camera-still.png"
    still.write_bytes(base64.b64decode(page.evaluate(
        """() => { const v = document.querySelector('#preview-video'), c = document.createElement('canvas');
                   c.width = v.videoWidth; c.height = v.videoHeight; c.getContext('2d').drawImage(v, 0, 0);
                   return c.toDataURL('image/png').split(',')[1]; }""")))
    page.click("#camera-toggle")

    # With the camera off, the last photo is predicted, and follows changes.
    page.set_input_files("#file-input", str(still))
    page.locator(".result.done").first.wait_for()
    page.wait_for_function("() => { const a = document.querySelector('#preview-answer .answer');"
                           " return a && a.textContent === 'cat'; }")
    assert page.locator("#preview-photo").is_visible()
    # A photo of neither class is said to be "unknown" or "not sure", never just a class.
    page.set_input_files("#file-input", str(photos_dir / "parrot.jpg"))
    page.wait_for_function("() => { const a = document.querySelector('#preview-answer .answer');"
                           " return a && (a.classList.contains('unknown') || a.classList.contains('unsure')); }")
    answer = page.locator("#preview-answer .answer").inner_text()
    assert answer.startswith("? unknown") or answer.startswith("unknown") or answer.endswith("not sure"), answer
    shots(page, "last-photo-unknown")

    # Keep it: downloads of each format, then "keep on server".
    saved = {}
    for form in ("imagerec", "onnx", "tflite"):
        with page.expect_download() as download:
            page.click(f"#teach-downloads button[data-format='{form}']")
        saved[form] = tmp_path / download.value.suggested_filename
        download.value.save_as(saved[form])
    assert saved["imagerec"].name == "taught.imagerec" and saved["onnx"].stat().st_size > 1_000_000
    assert saved["tflite"].read_bytes()[4:8] == b"TFL3"
    import imagerec

    assert imagerec.load(saved["imagerec"]).labels == ["cat", "hot dog"]
    page.click("#keep-button")
    page.wait_for_function("() => document.querySelector('#keep-status').textContent.startsWith('Kept')")
    assert page.locator("#keep-button").inner_text() == "Kept on this server ✓"
    assert list(kept_dir.iterdir()), "keeping wrote nothing into --taught-dir"
    shots(page, "kept")

    # A new model starts empty; the downloaded file opens again with its classes.
    page.click("#new-model")
    page.wait_for_function("() => document.querySelector('#teach-status').textContent.startsWith('New model taught-2')")
    assert page.locator(".class-card[data-label]").count() == 0
    page.set_input_files("#open-file", str(saved["imagerec"]))
    card(page, "hot dog").wait_for()
    assert page.locator("#teach-model").input_value() == "taught-2"  # opened into the new model
    assert page.locator(".class-card[data-label]").count() == 2 and page.locator("#model").input_value() == "taught-2"
    shots(page, "opened-file")
    # A file that is no model gets a one-line error, and what is open stays.
    page.set_input_files("#open-file", {"name": "notes.imagerec", "mimeType": "application/octet-stream",
                                        "buffer": b"not a model at all"})
    page.wait_for_function("() => document.querySelector('#teach-status').textContent.startsWith('Could not open notes')")
    assert page.locator("#teach-status.error").count() == 1
    assert page.locator(".class-card[data-label]").count() == 2
    print("bad file:", page.locator("#teach-status").inner_text())
    opened = page.locator("#teach-model").input_value()
    page.locator("#delete-model").click()
    page.locator("#delete-model").click()
    page.wait_for_function("() => !document.querySelector('.class-card[data-label]')")
    assert page.locator(f"#model option[value='{opened}']").count() == 0

    assert not outside, f"the page asked other hosts: {outside}"
    assert not problems, problems
    page.context.close()


def test_results_explain_and_describe_on_a_laptop(server, browser, photos_dir: Path, shots):
    outside: list[str] = []
    problems: list[str] = []
    page = open_page(browser, server, LAPTOP, outside, problems)
    page.select_option("#model", "mobilenet_v2")
    drop_files(page, "#drop", [photos_dir / "cat_720p.jpg", photos_dir / "hot_dog.jpg"])
    page.wait_for_function("() => document.querySelectorAll('.result.done').length === 2")
    result = page.locator(".result.done", has=page.locator(".name", has_text="hot_dog.jpg"))
    assert result.locator(".prediction .label").first.inner_text() == "hotdog"
    # "Why?" opens the heat map of what drove the answer; pressing it again hides it.
    why = result.locator("button.why-toggle")
    why.click()
    assert why.get_attribute("aria-expanded") == "true"
    overlay = result.locator(".why img.overlay")
    overlay.wait_for()
    assert overlay.evaluate("img => img.complete && img.naturalWidth > 0")
    assert "hotdog" in result.locator(".why figcaption").inner_text()
    # The description line: what the photo shows, in words.
    result.locator(".description").wait_for()
    assert "hot" in result.locator(".description").inner_text().lower()
    shots(page, "laptop-why-and-description")
    why.click()
    assert not result.locator(".why").is_visible()
    shots(page, "laptop-why-closed")
    # A taught model explains its answers too (the model taught by the test above, when it ran).
    if page.locator("#model option[value='taught']").count():
        page.select_option("#model", "taught")  # a learned model: the teaching panel opens it
        card(page, "cat").wait_for()
        assert page.locator("#teach-model").input_value() == "taught"
        page.click("#clear-results")
        page.set_input_files("#file-input", str(photos_dir / "few-shot" / "hotdog_train_0.bmp"))
        page.locator(".result.done button.why-toggle").click()
        page.locator(".result .why img.overlay").wait_for()
        assert "hot dog" in page.locator(".result .why figcaption").inner_text()
        shots(page, "laptop-taught-model-why")
        # On a laptop too: a card's camera view beside the live preview of the same camera.
        card(page, "cat").locator("button.webcam").click()
        page.wait_for_function("() => { const a = document.querySelector('#preview-answer .answer');"
                               " return a && a.textContent === 'cat'; }")
        shots(page, "laptop-camera-and-preview")
        page.click("#camera-toggle")  # off everywhere, the card's view closes too
        card(page, "cat").locator(".camera-panel").wait_for(state="hidden")
    assert not outside, f"the page asked other hosts: {outside}"
    assert not problems, problems
    page.context.close()


def test_every_control_has_a_name_and_readable_contrast(server, browser, shots):
    outside: list[str] = []
    problems: list[str] = []
    page = open_page(browser, server, PHONE, outside, problems)
    page.fill("#teach-label", "mug")
    page.click("#teach-button")
    card(page, "mug").wait_for()
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('button, input, select, video')]
            .filter((e) => e.offsetParent !== null || e.classList.contains('visually-hidden'))
            .filter((e) => !(e.getAttribute('aria-label') || e.labels?.length || e.textContent.trim() || e.title))
            .map((e) => e.outerHTML.slice(0, 80))"""
    )
    assert not unnamed, unnamed
    low = page.evaluate(
        """() => {
            const rgb = (s) => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
            const lum = ([r, g, b]) => { const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
                                         return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
            const background = (e) => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor;
                                         if (!c.endsWith(', 0)') && c !== 'transparent') return c; } return 'rgb(255,255,255)'; };
            const bad = [];
            for (const e of document.querySelectorAll('button, label, p, span, h1, h2, h3, a, .count')) {
                if (e.offsetParent === null || !e.textContent.trim()) continue;
                const a = lum(rgb(getComputedStyle(e).color)), b = lum(rgb(background(e)));
                const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
                if (ratio < 4.5) bad.push(`${e.tagName}.${e.className} ${ratio.toFixed(2)}: ${e.textContent.trim().slice(0, 30)}`);
            }
            return bad;
        }"""
    )
    assert not low, low
    # Keyboard: Tab reaches the add-photos chooser of a class card, and focus is drawn.
    page.locator("#new-model").focus()
    reached = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.id || document.activeElement.className"))
    assert any(str(name).startswith("add-photos-") for name in reached), reached
    # The focus is drawn: on the styled chooser's label, and on a plain button.
    page.locator(".class-card[data-label='mug'] input[type=file]").focus()
    ring = "(e) => getComputedStyle(e).outlineStyle + ' ' + getComputedStyle(e).outlineWidth"
    assert page.locator(".class-card[data-label='mug'] label.file-button").evaluate(ring) == "solid 3px"
    shots(page, "keyboard-focus-on-add-photos")
    page.keyboard.press("Tab")
    assert page.evaluate(f"({ring})(document.activeElement)") == "solid 3px"
    assert not outside and not problems, (outside, problems)
    page.context.close()
