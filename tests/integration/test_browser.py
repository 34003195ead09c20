"""The supervisors' site in a real headless Chromium (Debian's), driven by Playwright,
against a real admin server, worker, Redis and PostgreSQL.

Screenshots of each page go to $SCREENSHOT_DIR (``make screenshots`` sets it to
docs/screenshots; otherwise a temporary folder).
"""

from __future__ import annotations

import re
import time

import pytest
import redis
from sqlalchemy import func, select

from admin.auth import create_user
from core.db import session_scope
from core.jobs import QUEUE_NAME
from core.tables import ApiToken, DeadLetter, Inspection, Reference
from producer.client import InspectionClient
from tests.conftest import (
    SAMPLE,
    sample_images,
    seed_references,
    wait_for_rows,
)
from tests.integration.browser import admin_server


@pytest.fixture
def site(settings, start_worker, tmp_path):
    """A running line: references, a worker, 30 inspected images, the admin server."""
    seed_references(settings)
    with session_scope(settings.database_url) as session:
        create_user(session, "alice", "alice-password", "admin")
    start_worker(settings)
    with InspectionClient(settings) as client:
        for path in sample_images()[:30]:
            client.submit_file(path, f"line-{1 + len(path.name) % 2}")
    wait_for_rows(settings.database_url, 30, 120)

    with admin_server(settings, tmp_path / "admin.log") as url:
        yield url


def count_dead_letters(settings) -> int:
    with session_scope(settings.database_url) as session:
        return session.scalar(select(func.count(DeadLetter.id))) or 0


def test_a_supervisor_works_the_site_in_a_browser(site, page, settings, screenshots):
    # anonymous: sent to log in
    page.goto(f"{site}/inspections")
    assert "/login" in page.url
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-password")
    page.screenshot(path=str(screenshots / "login.png"))
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/inspections"))
    assert page.locator("tr[data-inspection-id]").count() == 25
    page.screenshot(path=str(screenshots / "queue.png"), full_page=True)

    # review with the keyboard: o opens the highlighted row, c confirms and moves on,
    # f marks the next one a false alarm
    first_id = int(page.locator("tr.current").get_attribute("data-inspection-id"))
    page.keyboard.press("o")
    page.wait_for_url(re.compile(rf"/inspections/{first_id}$"))
    page.screenshot(path=str(screenshots / "detail.png"), full_page=True)
    page.keyboard.press("c")
    page.wait_for_url(lambda url: not url.endswith(f"/inspections/{first_id}"))
    second_id = int(page.url.rsplit("/", 1)[1])
    page.keyboard.press("f")
    page.wait_for_url(lambda url: not url.endswith(f"/inspections/{second_id}"))
    with session_scope(settings.database_url) as session:
        first, second = session.get(Inspection, first_id), session.get(Inspection, second_id)
        assert (first.review_state, first.reviewed_by) == ("confirmed", "alice")
        assert (second.review_state, second.reviewed_by) == ("false_alarm", "alice")

    # add a reference
    page.goto(f"{site}/references/")
    new_image = sorted((SAMPLE / "pitted_surface").glob("*.png"))[-1]
    page.set_input_files("input[name=image]", str(new_image))
    page.select_option("#reference-label", "pitted_surface")
    page.click("#add-reference")
    page.wait_for_selector(".flash.info")
    assert "Workers use it from their next batch" in page.inner_text(".flash.info")

    def advice(label: str) -> str:
        section = page.locator("section.reference-label", has=page.locator("h2", has_text=label))
        return section.locator(".reference-advice").inner_text()

    # labels with fewer than three active references advise adding more
    assert advice("crazing").startswith("1 active reference:")
    assert advice("pitted_surface").startswith("2 active references:")
    page.screenshot(path=str(screenshots / "references.png"), full_page=True)
    with session_scope(settings.database_url) as session:
        added = session.scalars(select(Reference).where(Reference.added_by == "alice")).all()
        assert [r.label for r in added] == ["pitted_surface"]

    # compare two images, as the original tool did
    page.goto(f"{site}/compare")
    page.set_input_files("input[name=first]", str(sample_images()[0]))
    page.set_input_files("input[name=second]", str(sorted((SAMPLE / "scratches").glob("*"))[2]))
    page.click("#detect")
    score = float(page.inner_text("#dissimilarity"))
    assert score > 0
    assert page.inner_text("#same-class") in ("the same class", "different classes")
    assert page.locator(".nearest-label").count() == 2
    page.screenshot(path=str(screenshots / "compare.png"), full_page=True)

    # a message that named no job, as a dead letter the dashboard links to
    redis.Redis.from_url(settings.redis_url).lpush(QUEUE_NAME, b"not even JSON")
    deadline = time.monotonic() + 30
    while count_dead_letters(settings) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    page.goto(f"{site}/dashboard")
    assert int(page.inner_text("#workers-online")) >= 1  # by heartbeat
    page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)
    assert page.inner_text("#dead-letters") == "1"
    page.click("#dead-letters")
    page.wait_for_url(re.compile(r"/dead-letters$"))
    assert "not JSON" in page.inner_text("table.dead-letters")

    page.goto(f"{site}/thresholds/")
    page.fill("#threshold-value", "0.3")
    page.click("#preview")
    page.wait_for_selector("#preview-result")
    page.screenshot(path=str(screenshots / "thresholds.png"), full_page=True)

    # an API token that may only submit jobs
    page.goto(f"{site}/users/")
    page.fill("input[name=name]", "camera-7")
    page.check("input[name=scope][value=submit]")
    page.click("text=Create token")
    assert page.inner_text("#new-token").startswith("si_")
    with session_scope(settings.database_url) as session:
        token = session.scalar(select(ApiToken).where(ApiToken.name == "camera-7"))
        assert token.scopes == "submit"
    page.screenshot(path=str(screenshots / "users.png"), full_page=True)
