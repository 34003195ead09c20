"""The supervisors' site for frames and findings (#28): in a real Chromium against a
real admin server and PostgreSQL, and through Flask's test client for the crop
route, the checks on a drawn box, the queue's one query for findings and the CSV.

The frame inspections are written straight into the database and the image store
as a worker writes them (a frame, its heat map, its findings), so no worker runs.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sqlalchemy import Engine, event, func, select

from admin.auth import create_user
from core.blobs import BlobStore
from core.db import session_scope
from core.tables import Finding, Reference
from tests.conftest import (
    csrf_token,
    png_bytes,
    seed_references,
)
from tests.integration.browser import admin_server, log_in
from tests.integration.conftest import add_inspections, logged_in

Box = tuple[int, int, int, int]


@dataclass
class FrameInspection:
    id: int
    width: int
    height: int
    boxes: list[Box]  # the findings' boxes, rank order
    finding_ids: list[int]
    image_key: str


def steel_frame(width: int, height: int, defects: list[Box], seed: int = 0) -> Image.Image:
    """A gray rolled-steel surface (streaks along the strip, a little noise) with a dark
    mark in each of ``defects``."""
    rng = np.random.default_rng(seed)
    rows = 128 + 20 * np.sin(np.arange(height) / 9.0)[:, None]
    surface = rows + rng.normal(0, 3, (height, width))
    image = Image.fromarray(np.clip(surface, 0, 255).astype(np.uint8), mode="L")
    draw = ImageDraw.Draw(image)
    for x, y, w, h in defects:
        draw.ellipse((x + w // 4, y + h // 4, x + 3 * w // 4, y + 3 * h // 4), fill=40)
    return image


def heat_map(width: int, height: int, defects: list[Box]) -> Image.Image:
    """An RGBA anomaly map at the feature grid's size (1/8 of the frame's), hot on the
    defects, as model.frames draws one."""
    rgba = np.zeros((height // 8, width // 8, 4), dtype=np.uint8)
    for x, y, w, h in defects:
        rgba[y // 8 : (y + h) // 8, x // 8 : (x + w) // 8] = (255, 60, 0, 200)
    return Image.fromarray(rgba, mode="RGBA")


def add_frame(
    settings,
    width: int = 4000,
    height: int = 1000,
    boxes: tuple[Box, ...] = ((600, 200, 240, 160), (2800, 550, 400, 300)),
    labels: tuple[str, ...] = ("scratches", "unknown"),
    camera: str = "line-9",
) -> FrameInspection:
    """A flagged frame inspection with a finding per box (rank order), as a worker
    writes one: the frame and its heat map in the store, the row, the findings."""
    store = BlobStore(settings.blob_dir)
    image_key = store.put(png_bytes(steel_frame(width, height, list(boxes))))
    anomaly_key = store.put(png_bytes(heat_map(width, height, list(boxes))))
    scores = [2.4 - rank * 1.1 for rank in range(len(boxes))]
    (inspection_id,) = add_inspections(
        settings,
        1,
        camera=camera,
        status="flagged",
        label=labels[0],
        dissimilarity=scores[0],
        threshold=1.0,
        nearest_reference_id=None,
        distances=None,
        image_key=image_key,
        image_width=width,
        image_height=height,
        anomaly_key=anomaly_key,
    )[-1:]
    with session_scope(settings.database_url) as session:
        references = dict(session.execute(select(Reference.label, Reference.id)).tuples().all())
        findings = [
            Finding(
                inspection_id=inspection_id,
                rank=rank,
                x=x,
                y=y,
                width=w,
                height=h,
                area=w * h // 2,
                score=scores[rank],
                label=labels[rank],
                reference_id=references.get(labels[rank]),
                distance=0.42 if labels[rank] in references else None,
            )
            for rank, (x, y, w, h) in enumerate(boxes)
        ]
        session.add_all(findings)
        session.flush()
        finding_ids = [f.id for f in findings]
    return FrameInspection(inspection_id, width, height, list(boxes), finding_ids, image_key)


def stored_size(settings, reference: Reference) -> tuple[int, int]:
    data = BlobStore(settings.blob_dir).get(reference.image_key)
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def references_noted(settings, note: str) -> list[Reference]:
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(Reference).where(Reference.note == note)).all()
        session.expunge_all()
        return list(rows)


# -- in Chromium -----------------------------------------------------------------------


@pytest.fixture
def frame_site(settings, tmp_path) -> Iterator[tuple[str, FrameInspection]]:
    """The admin server (``flask run``, as test_browser.py starts it) over a library
    of references, an admin, a supervisor and one frame inspection with two findings."""
    seed_references(settings)
    with session_scope(settings.database_url) as session:
        create_user(session, "ada", "admin-password", "admin")
        create_user(session, "sam", "supervisor-password", "supervisor")
    frame = add_frame(settings)
    with admin_server(settings, tmp_path / "admin.log") as url:
        yield url, frame


def wait_for_images(page, selector: str) -> None:
    page.wait_for_function(
        "s => [...document.querySelectorAll(s)].every(i => i.complete && i.naturalWidth > 0)",
        arg=selector,
    )


def fill_box(rect: Any) -> dict[str, float]:
    """Where an SVG rect lies on the page, without its stroke (a bounding box with
    the stroke is a stroke-width wider)."""
    return rect.evaluate(
        """r => { const b = r.getBBox(), s = r.ownerSVGElement.getBoundingClientRect();
                  return {x: s.x + b.x, y: s.y + b.y, width: b.width, height: b.height}; }"""
    )


def assert_box_on(shown: dict[str, float], frame: tuple[int, int], box: Box, got: Any) -> None:
    """``got`` (a bounding box on the page) is ``box`` (frame pixels) of a frame of
    size ``frame`` shown at ``shown``, within a pixel."""
    sx, sy = shown["width"] / frame[0], shown["height"] / frame[1]
    x, y, w, h = box
    assert got["x"] == pytest.approx(shown["x"] + x * sx, abs=1.0)
    assert got["y"] == pytest.approx(shown["y"] + y * sy, abs=1.0)
    assert got["width"] == pytest.approx(w * sx, abs=1.0)
    assert got["height"] == pytest.approx(h * sy, abs=1.0)


def test_an_admin_works_a_frame_in_the_browser(frame_site, page, settings, screenshots, tmp_path):
    url, frame = frame_site
    size = (frame.width, frame.height)
    log_in(page, url, "ada", "admin-password")
    page.goto(f"{url}/inspections/{frame.id}")
    wait_for_images(page, "#frame-image, img.crop")

    # the 4000x1000 frame at 4:1, each finding boxed where it is, labelled
    shown = page.locator("#frame-image").bounding_box()
    assert shown["width"] / shown["height"] == pytest.approx(4.0, rel=0.01)
    assert shown["width"] >= 800
    assert page.locator("g.finding-box").count() == 2
    for rank, box in enumerate(frame.boxes):
        finding_box = page.locator(f"g.finding-box[data-rank='{rank}']")
        assert_box_on(shown, size, box, fill_box(finding_box.locator("rect")))
    texts = page.locator("g.finding-box text").all_text_contents()
    assert texts == ["1 scratches 2.40", "2 unknown 1.30"]

    # the heat map: off at first, then stretched over the whole frame
    heat = page.locator("#heatmap")
    assert not heat.is_visible()
    page.check("#heatmap-toggle")
    assert heat.is_visible()
    wait_for_images(page, "#heatmap")
    assert heat.bounding_box() == pytest.approx(shown, abs=0.5)
    page.screenshot(path=str(screenshots / "frame-detail.png"), full_page=True)
    page.uncheck("#heatmap-toggle")
    assert not heat.is_visible()

    # each finding's crop (a square of at least 96 px) beside its nearest reference
    crops = page.locator("li.finding img.finding-crop")
    assert crops.count() == 2
    sizes = [c.evaluate("i => [i.naturalWidth, i.naturalHeight]") for c in crops.all()]
    assert sizes == [[240, 240], [400, 400]]
    first = page.locator("li.finding[data-rank='0']")
    assert first.locator(".finding-label").inner_text() == "scratches"
    assert first.locator("img.reference-image").count() == 1
    assert page.locator("li.finding[data-rank='1'] img.reference-image").count() == 0

    # a finding becomes a reference in one click, with its label
    first.locator("form.finding-reference button").click()
    page.wait_for_selector(".flash.info")
    assert "is now reference" in page.inner_text(".flash.info")
    (made,) = references_noted(settings, f"from finding 1 of inspection {frame.id}")
    assert (made.label, made.kind, made.added_by, made.active) == (
        "scratches",
        "defect",
        "ada",
        True,
    )
    assert stored_size(settings, made) == (240, 240)

    # the unknown one needs a label chosen first
    second = page.locator("li.finding[data-rank='1']")
    second.locator("select[name=label]").select_option("inclusion")
    second.locator("form.finding-reference button").click()
    page.wait_for_selector(".flash.info")
    (named,) = references_noted(settings, f"from finding 2 of inspection {frame.id}")
    assert (named.label, stored_size(settings, named)) == ("inclusion", (400, 400))

    # a box drawn with the mouse (in the viewer's draw mode: a drag pans otherwise)
    # becomes a reference of exactly that region
    wait_for_images(page, "#frame-image")
    page.click("#draw-toggle")
    page.locator("#frame-image").scroll_into_view_if_needed()
    shown = page.locator("#frame-image").bounding_box()
    scale = shown["width"] / frame.width
    start = (shown["x"] + 1000 * scale, shown["y"] + 300 * scale)
    end = (shown["x"] + 1800 * scale, shown["y"] + 700 * scale)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=8)
    page.mouse.up()
    drawn = [int(page.input_value(f"#box-{name}")) for name in ("x", "y", "width", "height")]
    assert drawn == pytest.approx([1000, 300, 800, 400], abs=1 / scale + 1)
    assert_box_on(shown, size, tuple(drawn), fill_box(page.locator("rect.drawn")))
    page.select_option("#box-label", "patches")
    page.select_option("#box-kind", "defect")
    page.screenshot(path=str(screenshots / "frame-draw.png"), full_page=True)
    page.click("#box-submit")
    page.wait_for_selector(".flash.info")
    x, y, w, h = drawn
    (boxed,) = references_noted(settings, f"box {x},{y},{w},{h} of inspection {frame.id}")
    assert (boxed.label, boxed.kind, boxed.added_by) == ("patches", "defect", "ada")
    assert stored_size(settings, boxed) == (w, h)

    # the queue's thumbnail shows the boxes too
    page.goto(f"{url}/inspections")
    row = page.locator(f"tr[data-inspection-id='{frame.id}']")
    wait_for_images(page, ".thumb-frame img")
    thumb = row.locator(".thumb-frame img").bounding_box()
    assert thumb["width"] / thumb["height"] == pytest.approx(4.0, rel=0.05)
    rects = row.locator(".thumb-frame rect")
    assert rects.count() == 2
    for rank, box in enumerate(frame.boxes):
        assert_box_on(thumb, size, box, fill_box(rects.nth(rank)))
    page.screenshot(path=str(screenshots / "frame-queue.png"))

    # Compare takes two frames of different shapes and shows each at its own
    wide, tall = tmp_path / "wide.png", tmp_path / "tall.png"
    steel_frame(2000, 500, [(900, 200, 80, 60)], seed=1).save(wide)
    steel_frame(600, 900, [], seed=2).save(tall)
    page.goto(f"{url}/compare")
    page.set_input_files("input[name=first]", str(wide))
    page.set_input_files("input[name=second]", str(tall))
    page.click("#detect")
    assert float(page.inner_text("#dissimilarity")) > 0
    wait_for_images(page, ".previews img")
    first_shown = page.locator(".previews img").nth(0).bounding_box()
    second_shown = page.locator(".previews img").nth(1).bounding_box()
    assert first_shown["width"] / first_shown["height"] == pytest.approx(4.0, rel=0.02)
    assert second_shown["width"] / second_shown["height"] == pytest.approx(600 / 900, rel=0.02)
    assert page.locator(".nearest-label").count() == 2
    page.screenshot(path=str(screenshots / "frame-compare.png"), full_page=True)


def test_a_supervisor_sees_findings_but_not_the_admins_forms(frame_site, page, settings):
    url, frame = frame_site
    log_in(page, url, "sam", "supervisor-password")
    page.goto(f"{url}/inspections/{frame.id}")
    assert page.locator("g.finding-box").count() == 2
    assert page.locator("li.finding").count() == 2
    assert page.locator("#box-form").count() == 0
    assert page.locator("form.finding-reference").count() == 0
    assert page.locator("#frame.drawable").count() == 0
    # posting them anyway, with a valid CSRF token, is refused
    token = page.locator("#review-form input[name=csrf_token]").input_value()
    refused = page.request.post(
        f"{url}/references/from-finding/{frame.finding_ids[0]}",
        form={"csrf_token": token, "label": "scratches"},
    )
    assert refused.status == 403
    box = {"x": "10", "y": "10", "width": "50", "height": "50", "label": "x", "kind": "defect"}
    refused = page.request.post(
        f"{url}/references/from-box/{frame.id}", form={"csrf_token": token, **box}
    )
    assert refused.status == 403
    with session_scope(settings.database_url) as session:
        assert (
            session.scalar(select(func.count(Reference.id)).where(Reference.note.is_not(None))) == 0
        )


# -- through Flask's test client -----------------------------------------------------------


def crop_size(client, key: str, query: str) -> tuple[int, int]:
    response = client.get(f"/images/{key}/crop?{query}")
    assert response.status_code == 200 and response.mimetype == "image/png", query
    with Image.open(io.BytesIO(response.data)) as image:
        return image.size


def test_the_crop_route_cuts_a_square_of_at_least_96_pixels(app, settings):
    frame = add_frame(settings, 800, 200, boxes=((10, 10, 20, 30),), labels=("scratches",))
    client = logged_in(app, "sam", "supervisor-password")
    key = frame.image_key
    assert crop_size(client, key, "x=10&y=10&w=20&h=30") == (96, 96)  # small: widened
    assert crop_size(client, key, "x=100&y=20&w=150&h=40") == (150, 150)  # wide: squared
    assert crop_size(client, key, "x=0&y=0&w=800&h=200") == (800, 200)  # within the frame
    # the square is moved inside the frame, so it holds the box's pixels
    full = Image.open(io.BytesIO(BlobStore(settings.blob_dir).get(key)))
    response = client.get(f"/images/{key}/crop?x=790&y=190&w=10&h=10")
    corner = Image.open(io.BytesIO(response.data))
    assert corner.size == (96, 96)
    assert corner.getpixel((95, 95)) == full.getpixel((799, 199))
    for query in (
        "x=10&y=10&w=20",  # no height
        "x=-1&y=10&w=20&h=20",
        "x=1.5&y=10&w=20&h=20",
        "x=790&y=10&w=20&h=20",  # past the right edge
        "x=0&y=0&w=0&h=10",
        "x=abc&y=0&w=10&h=10",
    ):
        response = client.get(f"/images/{key}/crop?{query}")
        assert response.status_code == 400, query
        assert "crop" in response.get_data(as_text=True) or "outside" in response.get_data(
            as_text=True
        )
    assert client.get(f"/images/{'0' * 64}/crop?x=0&y=0&w=8&h=8").status_code == 404
    # like every image, only for those logged in
    anonymous = app.test_client().get(f"/images/{key}/crop?x=0&y=0&w=8&h=8")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_a_drawn_box_is_checked_before_anything_is_added(app, settings):
    frame = add_frame(settings, 800, 200, boxes=((10, 10, 20, 30),), labels=("scratches",))
    client = logged_in(app, "ada", "admin-password")
    token = csrf_token(client, f"/inspections/{frame.id}")

    def post(**fields: str):
        form = {"x": "100", "y": "50", "width": "64", "height": "32", "label": "patches"}
        form.update(fields)
        return client.post(
            f"/references/from-box/{frame.id}",
            data={"csrf_token": token, "kind": "defect", **form},
            follow_redirects=True,
        )

    def count() -> int:
        with session_scope(settings.database_url) as session:
            return session.scalar(select(func.count(Reference.id))) or 0

    before = count()
    for fields, message in (
        ({"x": "1.5"}, "the box's x must be a whole number of pixels"),
        ({"y": "-3"}, "the box's y must be a whole number of pixels"),
        ({"width": ""}, "the box's width must be a whole number of pixels"),
        ({"height": "1e3"}, "the box's height must be a whole number of pixels"),
        ({"x": "\u0663"}, "the box's x must be a whole number of pixels"),  # an Arabic 3
        ({"width": "7"}, "the box is 7x32 pixels; draw one of at least 8x8"),
        ({"x": "780", "width": "30"}, "reaches past the frame (800x200 pixels)"),
        ({"y": "190"}, "reaches past the frame (800x200 pixels)"),
        ({"label": ""}, "a reference needs a label"),
        ({"label": "unknown"}, "choose the defect's label"),
        ({"kind": "maybe"}, "kind must be one of defect, ok"),
    ):
        response = post(**fields)
        text = response.get_data(as_text=True)
        assert response.status_code == 200 and "Not added: " in text, fields
        assert message.replace("'", "&#39;") in text, (fields, text)
        assert count() == before, fields

    response = post(kind="ok")
    assert "is now reference" in response.get_data(as_text=True)
    (made,) = references_noted(settings, f"box 100,50,64,32 of inspection {frame.id}")
    assert (made.kind, made.label, made.camera) == ("ok", "patches", None)
    assert stored_size(settings, made) == (64, 32)
    # a box on an inspection that does not exist
    assert client.post("/references/from-box/999999", data={"csrf_token": token}).status_code == 404


def test_the_queue_loads_the_findings_of_a_page_in_one_query(app, settings):
    for camera in ("a", "b", "c"):
        add_frame(settings, 400, 100, boxes=((10, 10, 20, 20), (200, 40, 30, 30)), camera=camera)
    client = logged_in(app, "sam", "supervisor-password")
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        page = client.get("/inspections").get_data(as_text=True)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert page.count('class="thumb-frame"') >= 3
    assert len(re.findall(r"<rect ", page)) == 6
    assert sum("FROM findings" in s for s in statements) == 1


def test_the_csv_lists_each_frames_findings(app, settings):
    frame = add_frame(
        settings,
        400,
        100,
        boxes=((10, 12, 20, 22), (200, 40, 30, 30)),
        labels=("=HYPERLINK(1)", "unknown"),
    )
    client = logged_in(app, "sam", "supervisor-password")
    text = client.get("/inspections.csv?status=").get_data(as_text=True)
    rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(text))}
    assert (
        rows[frame.id]["findings"]
        == "'=HYPERLINK(1) 10,12,20,22 2.4000; unknown 200,40,30,30 1.3000"
    )
    assert all(r["findings"] == "" for i, r in rows.items() if i != frame.id)
