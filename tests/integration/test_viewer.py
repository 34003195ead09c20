"""The detail page's image viewer (#29 item 2) in a real Chromium against a real admin
server and PostgreSQL: fit to the screen, 1:1, zoom by wheel, keys and pinch, pan by
drag and arrows, the inspected image and its nearest reference locked together,
contrast and brightness, and an admin's box drawn while zoomed.

Rows are written as a worker writes them (test_browser_frames.add_frame for a frame
with findings and a heat map, add_inspections for an image with a nearest reference),
so no worker runs. Screenshots go to the ``screenshots`` folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from admin.auth import create_user
from core.blobs import BlobStore
from core.db import session_scope
from tests.conftest import png_bytes, seed_references
from tests.integration.browser import admin_server, log_in
from tests.integration.conftest import add_inspections, logged_in
from tests.integration.test_browser_frames import (
    FrameInspection,
    add_frame,
    assert_box_on,
    fill_box,
    steel_frame,
    wait_for_images,
)

WIDE = {"width": 1920, "height": 1080}
TABLET = {"width": 1024, "height": 768}
PHONE = {"width": 390, "height": 844}
#: the image of the pair: not the size of its nearest reference (a 200x200 sample)
PAIR_SIZE = (600, 300)


@dataclass
class Site:
    url: str
    frame: FrameInspection  # 4000x1000, two findings, a heat map, no nearest reference
    pair: int  # a 600x300 image whose nearest reference is reference 1


@pytest.fixture
def site(settings, tmp_path) -> Iterator[Site]:
    seed_references(settings)
    with session_scope(settings.database_url) as session:
        create_user(session, "ada", "admin-password", "admin")
        create_user(session, "sam", "supervisor-password", "supervisor")
    frame = add_frame(settings)
    key = BlobStore(settings.blob_dir).put(png_bytes(steel_frame(*PAIR_SIZE, [(250, 100, 60, 40)])))
    pair = add_inspections(
        settings, 1, image_key=key, image_width=PAIR_SIZE[0], image_height=PAIR_SIZE[1]
    )[-1]
    with admin_server(settings, tmp_path / "admin.log") as url:
        yield Site(url, frame, pair)


@pytest.fixture
def page(page) -> Iterator[Any]:
    """The browser page, and no error thrown by viewer.js while the test drives it."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"{error.message}\n{error.stack}"))
    yield page
    assert not [e for e in errors if "viewer.js" in e]


def bounds(page, selector: str) -> dict[str, float]:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    return box


def changed(page, selector: str, before: dict[str, float]) -> dict[str, float]:
    """``selector``'s bounding box once it is no longer ``before``."""
    page.wait_for_function(
        """([s, b]) => {
             const r = document.querySelector(s).getBoundingClientRect();
             return Math.abs(r.x - b.x) > 0.5 || Math.abs(r.width - b.width) > 0.5;
           }""",
        arg=[selector, before],
    )
    return bounds(page, selector)


def open_detail(page, url: str, inspection_id: int, viewport: dict[str, int]) -> None:
    page.set_viewport_size(viewport)
    page.goto(f"{url}/inspections/{inspection_id}")
    wait_for_images(page, "img.viewer-image")
    # laid out by viewer.js (the stage is as high as the image at fit)
    page.wait_for_function(
        """() => { const f = document.querySelector('#viewer.viewer-live #frame');
                   return f && f.style.width; }"""
    )


def centre_of(box: dict[str, float], u: float = 0.5, v: float = 0.5) -> tuple[float, float]:
    return box["x"] + u * box["width"], box["y"] + v * box["height"]


def stage_centre_in(page, stage: str, image: str) -> tuple[float, float]:
    """The point of ``image`` at the centre of ``stage``, in fractions of the image."""
    s, i = bounds(page, stage), bounds(page, image)
    x, y = centre_of(s)
    return (x - i["x"]) / i["width"], (y - i["y"]) / i["height"]


def content_width(page) -> float:
    return page.evaluate(
        """() => {
             const m = document.querySelector('main'), s = getComputedStyle(m);
             return m.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
           }"""
    )


