"""Compare (#29, item 5) in a real Chromium against a real admin server: one verdict
that names both images' nearest references and never calls two images nearest to
different classes "the same class"; the verdict on screen without scrolling; the
chosen files kept for the next run. And, through Flask's test client, what the
session may hold: kept uploads are checked as if hostile.

The ``app`` fixture seeds one reference per class of data/sample (``<Class>_1.png``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from admin.compare import KEPT
from core.blobs import BlobStore
from core.db import session_scope
from core.tables import Reference
from tests.conftest import SAMPLE, csrf_token
from tests.integration.browser import admin_server
from tests.integration.conftest import logged_in

#: a scratch and a patch, each nearest to its own class's reference, that the shipped
#: model finds closer to each other than the threshold: the issue's contradiction
SCRATCH = SAMPLE / "scratches" / "Sc_5.png"
PATCH = SAMPLE / "patches" / "Pa_8.png"
INCLUSION = SAMPLE / "inclusion" / "In_3.png"


@pytest.fixture
def site(app, settings, tmp_path) -> Iterator[str]:
    with admin_server(settings, tmp_path / "admin.log") as url:
        yield url


def reference_ids(settings) -> dict[str, int]:
    with session_scope(settings.database_url) as session:
        return dict(session.execute(select(Reference.label, Reference.id)).tuples().all())


def detect(page) -> None:
    with page.expect_navigation():
        page.click("#detect")
    page.wait_for_selector("#verdict")


def assert_on_screen(page, selector: str) -> None:
    """``selector`` lies wholly within the viewport, the page not scrolled."""
    assert page.evaluate("window.scrollY") == 0
    box = page.locator(selector).bounding_box()
    viewport = page.viewport_size
    assert box is not None and box["y"] >= 0 and box["x"] >= 0
    assert box["y"] + box["height"] <= viewport["height"], (selector, box, viewport)
    assert box["x"] + box["width"] <= viewport["width"], (selector, box, viewport)


def assert_side_by_side(page) -> None:
    first, second = (page.locator(".previews img").nth(i).bounding_box() for i in (0, 1))
    assert abs(first["y"] - second["y"]) < 1 and first["x"] + first["width"] <= second["x"]


def widest_right_edge(page) -> float:
    return page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('main *')]"
        ".map(e => e.getBoundingClientRect().right))"
    )


def test_compare_names_both_references_fits_the_screen_and_keeps_the_files(
    site, page, settings, screenshots
):
    ids = reference_ids(settings)
    page.set_viewport_size({"width": 1024, "height": 768})
    page.goto(f"{site}/login")
    page.fill("input[name=username]", "sam")
    page.fill("input[name=password]", "supervisor-password")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/inspections"))

    page.goto(f"{site}/compare")
    page.set_input_files("input[name=first]", str(SCRATCH))
    page.set_input_files("input[name=second]", str(PATCH))
    detect(page)

    # each image's nearest reference is its own class's, and the verdict follows them
    assert page.locator(".nearest-label").all_inner_texts() == ["scratches", "patches"]
    headline = page.inner_text("#verdict-headline")
    assert headline == "Different classes: scratches vs patches"
    assert "same class" not in headline.lower()
    verdict = page.inner_text("#verdict")
    assert f"scratches #{ids['scratches']}" in verdict
    assert f"patches #{ids['patches']}" in verdict
    distance = float(page.inner_text("#dissimilarity"))
    explanation = page.inner_text("#verdict-explanation")
    # the pair is closer than the threshold: the page says so, and why it still differs
    assert page.inner_text("#same-class") == "the same class"
    assert re.search(
        rf"Their distance {distance:.4f} is under the threshold \d\.\d{{4}}, but they are "
        r"nearest to different references",
        explanation,
    ), explanation
    assert "Model" in verdict  # the original tool's numbers stay

    # the verdict and both images on one screen at 1024x768, the images side by side
    assert_on_screen(page, "#verdict")
    assert_side_by_side(page)
    page.screenshot(path=str(screenshots / "compare-1024.png"))

    # both files kept; replace only the second and run again
    assert "keeping Sc_5.png" in page.inner_text("#kept-first")
    assert "keeping Pa_8.png" in page.inner_text("#kept-second")
    page.set_input_files("input[name=second]", str(INCLUSION))
    assert "replacing it with In_3.png" in page.inner_text("#kept-second")
    detect(page)
    assert page.locator(".nearest-label").all_inner_texts() == ["scratches", "inclusion"]
    assert page.inner_text("#verdict-headline") == "Different classes: scratches vs inclusion"
    assert "keeping Sc_5.png" in page.inner_text("#kept-first")
    assert "keeping In_3.png" in page.inner_text("#kept-second")
    captions = page.locator(".previews figcaption").all_inner_texts()
    assert [c.split(": ")[1] for c in captions] == ["Sc_5.png", "In_3.png"]

    # a desktop: all of it on screen; a phone: stacked, nothing wider than the screen
    page.set_viewport_size({"width": 1920, "height": 1080})
    assert_on_screen(page, "#verdict")
    assert_on_screen(page, ".previews")
    assert_side_by_side(page)
    page.screenshot(path=str(screenshots / "compare-1920.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    assert widest_right_edge(page) <= 390
    first, second = (page.locator(".previews img").nth(i).bounding_box() for i in (0, 1))
    assert second["y"] >= first["y"] + first["height"]
    page.screenshot(path=str(screenshots / "compare-390.png"), full_page=True)


def post_compare(client, **files) -> str:
    data = {"csrf_token": csrf_token(client, "/compare")}
    for slot, path in files.items():
        data[slot] = (io.BytesIO(path.read_bytes()), path.name)
    response = client.post("/compare", data=data, content_type="multipart/form-data")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_kept_uploads_are_reused_and_hostile_ones_ignored(app, settings):
    client = logged_in(app, "sam", "supervisor-password")
    nothing = post_compare(client)
    assert "First image: choose an image file" in nothing
    assert "Second image: choose an image file" in nothing

    # one good file is kept even though the other slot was empty
    half = post_compare(client, first=SCRATCH)
    assert "Second image: choose an image file" in half and 'id="kept-first"' in half
    # then the second alone completes the pair
    full = post_compare(client, second=PATCH)
    assert 'id="verdict-headline">Different classes: scratches vs patches<' in full
    with client.session_transaction() as session:
        kept = session[KEPT]
    store = BlobStore(settings.blob_dir)
    assert kept["first"]["key"] == store.key_for(SCRATCH.read_bytes())
    assert kept["second"] == {"key": store.key_for(PATCH.read_bytes()), "name": "Pa_8.png"}

    # keys of the wrong form, and names with markup, never reach the store or the page
    for hostile in ("../../etc/passwd", "A" * 64, 7, None, {"x": 1}):
        with client.session_transaction() as session:
            session[KEPT] = {
                "first": {"key": hostile, "name": "<b>x</b>"},
                "second": kept["second"],
            }
        page = post_compare(client)
        assert "First image: choose an image file" in page and "<b>x</b>" not in page
        assert 'id="kept-second"' in page
    with client.session_transaction() as session:
        session[KEPT] = {
            "first": {**kept["first"], "name": "C:\\photos\\<img src=x onerror=alert(1)>\x07.png"}
        }
    page = post_compare(client, second=PATCH)
    assert "keeping <strong>&lt;img src=x onerror=alert(1)&gt;.png</strong>" in page
    with client.session_transaction() as session:
        session[KEPT] = "not a dict"
    assert "First image: choose an image file" in post_compare(client)

    # a kept image that is no longer stored is asked for again, by name
    with client.session_transaction() as session:
        session[KEPT] = {
            "first": {"key": "0" * 64, "name": "gone.png"},
            "second": kept["second"],
        }
    assert "First image: gone.png is no longer kept on the server" in post_compare(client)
