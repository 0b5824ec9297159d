"""The web page in a real browser: Debian's chromium driven by Playwright."""

import base64
import io
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image, ImageDraw

from service.settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTLINE = (0, 229, 255)  # the page's colour for a hard-attention model's cell (heatmap.js)
# The README picture: GLIMPSE_SCREENSHOT=benchmarks/results/web.png serves the bundled models
SCREENSHOT = os.environ.get("GLIMPSE_SCREENSHOT")


def canvas_pixels(page) -> np.ndarray:
    """What the canvas shows now, (H, W, 3), sent over as a lossless PNG."""
    url = page.evaluate('() => document.getElementById("view").toDataURL("image/png")')
    png = base64.b64decode(url.removeprefix("data:image/png;base64,"))
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def shapes_picture(path: Path) -> None:
    """A picture like the shapes world: a red square and a blue circle on grey."""
    image = Image.new("RGB", (240, 180), (235, 235, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((30, 40, 90, 100), fill=(210, 40, 40))
    draw.ellipse((140, 70, 210, 140), fill=(40, 70, 200))
    image.save(path)


def open_page(browser: "Browser", url: str) -> tuple["Page", list[str]]:
    """A new page of the service at `url`, and the list its script errors are gathered in."""
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url + "/")
    return page, errors


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        message = "chromium is not installed (`make browser` installs it)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page_server(request):
    """The shared server of tiny models, or the bundled models for the README picture."""
    return request.getfixturevalue("bundled_server" if SCREENSHOT else "server")


def test_hovering_a_word_draws_its_attention_and_a_question_gets_answered(
    browser, page_server, tmp_path
) -> None:
    server = page_server
    picture = tmp_path / "shapes.png"
    shapes_picture(picture)
    page, errors = open_page(browser, server.url)

    page.set_input_files("#file", str(picture))
    words = page.locator("#caption .word")
    words.first.wait_for()
    plain = canvas_pixels(page)
    assert plain.shape == (384, 512, 3)  # enlarged to 512 px, aspect ratio kept

    words.nth(1).hover()
    second = canvas_pixels(page)
    words.first.hover()
    first = canvas_pixels(page)
    page.mouse.move(5, 5)  # leaving the words shows the plain image again
    restored = canvas_pixels(page)

    changed = np.abs(first.astype(int) - plain.astype(int))
    assert changed.mean() > 10  # the overlay covers the image, not a few pixels
    assert not np.array_equal(first, second)  # each word has its own map
    assert np.array_equal(restored, plain)

    page.fill("#question", "what color is the square?")
    page.click("#ask-button")
    page.locator("#answer .answer").wait_for()
    assert page.locator("#answer .topk li").count() == 5
    assert page.locator("#answer .glimpse").count() == 2  # both VQA models have 2 glimpses
    assert not np.array_equal(canvas_pixels(page), plain)  # the first glimpse is shown
    words.first.hover()
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)
    assert errors == []
    page.close()


def test_a_photo_gets_a_notice_and_unknown_words_are_marked(
    browser, bundled_server, tmp_path
) -> None:
    from skimage import data

    from training.data.shapes import generate

    photo = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(photo, quality=90)
    generate(tmp_path / "world", {"test": 1}, seed=31, workers=1, progress=False)
    [scene] = sorted((tmp_path / "world").rglob("*.png"))
    page, errors = open_page(browser, bundled_server.url)

    page.set_input_files("#file", str(photo))
    page.locator("#caption .word").first.wait_for()
    notice = page.locator("#domain-notice")
    assert notice.is_visible()
    assert "outside what the model knows" in notice.inner_text()
    assert "shapes world" in notice.inner_text() and "guess" in notice.inner_text()

    page.fill("#question", "what is in the cup?")
    page.click("#ask-button")
    page.locator("#answer .answer").wait_for()
    assert page.locator("#answer .notice").is_visible()
    assert page.locator("#answer mark.unknown").all_inner_texts() == ["in", "cup?"]

    page.evaluate('() => document.getElementById("caption").replaceChildren()')
    page.set_input_files("#file", str(scene))
    page.locator("#caption .word").first.wait_for()
    assert not notice.is_visible()
    page.fill("#question", "what color is the circle?")
    page.click("#ask-button")
    page.locator("#answer .answer").wait_for()
    assert page.locator("#answer mark.unknown").count() == 0
    assert not page.locator("#answer .notice").is_visible()
    assert errors == []
    page.close()


