"""The live line (issue #31 item 4), on the real site over PostgreSQL and Redis.

- ``GET /live.json`` needs a session and says what the line does now: frames per
  minute, the last hour by status, the current coil, the latest flagged with their
  thumbnails and boxes, the job queue and the workers, the count to review, the
  alarms; and, for the queue, how many rows matching its filter arrived since.
- Alarm rules are set by admins only, checked on the server, and raise an alarm when
  more than the limit were flagged with the label (as reviewed: a relabel counts
  under its new label, a false alarm not at all) within the window.
- In Chromium: the dashboard's numbers, its latest findings and the menu's count
  change without a reload, the alarm banner comes and goes on the dashboard and the
  queue, the queue says "N new flagged — show", and a hidden tab does not poll.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import select

from core.db import session_scope
from core.jobs import QUEUE_NAME
from core.queue import WORKER_KEY_PREFIX
from core.tables import AlarmRule, Coil, Finding, Inspection
from tests.conftest import csrf_token
from tests.integration.browser import admin_server, log_in
from tests.integration.conftest import add_inspections, logged_in

FETCH = {"X-Requested-With": "fetch", "Accept": "application/json"}


def add_flagged(settings, count: int, label: str = "scratches", **overrides: Any) -> list[int]:
    """``count`` flagged 200x200 frames of ``label`` stored now, each with one finding
    boxed at (20, 40) 50x30 pixels; their ids."""
    with session_scope(settings.database_url) as session:
        before = set(session.scalars(select(Inspection.id)))
    values = dict(label=label, image_width=200, image_height=200, processed_at=datetime.now(UTC))
    ids = [
        i for i in add_inspections(settings, count, **{**values, **overrides}) if i not in before
    ]
    with session_scope(settings.database_url) as session:
        for inspection_id in ids:
            session.add(
                Finding(
                    inspection_id=inspection_id,
                    rank=0,
                    x=20,
                    y=40,
                    width=50,
                    height=30,
                    area=1200,
                    score=2.5,
                    label=label,
                )
            )
    return ids


def live(client, query: str = "") -> dict[str, Any]:
    response = client.get(f"/live.json{query}", headers=FETCH)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def add_rule(settings, label: str, window_minutes: int, limit: int) -> None:
    with session_scope(settings.database_url) as session:
        session.add(
            AlarmRule(label=label, window_minutes=window_minutes, limit=limit, created_by="ada")
        )


# -- /live.json -------------------------------------------------------------------------


def test_live_json_needs_a_session(app):
    client = app.test_client()
    refused = client.get("/live.json", headers=FETCH)
    assert refused.status_code == 401 and refused.get_json()["stale"] is True
    page = client.get("/live.json")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    # a bearer token for the API opens nothing here
    assert client.get("/live.json", headers={"Authorization": "Bearer x"}).status_code == 302


def test_live_json_says_what_the_line_does_now(app, settings):
    app.config["LIVE_MAX_AGE_S"] = 0  # every request reads the database again
    now = datetime.now(UTC)
    flagged = add_flagged(settings, 3, processed_at=now - timedelta(seconds=20))
    add_inspections(
        settings, 4, status="passed", label=None, processed_at=now - timedelta(minutes=3)
    )
    add_inspections(
        settings, 2, status="rejected", label=None, processed_at=now - timedelta(minutes=30)
    )
    add_inspections(settings, 5, status="flagged", processed_at=now - timedelta(hours=3))
    with session_scope(settings.database_url) as session:
        session.add_all(
            [
                # ended: not the current coil, though its last frame is the latest
                Coil(coil_id="C-1", frames=9, flagged=1, last_frame_at=now, ended_at=now),
                Coil(
                    coil_id="C-2",
                    frames=40,
                    flagged=3,
                    length_m=88.5,
                    last_frame_at=now - timedelta(seconds=5),
                ),
                Coil(coil_id="C-0", frames=2, flagged=0, last_frame_at=now - timedelta(hours=1)),
            ]
        )
    with redis.Redis.from_url(settings.redis_url) as r:
        r.set(f"{WORKER_KEY_PREFIX}celery@line-7", "{}", ex=60)
        r.rpush(QUEUE_NAME, "a", "b")

    client = logged_in(app, "sam", "supervisor-password")
    body = live(client)
    assert body["frames_per_minute"] == {"last_minute": 3, "last_5_minutes": 1.4}  # 7 / 5
    assert body["last_hour"] == {"passed": 4, "flagged": 3, "rejected": 2}
    coil = body["coil"]
    assert (coil["id"], coil["frames"], coil["flagged"], coil["length_m"]) == ("C-2", 40, 3, 88.5)
    assert coil["href"] == "/coils/C-2"  # its map
    assert (body["queue_length"], body["workers_online"]) == (2, 1)
    assert body["workers"] == ["celery@line-7"] and body["line_error"] is None
    assert body["to_review"]["count"] == 8 and body["to_review"]["text"] == "8"
    assert body["alarms"] == []

    latest = body["latest_flagged"]
    assert len(latest) == 8 and [item["id"] for item in latest[:3]] == sorted(flagged)[::-1]
    first = latest[0]
    assert first["href"] == f"/inspections/{first['id']}"
    assert re.fullmatch(r"/images/[0-9a-f]+/thumb", first["thumbnail"])
    assert client.get(first["thumbnail"]).headers["Content-Type"] == "image/png"
    assert first["label"] == "scratches" and first["findings"] == [
        {
            "label": "scratches",
            "score": 2.5,
            "box": {"x": 10.0, "y": 20.0, "width": 25.0, "height": 15.0},
        }
    ]


def test_the_queue_hears_of_rows_that_match_its_filter(app, settings):
    app.config["LIVE_MAX_AGE_S"] = 0
    existing = add_flagged(settings, 2)
    after = max(existing)
    client = logged_in(app, "sam", "supervisor-password")
    assert live(client, f"?queue_after={after}")["queue"] == {
        "after": after,
        "new": 0,
        "more": False,
    }
    add_flagged(settings, 3, label="crazing")
    add_inspections(settings, 2, status="passed", label=None)
    assert live(client, f"?queue_after={after}")["queue"]["new"] == 3  # flagged, pending
    assert live(client, f"?queue_after={after}&label=crazing")["queue"]["new"] == 3
    assert live(client, f"?queue_after={after}&label=scratches")["queue"]["new"] == 0
    assert live(client, f"?queue_after={after}&status=")["queue"]["new"] == 5
    assert live(client, f"?queue_after={after}&status=passed")["queue"]["new"] == 2
    add_flagged(settings, 1, coil_id="C-9")  # the queue's coil filter, too
    assert live(client, f"?queue_after={after}&coil=C-9")["queue"]["new"] == 1
    add_flagged(settings, 100)
    assert live(client, f"?queue_after={after}")["queue"] == {
        "after": after,
        "new": 99,
        "more": True,
    }
    for bad in ("x", "-1", "1e3", "99999999999", "\u00b2"):
        response = client.get(f"/live.json?queue_after={bad}", headers=FETCH)
        assert response.status_code == 400 and "inspection id" in response.get_json()["error"]


def test_an_alarm_counts_labels_as_reviewed(app, settings):
    app.config["LIVE_MAX_AGE_S"] = 0
    add_rule(settings, "scratches", 10, 2)
    add_rule(settings, "*", 60, 4)
    client = logged_in(app, "sam", "supervisor-password")
    scratches = add_flagged(settings, 3)
    add_flagged(
        settings, 2, label="crazing", processed_at=datetime.now(UTC) - timedelta(minutes=30)
    )
    alarms = live(client)["alarms"]
    assert [a["text"] for a in alarms] == [
        "Alarm: 3 scratches in the last 10 min (limit 2)",
        "Alarm: 5 flagged (any label) in the last 1 h (limit 4)",
    ]
    assert alarms[0]["count"] == 3 and alarms[0]["label"] == "scratches"

    # a false alarm does not count: at the limit, not over it
    token = csrf_token(client, "/inspections")
    cleared = client.post(
        "/inspections/bulk",
        data={"csrf_token": token, "action": "false_alarm", "ids": [str(scratches[0])]},
    )
    assert cleared.status_code == 302
    assert live(client)["alarms"] == []  # 2 scratches, 4 in all
    # relabeled as scratches, a crazing row counts as one: over the limit again
    old_crazing = add_flagged(settings, 1, label="crazing")
    relabel = client.post(
        f"/inspections/{old_crazing[0]}/review",
        data={"csrf_token": token, "action": "relabel", "label": "scratches"},
        headers={**FETCH, "X-CSRFToken": token},
    )
    assert relabel.status_code == 200, relabel.get_data(as_text=True)
    assert live(client)["alarms"][0]["text"] == "Alarm: 3 scratches in the last 10 min (limit 2)"
    # rows older than a rule's window do not count for it
    add_flagged(settings, 3, processed_at=datetime.now(UTC) - timedelta(minutes=20))
    counts = {a["label"]: a["count"] for a in live(client)["alarms"]}
    assert counts == {"scratches": 3, "*": 8}


def test_only_admins_set_alarm_rules_and_the_server_checks_them(app, settings):
    supervisor = logged_in(app, "sam", "supervisor-password")
    assert supervisor.get("/alarms").status_code == 403
    token = csrf_token(supervisor, "/inspections")
    refused = supervisor.post(
        "/alarms", data={"csrf_token": token, "label": "*", "window_minutes": "5", "limit": "1"}
    )
    assert refused.status_code == 403

    admin = logged_in(app, "ada", "admin-password")
    page = admin.get("/alarms").get_data(as_text=True)
    assert 'name="csrf_token"' in page and re.search(r"<option\s*>scratches</option>", page)
    token = csrf_token(admin, "/alarms")
    no_token = admin.post("/alarms", data={"label": "*", "window_minutes": "5", "limit": "1"})
    assert no_token.status_code == 400
    for fields, message in [
        ({"label": "scratch", "window_minutes": "5", "limit": "1"}, "not an active label"),
        ({"label": "", "window_minutes": "5", "limit": "1"}, "choose the label"),
        ({"label": "*", "window_minutes": "0", "limit": "1"}, "must be from 1 to 1440"),
        ({"label": "*", "window_minutes": "1441", "limit": "1"}, "must be from 1 to 1440"),
        ({"label": "*", "window_minutes": "ten", "limit": "1"}, "whole number"),
        ({"label": "*", "window_minutes": "5", "limit": "-1"}, "must be from 0"),
        ({"label": "*", "window_minutes": "5", "limit": ""}, "whole number"),
    ]:
        response = admin.post("/alarms", data={"csrf_token": token, **fields})
        text = response.get_data(as_text=True)
        assert response.status_code == 400 and message in text, (fields, text)
        assert f'value="{fields["limit"]}"' in text  # what was typed is kept
    added = admin.post(
        "/alarms",
        data={"csrf_token": token, "label": "scratches", "window_minutes": "10", "limit": "5"},
        follow_redirects=True,
    )
    assert "more than 5 scratches in 10 min" in added.get_data(as_text=True)
    again = admin.post(
        "/alarms",
        data={"csrf_token": token, "label": "scratches", "window_minutes": "10", "limit": "5"},
    )
    assert again.status_code == 400 and "already raises this alarm" in again.get_data(True)
    with session_scope(settings.database_url) as session:
        rule = session.scalars(select(AlarmRule)).one()
        assert (rule.label, rule.window_minutes, rule.limit, rule.created_by) == (
            "scratches",
            10,
            5,
            "ada",
        )
    admin.post(f"/alarms/{rule.id}/active", data={"csrf_token": token, "active": "0"})
    with session_scope(settings.database_url) as session:
        assert session.get(AlarmRule, rule.id).active is False


# -- in the browser ---------------------------------------------------------------------


@pytest.fixture
def site(app, settings, tmp_path) -> Iterator[str]:
    with admin_server(settings, tmp_path / "admin.log") as url:
        yield url


def wait_text(page, selector: str, text: str, timeout: int = 15_000) -> None:
    page.wait_for_function(
        "([s, t]) => document.querySelector(s)?.textContent.trim() === t",
        arg=[selector, text],
        timeout=timeout,
    )


def set_visibility(page, state: str) -> None:
    """What the browser does when the tab is put away or brought back."""
    page.evaluate(
        """state => {
            Object.defineProperty(document, "visibilityState", {value: state, configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        state,
    )


def test_the_dashboard_updates_without_a_reload(site, page, settings, screenshots):
    log_in(page, site)
    page.goto(f"{site}/dashboard")
    assert page.inner_text("#live-fpm") == "0"
    assert page.is_visible("#live-no-findings") and not page.is_visible("#alarm-banner")
    page.evaluate("window.stillHere = 'the same page'")

    add_flagged(settings, 3)
    wait_text(page, "#live-fpm", "3")
    # (predicates as functions: the site's CSP forbids evaluating strings)
    page.wait_for_function("() => document.querySelectorAll('#live-findings li').length === 3")
    wait_text(page, "#waiting-count .count", "3")
    assert page.inner_text("#live-flagged") == "3"
    assert page.inner_text("#live-to-review strong") == "3"
    assert not page.is_visible("#live-no-findings")
    first = page.locator("#live-findings li").first
    assert first.locator("img").get_attribute("src").endswith("/thumb")
    box = first.locator("svg.boxes rect")
    assert [float(box.get_attribute(side).rstrip("%")) for side in ("x", "width")] == [10, 25]
    page.wait_for_function(
        "() => document.querySelector('#live-findings img').naturalWidth > 0"
    )  # the thumbnail loaded
    # the workers and the coil, too
    with redis.Redis.from_url(settings.redis_url) as r:
        r.set(f"{WORKER_KEY_PREFIX}celery@line-7", "{}", ex=60)
    with session_scope(settings.database_url) as session:
        session.add(Coil(coil_id="C-77", frames=12, flagged=3, length_m=36.0))
    wait_text(page, "#live-workers", "1", timeout=20_000)
    wait_text(page, "#live-coil", "C-77: 12 frame(s), 3 flagged, 36.0 m")
    assert page.evaluate("window.stillHere") == "the same page"  # no reload happened
    page.screenshot(path=str(screenshots / "live-dashboard.png"), full_page=True)

    # a hidden tab does not poll; shown again, it polls at once
    set_visibility(page, "hidden")
    time.sleep(1)  # a poll already on its way may still land
    polls = page.evaluate("window.liveLine.polls")
    time.sleep(7)
    assert page.evaluate("window.liveLine.polls") == polls
    set_visibility(page, "visible")
    page.wait_for_function("n => window.liveLine.polls > n", arg=polls, timeout=5_000)


def test_an_alarm_and_new_rows_show_live_on_the_queue_and_the_dashboard(
    site, page, app, settings, screenshots
):
    # an admin sets the rule on its page
    log_in(page, site, "ada", "admin-password")
    page.goto(f"{site}/alarms")
    page.select_option("#alarm-label", "scratches")
    page.fill("#alarm-limit", "2")
    page.fill("#alarm-window", "10")
    page.click("#add-alarm")
    page.wait_for_load_state()
    assert "more than 2 scratches in 10 min" in page.inner_text("#alarm-rules")

    page.goto(f"{site}/inspections")
    assert not page.is_visible("#alarm-banner") and not page.is_visible("#new-rows")
    page.evaluate("window.stillHere = 'the same page'")
    ids = add_flagged(settings, 3)
    wait_text(page, "#alarm-banner", "Alarm: 3 scratches in the last 10 min (limit 2)")
    assert page.get_attribute("#alarm-banner", "role") == "alert"
    wait_text(page, "#new-rows-text", "3 new flagged")
    wait_text(page, "#waiting-count .count", "3")
    assert page.evaluate("window.stillHere") == "the same page"
    assert page.locator("[data-inspection-id]").count() == 0  # rows stay until asked
    page.screenshot(path=str(screenshots / "live-queue.png"), full_page=True)
    page.click("#new-rows-show")
    page.wait_for_load_state()
    assert sorted(
        int(i)
        for i in page.locator("[data-inspection-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.inspectionId)"
        )
    ) == sorted(ids)
    assert not page.is_visible("#new-rows")

    # on the dashboard: there with the page, gone once two are false alarms, back live
    page.goto(f"{site}/dashboard")
    assert page.is_visible("#alarm-banner")
    page.evaluate("window.stillHere = 'the dashboard'")
    client = logged_in(app, "sam", "supervisor-password")
    token = csrf_token(client, "/inspections")
    client.post(
        "/inspections/bulk",
        data={"csrf_token": token, "action": "false_alarm", "ids": [str(i) for i in ids[:2]]},
    )
    page.wait_for_selector("#alarm-banner", state="hidden", timeout=15_000)
    page.wait_for_function(
        "() => document.querySelectorAll('#live-findings .review-state').length === 2"
    )
    assert page.locator("#live-findings .review-state").first.inner_text() == "false alarm"
    add_flagged(settings, 2)
    wait_text(page, "#alarm-banner", "Alarm: 3 scratches in the last 10 min (limit 2)")
    assert page.evaluate("window.stillHere") == "the dashboard"
    page.screenshot(path=str(screenshots / "live-alarm.png"), full_page=True)