def test_the_image_and_its_reference_zoom_and_pan_together(site, page, screenshots):
    log_in(page, site.url, "sam", "supervisor-password")
    open_detail(page, site.url, site.pair, WIDE)
    image, reference = bounds(page, "#frame-image"), bounds(page, "#reference-image")
    assert image["width"] / image["height"] == pytest.approx(2.0, rel=0.01)
    assert reference["width"] == pytest.approx(reference["height"], abs=1)
    assert page.is_checked("#view-lock")
    page.screenshot(path=str(screenshots / "viewer-detail-1920.png"))
    # the review actions stand beside the images at 1920, within the screen
    confirm = bounds(page, "#confirm")
    assert confirm["x"] >= image["x"] + image["width"]
    assert confirm["y"] + confirm["height"] <= WIDE["height"]

    # the wheel zooms around the pointer: both images grow by the same factor and
    # show the same region, in fractions of each (their sizes differ)
    page.mouse.move(*centre_of(image, 0.3, 0.4))
    page.mouse.wheel(0, -400)
    zoomed = changed(page, "#frame-image", image)
    grown = zoomed["width"] / image["width"]
    assert grown > 1.5
    ref_zoomed = changed(page, "#reference-image", reference)
    assert ref_zoomed["width"] / reference["width"] == pytest.approx(grown, rel=0.02)
    assert centre_of(zoomed, 0.3, 0.4) == pytest.approx(centre_of(image, 0.3, 0.4), abs=1.5)
    main_centre = stage_centre_in(page, "#stage", "#frame-image")
    assert stage_centre_in(page, "#reference-stage", "#reference-image") == pytest.approx(
        main_centre, abs=0.01
    )

    # a drag pans both
    start = centre_of(bounds(page, "#stage"))
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + 60, start[1] + 30, steps=5)
    page.mouse.up()
    panned = bounds(page, "#frame-image")
    assert (panned["x"] - zoomed["x"], panned["y"] - zoomed["y"]) == pytest.approx((60, 30), abs=1)
    assert stage_centre_in(page, "#reference-stage", "#reference-image") == pytest.approx(
        stage_centre_in(page, "#stage", "#frame-image"), abs=0.01
    )

    # contrast and brightness filter both images; Reset takes them off
    page.locator("#contrast").fill("200")
    page.locator("#brightness").fill("150")
    for selector in ("#frame-image", "#reference-image"):
        shown = page.locator(selector).evaluate("i => getComputedStyle(i).filter")
        assert shown == "contrast(2) brightness(1.5)"
    page.click("#adjust-reset")
    assert page.locator("#frame-image").evaluate("i => getComputedStyle(i).filter") == "none"

    # keys typed into a field are the field's
    before = bounds(page, "#frame-image")
    page.fill("#comment", "")
    page.type("#comment", "+0-1")
    assert bounds(page, "#frame-image") == before
    assert page.input_value("#comment") == "+0-1"
    page.locator("#comment").blur()

    # 0 fits both again; unlocked, + zooms the inspected image only
    page.keyboard.press("0")
    fitted = changed(page, "#frame-image", before)
    assert fitted == pytest.approx(image, abs=0.5)
    assert bounds(page, "#reference-image") == pytest.approx(reference, abs=0.5)
    page.uncheck("#view-lock")
    page.keyboard.press("+")
    assert changed(page, "#frame-image", fitted)["width"] > fitted["width"] * 1.2
    assert bounds(page, "#reference-image") == pytest.approx(reference, abs=0.5)

    # on a tablet held sideways the review actions are on the first screen too
    open_detail(page, site.url, site.pair, TABLET)
    confirm = bounds(page, "#confirm")
    assert confirm["y"] + confirm["height"] <= TABLET["height"]
    page.screenshot(path=str(screenshots / "viewer-detail-1024.png"))