# The README picture of labels: GLIMPSE_LABELS_SCREENSHOT=benchmarks/results/labels_page.png
LABELS_SCREENSHOT = os.environ.get("GLIMPSE_LABELS_SCREENSHOT")


def test_a_photo_shows_what_the_encoder_recognises_each_label_with_its_map(
    browser, bundled_server, tmp_path
) -> None:
    from skimage import data

    photo = tmp_path / "cat.jpg"
    Image.fromarray(data.chelsea()).save(photo, quality=90)
    page, errors = open_page(browser, bundled_server.url)

    page.set_input_files("#file", str(photo))
    labels = page.locator("#domain-notice .label")
    labels.first.wait_for()
    assert "What the encoder recognises" in page.locator("#domain-notice").inner_text()
    assert labels.count() == Settings().labels_top_k
    assert "cat" in labels.first.inner_text()  # Egyptian cat, tiger cat or tabby
    page.mouse.move(5, 5)
    plain = canvas_pixels(page)
    labels.first.hover()
    first = canvas_pixels(page)
    labels.nth(1).hover()
    second = canvas_pixels(page)
    page.mouse.move(5, 5)
    assert np.abs(first.astype(int) - plain.astype(int)).mean() > 10  # an overlay, all over
    assert not np.array_equal(first, second)  # each label has its own map
    assert np.array_equal(canvas_pixels(page), plain)
    labels.first.click()  # pinned like a caption word
    assert labels.first.get_attribute("aria-pressed") == "true"
    assert np.array_equal(canvas_pixels(page), first)
    if LABELS_SCREENSHOT:
        page.screenshot(path=LABELS_SCREENSHOT, full_page=True)
    assert errors == []
    page.close()


def test_hovering_a_word_of_a_hard_model_outlines_the_one_cell_it_read(
    browser, hard_server, tmp_path
) -> None:
    picture = tmp_path / "shapes.png"
    shapes_picture(picture)
    with hard_server.client() as client:
        [rows, cols] = client.get("/v1/models").json()["models"][0]["grid"]
    page, errors = open_page(browser, hard_server.url)

    page.set_input_files("#file", str(picture))
    words = page.locator("#caption .word")
    words.first.wait_for()
    assert page.locator("#cell-legend").is_visible()
    plain = canvas_pixels(page)
    for i in range(min(3, words.count())):
        words.nth(i).hover()
        shown = canvas_pixels(page)
        row, col = (int(v) for v in words.nth(i).get_attribute("data-cell").split(","))
        height, width = shown.shape[:2]
        x0, x1 = (math.floor(c * width / cols + 0.5) for c in (col, col + 1))
        y0, y1 = (math.floor(r * height / rows + 0.5) for r in (row, row + 1))
        outline = np.all(shown == OUTLINE, axis=-1)  # (H, W)
        ys, xs = np.nonzero(outline)
        assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1  # that cell
        middle_x, middle_y = (x0 + x1) // 2, (y0 + y1) // 2
        assert outline[y0, middle_x] and outline[y1 - 1, middle_x]  # all four sides
        assert outline[middle_y, x0] and outline[middle_y, x1 - 1]
        assert not outline[middle_y, middle_x]  # an outline: the map shows through
        assert np.abs(shown.astype(int) - plain.astype(int)).mean() > 10  # over the overlay
    page.mouse.move(5, 5)
    assert np.array_equal(canvas_pixels(page), plain)
    assert errors == []
    page.close()
