"""The dashboard (issue #29 item 8) and forms that arrive too late (item 6), on the real
site over PostgreSQL and Redis: through Flask's test client, and once in Chromium.

- The dashboard renders from the workers' heartbeats without asking any worker, and
  its script's status endpoint answers with or without workers or Redis.
- The menu counts the flagged images waiting for review on every page.
- Every bar of the dashboard's charts links to the queue showing the rows it counts.
- A form whose CSRF token went stale, or whose session ended, shows what was typed
  and sends it again (after logging in again) with a fresh token.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urlsplit

import celery.app.control
import pytest
import redis
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from markupsafe import escape
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from admin import create_app
from core.db import session_scope
from core.queue import WORKER_KEY_PREFIX
from core.tables import Inspection
from tests.conftest import csrf_token, free_port
from tests.integration.browser import admin_server
from tests.integration.conftest import add_inspections, logged_in

SITE = "http://localhost"  # the test client's origin: what a page of the site sends
FROM_SITE = {"Origin": SITE}
FETCH = {"X-Requested-With": "fetch", "Accept": "application/json"}


class Forms(HTMLParser):
    """Each form of a page: its attributes and its inputs' (name, value) in order."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({**values, "inputs": []})
        elif tag == "input" and self.forms and "name" in values:
            self.forms[-1]["inputs"].append((values["name"], values.get("value", "")))

    def by_id(self, form_id: str) -> dict[str, Any]:
        (form,) = [f for f in self.forms if f.get("id") == form_id]
        return form

    def by_class(self, name: str) -> dict[str, Any]:
        (form,) = [f for f in self.forms if name in f.get("class", "").split()]
        return form


def expired_token(secret_key: str, raw: str = "any") -> str:
    """A CSRF token as Flask-WTF signs one, made two hours ago (it lives one)."""

    class TwoHoursAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 7200

    return URLSafeTimedSerializer(secret_key, salt="wtf-csrf-token", signer=TwoHoursAgo).dumps(raw)


def shown_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-inspection-id="(\d+)"', page)]


def stored(settings, inspection_id: int) -> Inspection:
    with session_scope(settings.database_url) as session:
        row = session.get(Inspection, inspection_id)
        session.expunge(row)
        return row


# -- the dashboard ----------------------------------------------------------------------