def test_a_strip_frame_is_shown_wide_and_zooms_with_its_boxes(site, page, screenshots):
    frame = site.frame
    size = (frame.width, frame.height)
    log_in(page, site.url, "sam", "supervisor-password")
    open_detail(page, site.url, frame.id, WIDE)
    shown = bounds(page, "#frame-image")
    assert shown["width"] / shown["height"] == pytest.approx(4.0, rel=0.01)
    assert shown["width"] >= 0.8 * content_width(page)
    for rank, box in enumerate(frame.boxes):
        assert_box_on(
            shown, size, box, fill_box(page.locator(f"g.finding-box[data-rank='{rank}'] rect"))
        )
    page.check("#heatmap-toggle")
    wait_for_images(page, "#heatmap")
    page.screenshot(path=str(screenshots / "viewer-frame-1920.png"))

    # the wheel zooms the frame, its boxes and its heat map together
    page.mouse.move(*centre_of(shown, 0.2, 0.3))
    page.mouse.wheel(0, -600)
    zoomed = changed(page, "#frame-image", shown)
    assert zoomed["width"] > 1.5 * shown["width"]
    for rank, box in enumerate(frame.boxes):
        assert_box_on(
            zoomed, size, box, fill_box(page.locator(f"g.finding-box[data-rank='{rank}'] rect"))
        )
    assert bounds(page, "#heatmap") == pytest.approx(zoomed, abs=0.5)
    page.uncheck("#heatmap-toggle")

    # 1 shows the frame at its natural size, one image pixel per screen pixel
    page.keyboard.press("1")
    full = changed(page, "#frame-image", zoomed)
    natural = page.locator("#frame-image").evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert [full["width"], full["height"]] == pytest.approx(natural, abs=0.5)
    assert natural == [frame.width, frame.height]

    # pan by drag and by the arrow keys
    start = centre_of(bounds(page, "#stage"))
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + 200, start[1] - 40, steps=5)
    page.mouse.up()
    dragged = bounds(page, "#frame-image")
    assert (dragged["x"] - full["x"], dragged["y"] - full["y"]) == pytest.approx((200, -40), abs=1)
    page.keyboard.press("ArrowRight")
    assert changed(page, "#frame-image", dragged)["x"] < dragged["x"] - 10

    # + and - zoom around the stage's centre, 0 fits again
    page.keyboard.press("0")
    assert changed(page, "#frame-image", dragged) == pytest.approx(shown, abs=0.5)
    page.keyboard.press("+")
    closer = changed(page, "#frame-image", shown)
    assert closer["width"] == pytest.approx(1.25 * shown["width"], abs=1)
    assert centre_of(closer) == pytest.approx(centre_of(shown), abs=1)
    page.keyboard.press("-")
    assert changed(page, "#frame-image", closer) == pytest.approx(shown, abs=0.5)

    # a finding's "Show in the frame" zooms to it: larger, and all of it in sight
    at_fit = fill_box(page.locator("g.finding-box[data-rank='1'] rect"))
    page.locator("li.finding[data-rank='1'] button.show-finding").click()
    changed(page, "#frame-image", shown)
    rect = fill_box(page.locator("g.finding-box[data-rank='1'] rect"))
    stage = bounds(page, "#stage")
    assert rect["height"] == pytest.approx(stage["height"] / 2, abs=1)
    assert rect["height"] > 1.5 * at_fit["height"]
    assert stage["x"] <= rect["x"] and rect["x"] + rect["width"] <= stage["x"] + stage["width"]
    assert stage["y"] <= rect["y"] and rect["y"] + rect["height"] <= stage["y"] + stage["height"]

    # on a phone the frame still fits the width, wider than tall
    open_detail(page, site.url, frame.id, PHONE)
    phone = bounds(page, "#frame-image")
    viewer = bounds(page, "#viewer")
    assert phone["width"] > 3 * phone["height"]
    assert viewer["x"] >= 0 and viewer["x"] + viewer["width"] <= PHONE["width"]
    assert phone["width"] >= 0.9 * content_width(page)
    page.screenshot(path=str(screenshots / "viewer-frame-390.png"), full_page=True)
    open_detail(page, site.url, site.pair, PHONE)
    image, reference = bounds(page, "#frame-image"), bounds(page, "#reference-image")
    assert image["y"] == pytest.approx(reference["y"], abs=1)  # side by side
    assert reference["x"] + reference["width"] <= PHONE["width"]
    page.screenshot(path=str(screenshots / "viewer-detail-390.png"), full_page=True)


