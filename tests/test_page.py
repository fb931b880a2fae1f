"""The scrubber page in a real headless Chromium (Debian's, launched by path) driven by Playwright.

The page is judged by its pixels: every check screenshots the <img>, reads the
frame index painted into the picture, and compares it with the number the page
shows and with the frame at the position the pointer went to.
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, sync_playwright
from servehelp import serving

from scrubproxy.samples import read_index

RATE, PER_SEGMENT, SEGMENTS = 30, 20, 3
FRAMES = PER_SEGMENT * SEGMENTS
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def base_url(session_sources, tmp_path_factory):
    with serving(*session_sources, cache_dir=tmp_path_factory.mktemp("page-cache")) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def wait_idle(page: Page) -> None:
    page.wait_for_function("document.body.dataset.state === 'idle'", timeout=15000)


def shown(page: Page) -> dict:
    """What the page says (numbers and segment name) and what its picture shows (pixels)."""
    picture = np.asarray(Image.open(io.BytesIO(page.locator("#frame").screenshot())).convert("RGB"))
    return {
        "frame": int(page.inner_text("#frame-number")),
        "source_frame": int(page.inner_text("#source-frame")),
        "segment": page.inner_text("#segment-name"),
        "pixels": read_index(picture),
    }


def expect(page: Page, k: int, names: list[str]) -> None:
    seen = shown(page)
    assert seen == {"frame": k, "source_frame": k % PER_SEGMENT, "segment": names[k // PER_SEGMENT], "pixels": k % PER_SEGMENT}


def x_of(box: dict, k: int) -> float:
    """Where frame k's time span is centred on the timeline (x in CSS pixels)."""
    return box["x"] + box["width"] * (k + 0.5) / FRAMES


def test_drag_and_keys_show_the_exact_frame_and_say_which(browser, base_url, session_sources):
    names = [p.name for p in session_sources]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(base_url)
    wait_idle(page)
    expect(page, 0, names)
    assert page.locator(".segment").count() == SEGMENTS  # the boundaries are drawn
    box = page.locator("#timeline").bounding_box()
    y = box["y"] + box["height"] / 2

    page.mouse.move(x_of(box, 7), y)
    page.mouse.down()
    wait_idle(page)
    expect(page, 7, names)
    for k in (26, 45, 59, 13, 33):  # drag on, stopping here and there
        page.mouse.move(x_of(box, k), y, steps=6)
        wait_idle(page)
        expect(page, k, names)
    page.mouse.up()

    keys = [("ArrowRight", 34), ("ArrowRight", 35), ("ArrowLeft", 34), ("Shift+ArrowLeft", 4), ("Shift+ArrowRight", 34), ("PageDown", 59), ("PageUp", 0), ("End", 59), ("Home", 0)]
    for key, k in keys:
        page.keyboard.press(key)
        wait_idle(page)
        expect(page, k, names)
    for _ in range(5):  # pressed faster than frames arrive: every press counts
        page.keyboard.press("ArrowRight")
    wait_idle(page)
    expect(page, 5, names)


def test_a_fast_drag_fetches_only_the_newest_position(browser, base_url, session_sources):
    names = [p.name for p in session_sources]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(base_url)
    wait_idle(page)
    box = page.locator("#timeline").bounding_box()
    y = box["y"] + box["height"] / 2
    page.evaluate("document.getElementById('timeline').addEventListener('pointerdown', e => { window.pointer = e.pointerId; })")
    page.mouse.move(x_of(box, 2), y)
    page.mouse.down()
    wait_idle(page)
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "/frames/" in r.url else None)
    xs = [x_of(box, k) for k in range(3, 58)]  # 55 moves within one task: faster than any round trip
    page.evaluate(
        """([xs, y]) => { const el = document.getElementById('timeline');
             for (const x of xs) el.dispatchEvent(new PointerEvent('pointermove', {pointerId: window.pointer, clientX: x, clientY: y, bubbles: true})); }""",
        [xs, y],
    )
    wait_idle(page)
    during = list(fetched)  # once the pointer is up, frames around the playhead are fetched ahead
    page.mouse.up()
    expect(page, 57, names)
    # At most the first move not already kept (in flight at once) and the newest; the stale ones never left.
    assert 1 <= len(during) <= 2 and "/frames/57.jpg" in during[-1], during


def test_copied_link_and_original_button_point_at_the_current_frame(browser, base_url, session_sources):
    names = [p.name for p in session_sources]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url.rstrip("/"))
    page = context.new_page()
    page.goto(base_url + "#f=41")
    wait_idle(page)
    expect(page, 41, names)
    page.keyboard.press("ArrowRight")
    wait_idle(page)
    page.click("#copy-link")
    page.wait_for_function("document.getElementById('copy-link').dataset.link")
    link = page.evaluate("navigator.clipboard.readText()")
    assert link == page.get_attribute("#copy-link", "data-link") and link.endswith("#f=42")

    other = context.new_page()
    other.goto(link)
    wait_idle(other)
    expect(other, 42, names)

    original = page.get_attribute("#original", "href")
    res = page.request.get(base_url.rstrip("/") + original)
    assert res.status == 200 and res.headers["content-type"] == "image/png"
    rgb = np.asarray(Image.open(io.BytesIO(res.body())).convert("RGB"))
    assert rgb.shape == (240, 320, 3) and read_index(rgb) == 42 % PER_SEGMENT
    context.close()


def test_phone_touch_drag_scrubs_and_the_page_fits_the_screen(browser, base_url, session_sources):
    names = [p.name for p in session_sources]
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.goto(base_url)
    wait_idle(page)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    for selector in ("#frame", "#timeline", "#copy-link", "#original"):
        b = page.locator(selector).bounding_box()
        assert b["x"] >= 0 and b["x"] + b["width"] <= 390 and b["y"] + b["height"] <= 844, selector
    box = page.locator("#timeline").bounding_box()
    y = box["y"] + box["height"] / 2
    touch = context.new_cdp_session(page)

    def finger(kind: str, x: float | None = None) -> None:
        points = [] if x is None else [{"x": x, "y": y}]
        touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    finger("touchStart", x_of(box, 10))
    wait_idle(page)
    expect(page, 10, names)
    for k in (15, 22, 31, 48):
        finger("touchMove", x_of(box, k))
        wait_idle(page)
        expect(page, k, names)
    finger("touchEnd")
    page.tap("button[data-step='+1']")
    wait_idle(page)
    expect(page, 49, names)
    context.close()


def test_a_token_in_the_link_opens_the_page_and_leaves_the_address_bar(browser, session_sources, tmp_path):
    names = [p.name for p in session_sources]
    token = "page-token-123"
    with serving(*session_sources, "--token", token, cache_dir=tmp_path / "cache") as base:
        page = browser.new_page()
        assert page.goto(base).status == 401  # nothing without it
        page.goto(f"{base}?token={token}#f=23")
        wait_idle(page)
        expect(page, 23, names)  # the frames came with the cookie the first answer set
        assert "token" not in page.url
        page.keyboard.press("End")
        wait_idle(page)
        expect(page, FRAMES - 1, names)
        page.close()