@pytest.fixture
def no_worker_is_asked(monkeypatch):
    """Asking Celery's workers (inspect, ping) waits for answers: fail if it is done."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the dashboard asked the workers through the broker")

    monkeypatch.setattr(celery.app.control.Control, "inspect", property(refuse))
    monkeypatch.setattr(celery.app.control.Control, "ping", refuse)


def test_the_dashboard_renders_with_no_worker_and_polls_their_status(
    app, settings, no_worker_is_asked
):
    add_inspections(settings, 6)
    client = logged_in(app, "sam", "supervisor-password")
    page = client.get("/dashboard").get_data(as_text=True)
    assert re.search(r'id="workers-online">0<', page)
    assert re.search(r'id="queue-length">0<', page)
    assert 'src="/static/dashboard.js"' in page and 'data-status-url="/dashboard/line"' in page
    assert client.get("/static/dashboard.js").status_code == 200

    status = client.get("/dashboard/line", headers=FETCH)
    assert status.status_code == 200 and status.headers["Cache-Control"] == "no-store"
    assert status.get_json() | {"checked_at": 0} == {
        "queue": 0,
        "unacked": 0,
        "workers": [],
        "workers_lost": 0,
        "jobs_restored": 0,
        "lost_recently": [],
        "error": None,
        "checked_at": 0,
    }

    # a worker's heartbeat, as worker/heartbeat.py writes it: the poll sees it at once
    with redis.Redis.from_url(settings.redis_url) as r:
        r.set(f"{WORKER_KEY_PREFIX}celery@line-3", "{}", ex=20)
        r.rpush("inspect", "a job")
    assert client.get("/dashboard/line").get_json()["workers"] == ["celery@line-3"]
    page = client.get("/dashboard").get_data(as_text=True)
    assert re.search(r'id="workers-online">1<', page) and "celery@line-3" in page
    assert re.search(r'id="queue-length">1<', page)


def test_the_dashboard_renders_when_redis_does_not_answer(settings, app, no_worker_is_asked):
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    down = create_app({**app.config, "REDIS_URL": nobody})
    client = logged_in(down, "sam", "supervisor-password")
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "Redis does not answer" in page.get_data(as_text=True)
    status = client.get("/dashboard/line")
    assert status.status_code == 503
    assert "Redis does not answer" in status.get_json()["error"]


def test_the_menu_counts_flagged_images_waiting_for_review(app, settings):
    ids = add_inspections(settings, 7)
    add_inspections(settings, 3, status="passed", label="ok-steel")
    client = logged_in(app, "sam", "supervisor-password")
    token = csrf_token(client, f"/inspections/{ids[0]}")
    for inspection_id in ids[:2]:
        reviewed = client.post(
            f"/inspections/{inspection_id}/review", data={"csrf_token": token, "action": "confirm"}
        )
        assert reviewed.status_code == 302

    for path in ("/dashboard", "/inspections", f"/inspections/{ids[3]}", "/compare"):
        page = client.get(path).get_data(as_text=True)
        match = re.search(
            r'<a href="([^"]+)" id="waiting-count"[^>]*><span class="count" data-count="(\d+)">',
            page,
        )
        assert match, path
        assert int(match.group(2)) == 5, path
    # the link shows exactly those five
    queue = client.get(html.unescape(match.group(1))).get_data(as_text=True)
    assert sorted(shown_ids(queue)) == ids[2:]
    # no count for who is not logged in
    assert "waiting-count" not in app.test_client().get("/login").get_data(as_text=True)


BAR_LINK = re.compile(r'<a href="([^"]+)" class="bar-link"><title>(.*?): (\d+); open')


def test_every_chart_bar_opens_the_queue_with_the_rows_it_counts(app, settings):
    ids = add_inspections(settings, 9)
    add_inspections(settings, 4, status="passed", label="ok-steel", camera="cam-x")
    # a plant half an hour off UTC's hours: the time links are in plant time
    site = create_app({**app.config, "PLANT_TIMEZONE": "Asia/Kolkata"})
    client = logged_in(site, "sam", "supervisor-password")
    token = csrf_token(client, f"/inspections/{ids[0]}")
    # reviewed rows still count in the charts: their links must show them too
    client.post(f"/inspections/{ids[0]}/review", data={"csrf_token": token, "action": "confirm"})

    page = client.get("/dashboard").get_data(as_text=True)
    hour = page[page.index("<h2>Last hour</h2>") : page.index("<h2>Last day</h2>")]
    bars = [(html.unescape(href), name, int(n)) for href, name, n in BAR_LINK.findall(hour)]
    names = {name for _, name, _ in bars}
    assert {"flagged", "passed", "crazing", "unknown", "ok-steel", "cam-0", "cam-x"} <= names
    throughput = page[page.index("<h2>Throughput</h2>") : page.index("<h2>Last hour</h2>")]
    minutes = [(html.unescape(h), name, int(n)) for h, name, n in BAR_LINK.findall(throughput)]
    busy = [bar for bar in minutes if bar[2] > 0]
    assert sum(n for _, _, n in busy) >= 13  # in the per-minute and per-hour series

    for href, name, count in bars + busy:
        args = dict(part.split("=", 1) for part in urlsplit(href).query.split("&") if "=" in part)
        assert args["review"] == "any", href
        response = client.get(href)
        assert response.status_code == 200, href
        shown = shown_ids(response.get_data(as_text=True))
        assert len(shown) == count, (href, name)
        with session_scope(settings.database_url) as session:
            rows = session.scalars(select(Inspection).where(Inspection.id.in_(shown))).all()
            for row in rows:
                if "label" in args:
                    assert row.label == unquote(args["label"]) == name
                if "camera" in args:
                    assert row.camera == unquote(args["camera"]) == name
                if args.get("status"):
                    assert row.status == args["status"] == name


# -- a stale CSRF token -----------------------------------------------------------------


def test_a_stale_token_keeps_the_review_and_sends_it_again(app, settings):
    ids = add_inspections(settings, 2)
    client = logged_in(app, "sam", "supervisor-password")
    client.get(f"/inspections/{ids[0]}")
    comment = 'a dent <b>near</b> the "edge"\nsecond line'
    stale = {
        "csrf_token": expired_token("test"),
        "action": "confirm",
        "comment": comment,
        "then": "next",
    }
    response = client.post(f"/inspections/{ids[0]}/review", data=stale, headers=FROM_SITE)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "The form had expired" in page and "The CSRF token has expired." in page
    assert str(escape(comment)) in page and "<b>near</b>" not in page
    assert stale["csrf_token"] not in page
    assert stored(settings, ids[0]).review_state == "pending"

    again = Forms(page).by_id("resubmit")
    assert again["action"] == f"/inspections/{ids[0]}/review"
    fields = dict(again["inputs"])
    assert fields["comment"] == comment and fields["action"] == "confirm"
    assert fields["csrf_token"] != stale["csrf_token"]
    assert client.post(again["action"], data=MultiDict(again["inputs"])).status_code == 302
    row = stored(settings, ids[0])
    assert (row.review_state, row.review_comment) == ("confirmed", comment)


def test_a_stale_form_from_elsewhere_is_shown_but_not_offered_again(app, settings):
    ids = add_inspections(settings, 1)
    client = logged_in(app, "sam", "supervisor-password")
    client.get("/inspections")
    data = {"csrf_token": "forged", "action": "confirm", "comment": "from elsewhere"}
    for headers in ({}, {"Origin": "https://evil.example"}):
        page = client.post(f"/inspections/{ids[0]}/review", data=data, headers=headers)
        assert page.status_code == 400
        text = page.get_data(as_text=True)
        assert "from elsewhere" in text and 'id="resubmit"' not in text


def test_passwords_and_files_are_not_kept(app, settings):
    admin = logged_in(app, "ada", "admin-password")
    admin.get("/users/")
    page = admin.post(
        "/users/",
        data={"csrf_token": expired_token("test"), "username": "kim", "password": "kims-secret-1"},
        headers=FROM_SITE,
    ).get_data(as_text=True)
    assert "kim" in page and "kims-secret-1" not in page
    assert "Passwords are not kept" in page
    compare = admin.post(
        "/compare",
        data={"csrf_token": expired_token("test"), "first": (open(__file__, "rb"), "a.png")},
        content_type="multipart/form-data",
        headers=FROM_SITE,
    ).get_data(as_text=True)
    assert "Files cannot be kept: choose first again" in compare


def test_a_script_gets_json_and_a_fresh_token(app, settings):
    ids = add_inspections(settings, 1)
    client = logged_in(app, "sam", "supervisor-password")
    client.get("/inspections")
    data = {"action": "confirm", "comment": "by fetch"}
    refused = client.post(
        f"/inspections/{ids[0]}/review",
        data=data,
        headers={**FETCH, "X-CSRFToken": expired_token("test")},
    )
    assert refused.status_code == 400
    assert refused.get_json()["stale"] is True and "csrf-token" in refused.get_json()["error"]

    fresh = client.get("/csrf-token", headers=FETCH)
    assert fresh.status_code == 200 and fresh.headers["Cache-Control"] == "no-store"
    token = fresh.get_json()["csrf_token"]
    accepted = client.post(
        f"/inspections/{ids[0]}/review", data=data, headers={**FETCH, "X-CSRFToken": token}
    )
    assert accepted.status_code < 400
    assert stored(settings, ids[0]).review_comment == "by fetch"

    anonymous = app.test_client()
    assert anonymous.get("/csrf-token", headers=FETCH).status_code == 401
    assert anonymous.get("/csrf-token", headers=FETCH).get_json()["stale"] is True
    assert anonymous.get("/csrf-token").status_code == 302  # a page: sent to log in


# -- an ended session --------------------------------------------------------------------


def test_a_form_posted_after_the_session_ended_is_sent_after_logging_in(app, settings):
    ids = add_inspections(settings, 2)
    client = logged_in(app, "sam", "supervisor-password")
    token = csrf_token(client, f"/inspections/{ids[1]}")
    # sam logs out elsewhere: every session of sam's ends, this one too
    other = logged_in(app, "sam", "supervisor-password")
    other.post("/logout", data={"csrf_token": csrf_token(other, "/inspections")})

    comment = "pitting along the edge, 3 cm"
    form = {"csrf_token": token, "action": "false_alarm", "comment": comment, "then": "queue"}
    fetched = client.post(f"/inspections/{ids[1]}/review", data=form, headers=FETCH)
    assert fetched.status_code == 401 and fetched.get_json()["stale"] is True

    response = client.post(f"/inspections/{ids[1]}/review", data=form, headers=FROM_SITE)
    assert response.status_code == 401
    login_page = Forms(response.get_data(as_text=True)).by_class("login")
    assert login_page["action"] == f"/login?next=/inspections/{ids[1]}/review"
    carried = login_page["inputs"]
    assert ("kept-value", comment) in carried and ("kept-name", "comment") in carried
    assert ("kept-name", "csrf_token") not in carried

    def log_in(page: dict[str, Any], password: str) -> Any:
        inputs = [(k, v) for k, v in page["inputs"] if k not in ("username", "password")]
        return client.post(
            page.get("action") or f"/login?next=/inspections/{ids[1]}/review",
            data=MultiDict([*inputs, ("username", "sam"), ("password", password)]),
        )

    # the login page itself left open too long: asked again, still carrying the form
    expired = MultiDict(
        [(k, v) for k, v in carried if k != "csrf_token"]
        + [("csrf_token", expired_token("test")), ("username", "sam"), ("password", "x")]
    )
    again_page = client.post(login_page["action"], data=expired)
    assert again_page.status_code == 400 and "had expired" in again_page.get_data(True)
    assert ("kept-value", comment) in Forms(again_page.get_data(True)).by_class("login")["inputs"]

    # a wrong password first: the login page again, still carrying the form
    retry = log_in(login_page, "not-the-password")
    assert retry.status_code == 200 and "Wrong user name or password" in retry.get_data(True)
    login_page = Forms(retry.get_data(as_text=True)).by_class("login")
    assert ("kept-value", comment) in login_page["inputs"]

    logged = log_in(login_page, "supervisor-password")
    assert logged.status_code == 200
    page = logged.get_data(as_text=True)
    assert "You are logged in again" in page and comment in page
    assert stored(settings, ids[1]).review_state == "pending"

    again = Forms(page).by_id("resubmit")
    sent = client.post(again["action"], data=MultiDict(again["inputs"]))
    assert sent.status_code == 302
    row = stored(settings, ids[1])
    assert (row.review_state, row.review_comment) == ("false_alarm", comment)


def test_a_post_from_elsewhere_without_a_session_keeps_nothing(app, settings):
    ids = add_inspections(settings, 1)
    anonymous = app.test_client()
    for headers in ({}, {"Origin": "https://evil.example"}):
        response = anonymous.post(
            f"/inspections/{ids[0]}/review", data={"action": "confirm"}, headers=headers
        )
        assert response.status_code == 302 and "/login" in response.headers["Location"]


# -- in the browser ---------------------------------------------------------------------


@pytest.fixture
def site(app, settings, tmp_path) -> Iterator[str]:
    """The admin server (``flask run``) over the app fixture's users."""
    with admin_server(settings, tmp_path / "admin.log") as url:
        yield url