def test_an_admin_draws_a_box_while_zoomed(site, page, screenshots):
    frame = site.frame
    size = (frame.width, frame.height)
    log_in(page, site.url, "ada", "admin-password")
    open_detail(page, site.url, frame.id, WIDE)
    shown = bounds(page, "#frame-image")
    page.keyboard.press("+")
    page.keyboard.press("+")
    zoomed = changed(page, "#frame-image", shown)
    assert zoomed["width"] > 1.5 * shown["width"]

    # by default a drag pans; b (or the button) makes it draw
    assert page.get_attribute("#draw-toggle", "aria-pressed") == "false"
    page.keyboard.press("b")
    assert page.get_attribute("#draw-toggle", "aria-pressed") == "true"
    scale = zoomed["width"] / frame.width
    start = (zoomed["x"] + 1800 * scale, zoomed["y"] + 400 * scale)
    end = (zoomed["x"] + 2200 * scale, zoomed["y"] + 640 * scale)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=8)
    page.mouse.up()
    drawn = [int(page.input_value(f"#box-{name}")) for name in ("x", "y", "width", "height")]
    assert drawn == pytest.approx([1800, 400, 400, 240], abs=1 / scale + 1)
    assert bounds(page, "#frame-image") == pytest.approx(zoomed, abs=0.5)  # it did not pan
    assert_box_on(zoomed, size, tuple(drawn), fill_box(page.locator("rect.drawn")))
    page.screenshot(path=str(screenshots / "viewer-draw.png"))

    # the drawn box zooms with the frame
    page.locator("#box-label").blur()
    page.keyboard.press("+")
    closer = changed(page, "#frame-image", zoomed)
    assert_box_on(closer, size, tuple(drawn), fill_box(page.locator("rect.drawn")))

    # the button turns drawing off: a drag pans again and leaves the box as it was
    page.click("#draw-toggle")
    assert page.get_attribute("#draw-toggle", "aria-pressed") == "false"
    start = centre_of(bounds(page, "#stage"))
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] - 100, start[1], steps=4)
    page.mouse.up()
    assert bounds(page, "#frame-image")["x"] == pytest.approx(closer["x"] - 100, abs=1)
    kept = [int(page.input_value(f"#box-{name}")) for name in ("x", "y", "width", "height")]
    assert kept == drawn
    page.select_option("#box-label", "patches")
    page.click("#box-submit")
    page.wait_for_selector(".flash.info")
    assert re.search(r"is now reference", page.inner_text(".flash.info"))


def test_a_pinch_zooms_and_a_touch_drag_pans(site, page):
    """Two touches through the DevTools protocol, as a tablet's screen sends them."""
    log_in(page, site.url, "sam", "supervisor-password")
    open_detail(page, site.url, site.frame.id, TABLET)
    shown = bounds(page, "#frame-image")
    cdp: Any = page.context.new_cdp_session(page)
    x, y = centre_of(bounds(page, "#stage"))

    def touch(kind: str, points: list[tuple[float, float]]) -> None:
        cdp.send(
            "Input.dispatchTouchEvent",
            {
                "type": kind,
                "touchPoints": [{"x": px, "y": py, "id": i} for i, (px, py) in enumerate(points)],
            },
        )

    touch("touchStart", [(x - 40, y), (x + 40, y)])
    for step in range(1, 6):
        touch("touchMove", [(x - 40 - 16 * step, y), (x + 40 + 16 * step, y)])
    touch("touchEnd", [])
    pinched = changed(page, "#frame-image", shown)
    assert pinched["width"] / shown["width"] == pytest.approx(240 / 80, rel=0.05)
    # the point between the fingers stayed where it was
    assert (x - pinched["x"]) / pinched["width"] == pytest.approx(
        (x - shown["x"]) / shown["width"], abs=0.01
    )

    touch("touchStart", [(x, y)])
    for step in range(1, 6):
        touch("touchMove", [(x + 10 * step, y)])
    touch("touchEnd", [])
    moved = changed(page, "#frame-image", pinched)
    assert moved["x"] - pinched["x"] == pytest.approx(50, abs=1)


def test_rows_without_a_size_or_a_shown_image_get_what_applies(app, settings):
    """An older row without its size gets the viewer without box drawing (the size is
    read from the loaded image, as for every reference); a rejected one gets captions
    only."""
    (sizeless,) = add_inspections(settings, 1)[-1:]
    (rejected,) = add_inspections(
        settings, 1, status="rejected", nearest_reference_id=None, distances=None
    )[-1:]
    client = logged_in(app, "ada", "admin-password")
    html = client.get(f"/inspections/{sizeless}").get_data(as_text=True)
    assert 'id="frame-image"' in html and "data-width" not in html
    assert 'id="reference-image"' in html and 'id="view-lock"' in html
    assert 'id="box-form"' not in html and 'id="draw-toggle"' not in html
    html = client.get(f"/inspections/{rejected}").get_data(as_text=True)
    assert 'id="viewer"' in html
    assert 'id="stage"' not in html and 'id="zoom-in"' not in html
