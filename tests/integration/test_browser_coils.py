"""The coil view (#31, item 2) in a real Chromium against a real admin server: an admin
sets a coil rule; a coil's map shows its marks coloured by label with a legend that
says which colour is which, fills while the coil is open as frames are stored (no
reload), and opens a mark's frame on a click; the coil list shows the verdicts the
scheduler made (``judge_ended_coils``, called here as the worker's scheduler calls it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.coil_verdicts import judge_ended_coils
from core.db import session_scope
from tests.integration.browser import admin_server, log_in
from tests.integration.coil_rows import Frame, add_frames


@pytest.fixture
def site(app, settings, tmp_path) -> Iterator[str]:
    with admin_server(settings, tmp_path / "admin.log") as url:
        yield url


def drawn_marks(page) -> list[tuple[str, str, str]]:
    """(inspection id, label, colour) of each mark on the map."""
    return [
        tuple(mark)
        for mark in page.eval_on_selector_all(
            "#coil-marks a.mark",
            "els => els.map(e => [e.dataset.inspectionId, e.dataset.label,"
            " e.querySelector('circle').getAttribute('fill')])",
        )
    ]


def legend(page) -> dict[str, str]:
    """The counts table's colour for each label."""
    rows = page.eval_on_selector_all(
        "#coil-counts-body tr",
        "els => els.map(e => [e.dataset.label, e.querySelector('circle').getAttribute('fill')])",
    )
    return dict(rows)


def test_an_admin_sets_a_rule_and_a_coil_map_fills_live(site, page, settings, screenshots):
    log_in(page, site, "ada", "admin-password")

    # an admin adds "more than 2 scratches per 100 m: hold", confirming it
    page.goto(f"{site}/coil-rules")
    assert page.locator("#no-rules").is_visible()
    page.select_option("select[name=label]", "scratches")
    page.fill("input[name=max_count]", "2")
    page.fill("input[name=per_m]", "100")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    with page.expect_navigation():
        page.click("#add-rule button[type=submit]")
    assert asked and "Add this coil rule?" in asked[0]
    assert "Rule added: more than 2 'scratches' per 100 m: hold." in page.inner_text("main")
    assert page.inner_text("#coil-rules .rule-text") == "more than 2 'scratches' per 100 m: hold"
    page.screenshot(path=str(screenshots / "coil-rules.png"), full_page=True)

    # a coil on the line: scratches and inclusions along its first 300 m
    first = [
        Frame(20.0, findings=("scratches",), across_m=0.3),
        Frame(60.0),
        Frame(110.0, findings=("inclusion",), across_m=1.1),
        Frame(170.0, findings=("scratches",), across_m=0.8),
        Frame(250.0, label="unknown", across_m=None),
    ]
    ids = add_frames(settings, "L-42", first)
    page.goto(f"{site}/coils/L-42")
    marks = drawn_marks(page)
    assert [int(m[0]) for m in marks] == [ids[0], ids[2], ids[3], ids[4]]
    colours = legend(page)
    assert set(colours) == {"scratches", "inclusion", "unknown"}
    assert len(set(colours.values())) == 3  # a colour per label
    assert all(colour == colours[label] for _, label, colour in marks)
    assert page.inner_text("#verdict-state") == "open"
    assert "the rules would ship it now" in page.inner_text("#verdict-text")

    # frames stored while the page is open appear on the map, the page not reloaded
    page.evaluate("window.coilPageLoaded = true")
    more = [
        Frame(300.0, findings=("scratches",), across_m=0.5),
        Frame(330.0, findings=("scratches",), across_m=0.9),
        Frame(360.0, findings=("scratches",), across_m=1.2),
    ]
    later = add_frames(settings, "L-42", more)
    page.wait_for_function(
        "() => document.querySelectorAll('#coil-marks a.mark').length === 7", timeout=15_000
    )
    assert page.evaluate("window.coilPageLoaded") is True
    assert [int(m[0]) for m in drawn_marks(page)][-3:] == later
    assert page.inner_text("#coil-counts-body tr[data-label=scratches] .count") == "5"
    assert "the rules would hold it now" in page.inner_text("#verdict-text")
    assert "3 'scratches' within 100 m" in page.inner_text("#verdict-reasons")
    assert page.locator("#coil-band rect.bin").count() >= 5
    # marks further along lie further right; the map is as wide as the page allows
    xs = [box["x"] for box in (m.bounding_box() for m in page.locator("#coil-marks a.mark").all())]
    assert xs == sorted(xs)
    page.screenshot(path=str(screenshots / "coil-map.png"), full_page=True)

    # a click on a mark opens its frame
    with page.expect_navigation():
        page.click(f'#coil-marks a.mark[data-inspection-id="{ids[2]}"]')
    assert page.url.endswith(f"/inspections/{ids[2]}")

    # the coil ends; the scheduler judges it; the list shows the verdicts
    add_frames(settings, "L-42", [Frame(400.0)], end=True)
    add_frames(settings, "L-43", [Frame(10.0, findings=("inclusion",))], end=True)
    add_frames(settings, "L-44", [Frame(10.0)])
    with session_scope(settings.database_url) as session:
        assert judge_ended_coils(session, settings.line_name) == ["L-42", "L-43"]
    page.goto(f"{site}/coils")
    states = dict(
        page.eval_on_selector_all(
            "#coils tbody tr", "els => els.map(e => [e.dataset.coilId, e.dataset.state])"
        )
    )
    assert states == {"L-42": "hold", "L-43": "ship", "L-44": "open"}
    assert "3 'scratches' within 100 m" in page.inner_text('#coils tr[data-coil-id="L-42"]')
    page.screenshot(path=str(screenshots / "coils.png"), full_page=True)

    # the ended coil's page no longer polls, and shows the stored verdict
    page.goto(f"{site}/coils/L-42")
    assert page.inner_text("#verdict-state") == "hold"
    assert page.get_attribute("#coil-map-box", "data-open") == "0"

    # on a phone the page is no wider than the screen: the map scrolls within itself
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(screenshots / "coil-map-390.png"), full_page=True)