def log_in(on: Any) -> None:
    on.fill("input[name=username]", "sam")
    on.fill("input[name=password]", "supervisor-password")
    on.click("form.login button[type=submit]")


def test_the_dashboard_refreshes_its_workers_and_its_bars_open_the_queue(site, page, settings):
    add_inspections(settings, 6)
    page.goto(f"{site}/login")
    log_in(page)
    page.goto(f"{site}/dashboard")
    assert page.inner_text("#workers-online") == "0"
    # a worker starts: the page's script shows it without a reload
    with redis.Redis.from_url(settings.redis_url) as r:
        r.set(f"{WORKER_KEY_PREFIX}celery@line-7", "{}", ex=60)
    page.wait_for_function(
        "() => document.getElementById('workers-online').textContent === '1'", timeout=20_000
    )
    assert "celery@line-7" in page.inner_text("#workers-list")
    assert page.inner_text("#waiting-count .count") == "6"

    page.locator("section.window").first.locator("a.bar-link", has_text="cam-1").click()
    page.wait_for_url(re.compile(r"camera=cam-1"))
    assert len(page.locator("[data-inspection-id]").all()) == 2


def test_stale_forms_in_the_browser(site, page, settings, screenshots):
    """A review typed, then the session ends (cookies cleared); then, logged in again
    in another tab, a second review whose token no longer matches: neither is lost.
    Without script, as the stale page and the login page work."""
    ids = add_inspections(settings, 2)
    context = page.context.browser.new_context(
        java_script_enabled=False, viewport={"width": 390, "height": 844}
    )
    tab = context.new_page()
    url = site
    tab.goto(f"{url}/login")
    log_in(tab)
    tab.goto(f"{url}/inspections/{ids[1]}")
    tab.fill("#comment", "a long scratch, 40 cm from the edge")
    context.clear_cookies()  # the session ends while the page is open
    tab.click("#false-alarm")
    assert tab.locator("form.login").is_visible()
    assert "Your session had ended" in tab.inner_text("main")
    log_in(tab)
    assert "You are logged in again" in tab.inner_text("h1")
    assert "a long scratch, 40 cm from the edge" in tab.inner_text("#kept-fields")
    tab.screenshot(path=str(screenshots / "stale-session.png"), full_page=True)
    tab.click("#submit-again")
    tab.wait_for_load_state()
    row = stored(settings, ids[1])
    assert (row.review_state, row.review_comment) == (
        "false_alarm",
        "a long scratch, 40 cm from the edge",
    )

    tab.goto(f"{url}/inspections/{ids[0]}")
    tab.fill("#comment", "checked under the lamp")
    other = context.new_page()  # another tab logs out and in: a new token
    other.set_viewport_size({"width": 1280, "height": 900})  # the menu open
    other.goto(f"{url}/dashboard")
    other.click("form.logout button[type=submit]")
    log_in(other)
    tab.click("#confirm")
    assert "The form had expired" in tab.inner_text("h1")
    assert "checked under the lamp" in tab.inner_text("#kept-fields")
    tab.screenshot(path=str(screenshots / "stale-form.png"), full_page=True)
    assert stored(settings, ids[0]).review_state == "pending"
    tab.click("#submit-again")
    tab.wait_for_load_state()
    row = stored(settings, ids[0])
    assert (row.review_state, row.review_comment) == ("confirmed", "checked under the lamp")
    context.close()
