"""Admin pages that do not accept mistakes silently (#29, item 7), through Flask's test
client on a real PostgreSQL database, and in a real Chromium for the page's own
confirmation and its near-duplicate warning: labels chosen from the list, a
deactivated label out of the filters, confirmations before deactivating, revoking
and saving a threshold, thresholds range-checked with a reason, and the plant's
time zone on the pages (UTC in the database, the CSV and the API)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from admin import create_app
from admin.auth import create_user
from admin.tokens import new_api_token
from core.db import session_scope
from core.tables import ApiToken, Label, Reference, ThresholdChange, User
from tests.conftest import SAMPLE, csrf_token, sample_images, seed_references
from tests.integration.browser import admin_server
from tests.integration.conftest import add_inspections, logged_in, make_token
from tests.integration.test_camera_thresholds import CAMERA, add_good_frame, add_memory


def upload(client, token: str, **fields: str):
    """Post the References page's upload form with a sample image."""
    data = {"csrf_token": token, "kind": "defect", "note": "", **fields}
    data["image"] = (io.BytesIO(sample_images()[-1].read_bytes()), "sample.png")
    return client.post("/references/", data=data, content_type="multipart/form-data")


def labelled(settings, label: str) -> tuple[bool, int]:
    """Whether ``label`` is in the list, and how many references carry it."""
    with session_scope(settings.database_url) as session:
        listed = session.get(Label, label) is not None
        count = session.scalar(select(func.count(Reference.id)).where(Reference.label == label))
        return listed, count or 0


def options(page: str, select_id: str | None = None) -> list[str]:
    """The option texts of a page's select: ``select_id``'s, else the first named label."""
    pattern = rf'<select[^>]*id="{select_id}"' if select_id else r'<select name="label"'
    start = re.search(pattern, page)
    assert start, f"no select {select_id or 'label'} on the page"
    body = page[start.end() : page.index("</select>", start.end())]
    return [text.strip() for text in re.findall(r"<option[^>]*>([^<]*)</option>", body)]


def test_a_new_label_like_an_existing_one_is_added_only_once_confirmed(app, settings):
    client = logged_in(app, "ada", "admin-password")
    token = csrf_token(client, "/references/")
    similar = client.get("/references/labels/similar?name=Scratch").get_json()
    assert similar == {"name": "Scratch", "exists": False, "similar": ["scratches"]}

    # a new label must be asked for explicitly: typed alone it is refused
    refused = upload(client, token, label="+new", new_label="dents")
    assert refused.status_code == 302
    assert labelled(settings, "dents") == (False, 0)
    # a label that is not in the list is not chosen by naming it
    refused = upload(client, token, label="dents")
    assert refused.status_code == 302 and labelled(settings, "dents") == (False, 0)

    new = {"label": "+new", "new_label": "Scratch", "create_label": "1"}
    asked = upload(client, token, **new)
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'id="confirm-page"' in page
    assert "&#39;Scratch&#39; looks like the existing label &#39;scratches&#39;" in page
    assert "Choose the image again" in page  # a page cannot keep the file
    assert labelled(settings, "Scratch") == (False, 0)

    # confirmed: the new label is created with the reference
    created = upload(client, token, **new, confirm_similar="Scratch", confirmed="1")
    assert created.status_code == 302
    assert labelled(settings, "Scratch") == (True, 1)
    assert labelled(settings, "scratches")[1] == 1  # the seeded one, untouched

    # a new label that looks like no other is created at once
    assert upload(client, token, label="+new", new_label="dents", create_label="1").status_code
    assert labelled(settings, "dents") == (True, 1)
    with session_scope(settings.database_url) as session:
        assert session.get(Label, "dents").created_by == "ada"


def test_the_near_duplicate_page_can_choose_the_existing_label(app, settings):
    client = logged_in(app, "ada", "admin-password")
    token = csrf_token(client, "/references/")
    asked = upload(client, token, label="+new", new_label="Scratches ", create_label="1")
    assert "Use the existing label &#39;scratches&#39;" in asked.get_data(as_text=True)
    # the radio button of the page sends label=scratches in place of "+new"
    chosen = upload(
        client,
        token,
        label="scratches",
        new_label="Scratches",
        create_label="1",
        confirm_similar="Scratches",
    )
    assert chosen.status_code == 302
    assert labelled(settings, "scratches") == (True, 2)
    assert labelled(settings, "Scratches") == (False, 0)


def test_a_deactivated_label_leaves_the_filter_and_the_relabel_list(app, settings):
    ids = add_inspections(settings, 2)
    admin = logged_in(app, "ada", "admin-password")
    token = csrf_token(admin, "/references/")
    assert "patches" in options(admin.get("/inspections").get_data(as_text=True))

    change = {"csrf_token": token, "name": "patches", "active": "0"}
    asked = admin.post("/references/labels/active", data=change)
    assert asked.status_code == 200 and "Deactivate the label" in asked.get_data(as_text=True)
    with session_scope(settings.database_url) as session:
        assert session.get(Label, "patches").active  # not without a yes
    done = admin.post("/references/labels/active", data={**change, "confirmed": "1"})
    assert done.status_code == 302

    supervisor = logged_in(app, "sam", "supervisor-password")
    queue = supervisor.get("/inspections").get_data(as_text=True)
    assert "patches" not in options(queue) and "crazing" in options(queue)
    assert "unknown" in options(queue)  # the line's name for an unmatched defect stays
    detail = supervisor.get(f"/inspections/{ids[0]}").get_data(as_text=True)
    assert "patches" not in options(detail, "relabel-label")
    assert "crazing" in options(detail, "relabel-label")
    references = admin.get("/references/").get_data(as_text=True)
    assert "patches" not in options(references, "reference-label")
    # nor can a form name it
    refused = upload(admin, token, label="patches")
    assert labelled(settings, "patches") == (True, 1)
    flashed = admin.get(refused.headers["Location"]).get_data(as_text=True)
    assert "the label &#39;patches&#39; is deactivated" in flashed

    # activating again needs no confirmation
    admin.post("/references/labels/active", data={**change, "active": "1"})
    assert "patches" in options(supervisor.get("/inspections").get_data(as_text=True))


def test_deactivating_and_revoking_change_nothing_until_confirmed(app, settings):
    make_token(app, "mes-line-3", "read")
    admin = logged_in(app, "ada", "admin-password")
    token = csrf_token(admin, "/users/")
    with session_scope(settings.database_url) as session:
        token_id = session.scalar(select(ApiToken.id).where(ApiToken.name == "mes-line-3"))
        sam_id = session.scalar(select(User.id).where(User.username == "sam"))

    def states() -> tuple[bool, bool, bool]:
        with session_scope(settings.database_url) as session:
            return (
                session.get(ApiToken, token_id).active,
                session.get(User, sam_id).active,
                session.get(Reference, 1).active,
            )

    posts = (
        (f"/users/tokens/{token_id}/revoke", {}, "Revoke the token mes-line-3?"),
        (f"/users/{sam_id}", {"active": "0", "role": "supervisor"}, "Deactivate sam?"),
        ("/references/1/active", {"active": "0"}, "Deactivate reference 1?"),
    )
    for path, fields, title in posts:
        asked = admin.post(path, data={"csrf_token": token, **fields})
        page = asked.get_data(as_text=True)
        assert asked.status_code == 200 and title in page, path
        # the page's button sends the same form again, confirmed
        assert re.search(r'name="confirmed" value="1"', page), path
        assert states() == (True, True, True), path
    for path, fields, _ in posts:
        done = admin.post(path, data={"csrf_token": token, **fields, "confirmed": "1"})
        assert done.status_code == 302, path
    assert states() == (False, False, False)
    # changing a role, not deactivating, asks nothing
    with session_scope(settings.database_url) as session:
        create_user(session, "cid", "cid-password", "supervisor")
        cid_id = session.scalar(select(User.id).where(User.username == "cid"))
    promoted = admin.post(f"/users/{cid_id}", data={"csrf_token": token, "role": "admin"})
    assert promoted.status_code == 302


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("-1", "a threshold must be a distance above 0"),
        ("nan", "a threshold must be a distance above 0"),
        ("inf", "a threshold must be a distance above 0"),
        ("0", "a threshold must be a distance above 0"),
        ("1e6", "more than 10 times the calibrated"),
        ("wide", "not a number"),
    ],
)
def test_a_threshold_out_of_range_is_refused(app, settings, value, words):
    client = logged_in(app, "ada", "admin-password")
    token = csrf_token(client, "/thresholds/")
    for do in ("preview", "save"):
        response = client.post(
            "/thresholds/",
            data={"csrf_token": token, "label": "*", "value": value, "do": do, "reason": "r"},
        )
        assert response.status_code == 400, do
        assert words in response.get_data(as_text=True), do
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count(ThresholdChange.id))) == 0


def test_a_threshold_change_needs_a_reason_and_a_yes(app, settings):
    client = logged_in(app, "ada", "admin-password")
    token = csrf_token(client, "/thresholds/")
    save = {"csrf_token": token, "label": "crazing", "value": "0.5", "do": "save"}

    def changes() -> list[tuple[str, float | None, str | None]]:
        with session_scope(settings.database_url) as session:
            rows = session.scalars(select(ThresholdChange).order_by(ThresholdChange.id))
            return [(c.label, c.new_value, c.reason) for c in rows]

    no_reason = client.post("/thresholds/", data={**save, "reason": "  ", "confirmed": "1"})
    assert no_reason.status_code == 400
    assert "give a reason for the change" in no_reason.get_data(as_text=True)
    asked = client.post("/thresholds/", data={**save, "reason": "ticket 4711: dust"})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Save the threshold for &#39;crazing&#39;?" in page
    assert "not set -&gt; 0.5000" in page and "Reason: ticket 4711: dust" in page
    assert changes() == []
    saved = client.post(
        "/thresholds/", data={**save, "reason": "ticket 4711:\n dust", "confirmed": "1"}
    )
    assert saved.status_code == 302
    assert changes() == [("crazing", 0.5, "ticket 4711: dust")]
    history = client.get("/thresholds/").get_data(as_text=True).split('id="threshold-changes"')[1]
    assert '<td class="reason">ticket 4711: dust</td>' in history

    # a camera's frame threshold too, and never more than 10x its calibrated one
    version = re.search(r'id="frame-model-version">([^<]+)<', client.get("/thresholds/").text)
    add_good_frame(settings, CAMERA)
    add_memory(settings, CAMERA, version.group(1), 0.5)
    camera = {"csrf_token": token, "camera": CAMERA, "do": "save", "confirmed": "1"}
    too_high = client.post("/thresholds/camera", data={**camera, "value": "5.1", "reason": "x"})
    assert too_high.status_code == 400
    assert "more than 10 times the camera&#39;s calibrated 0.5000" in too_high.text
    unexplained = client.post("/thresholds/camera", data={**camera, "value": "0.9"})
    assert unexplained.status_code == 400 and "give a reason" in unexplained.text
    client.post("/thresholds/camera", data={**camera, "value": "0.9", "reason": "new light"})
    assert changes()[-1] == ("*", 0.9, "new light")


@pytest.fixture
def berlin_app(app, settings):
    """The site with PLANT_TIMEZONE=Europe/Berlin (one hour ahead of UTC in winter)."""
    return create_app({**app.config, "PLANT_TIMEZONE": "Europe/Berlin"})


def test_pages_show_plant_time_and_read_typed_times_as_plant_time(berlin_app, settings):
    winter = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 10, 0, tzinfo=UTC)
    (first,) = add_inspections(settings, 1, processed_at=winter, received_at=winter)
    second = add_inspections(settings, 1, processed_at=summer, received_at=summer)[-1]
    client = logged_in(berlin_app, "sam", "supervisor-password")
    detail = client.get(f"/inspections/{first}").get_data(as_text=True)
    assert '<dd id="processed-at">2026-01-15 11:00:00 CET</dd>' in detail
    summer_page = client.get(f"/inspections/{second}").get_data(as_text=True)
    assert '<dd id="processed-at">2026-07-15 12:00:00 CEST</dd>' in summer_page
    queue = client.get("/inspections").get_data(as_text=True)
    assert "2026-01-15 11:00:00 CET" in queue and "Europe/Berlin" in queue

    def listed(query: str) -> set[int]:
        page = client.get(f"/inspections?{query}").get_data(as_text=True)
        return {int(i) for i in re.findall(r'data-inspection-id="(\d+)"', page)}

    # 10:30 in Berlin is 09:30 UTC: the 10:00 UTC row is after it (read as UTC it is not)
    assert first in listed("since=2026-01-15T10:30")
    assert first not in listed("since=2026-01-15T11:30")
    assert first in listed("until=2026-01-15T11:30") and second not in listed(
        "until=2026-01-15T11:30"
    )
    # an offset typed with the time is taken as it is
    assert first not in listed("since=2026-01-15T10:30%2B00:00")

    # the CSV and the API keep UTC
    export = client.get("/inspections.csv?since=2026-01-15T10:30").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(export)))
    assert [row["processed_at"] for row in rows if row["id"] == str(first)] == [
        "2026-01-15T10:00:00+00:00"
    ]
    auth = {"Authorization": f"Bearer {make_token(berlin_app, 'mes', 'read')}"}
    api = client.get("/api/v1/inspections?since=2026-01-15T09:30", headers=auth).get_json()
    assert first in {item["id"] for item in api["items"]}
    api = client.get("/api/v1/inspections?since=2026-01-15T10:30", headers=auth).get_json()
    assert first not in {item["id"] for item in api["items"]}


# -- in the browser ------------------------------------------------------------------


@pytest.fixture
def site(settings, tmp_path) -> Iterator[str]:
    seed_references(settings)
    with session_scope(settings.database_url) as session:
        create_user(session, "ada", "admin-password", "admin")
    with admin_server(settings, tmp_path / "admin.log") as url:
        yield url


def test_the_page_asks_before_revoking_and_before_a_near_duplicate_label(
    site, page, settings, screenshots
):
    with session_scope(settings.database_url) as session:
        new_api_token(session, "camera-9", "ada", ["submit"])
    page.goto(f"{site}/login")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", "admin-password")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/inspections"))

    def token_active() -> bool:
        with session_scope(settings.database_url) as session:
            return session.scalar(select(ApiToken.active).where(ApiToken.name == "camera-9"))

    # revoking: the browser asks; "Cancel" sends nothing, "OK" revokes
    page.goto(f"{site}/users/")
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    revoke = page.locator("form[data-confirm] button", has_text="Revoke")
    revoke.click()
    assert asked and "Revoke the token camera-9?" in asked[0]
    assert token_active() and page.url.endswith("/users/")
    page.once("dialog", lambda dialog: dialog.accept())
    revoke.click()
    page.wait_for_selector(".flash.info")
    assert "revoked" in page.inner_text(".flash.info") and not token_active()

    # a new label like an existing one: warned while typing, sent only once ticked
    page.goto(f"{site}/references/")
    assert page.locator("#reference-label-new").is_hidden()
    page.set_input_files("input[name=image]", str(sorted((SAMPLE / "scratches").glob("*"))[1]))
    page.select_option("#reference-label", "+new")
    page.fill("#reference-label-new", "Scratch")
    page.check("#reference-label-create")
    warning = page.locator("#reference-label-similar")
    warning.wait_for(state="visible")
    assert "“scratches”" in warning.inner_text()
    page.screenshot(path=str(screenshots / "label-warning.png"), full_page=True)
    page.click("#add-reference")
    assert page.evaluate("document.getElementById('upload').checkValidity()") is False
    assert labelled(settings, "Scratch") == (False, 0) and page.url.endswith("/references/")
    page.check("#reference-label-confirm-similar")
    page.click("#add-reference")
    page.wait_for_selector(".flash.info")
    assert labelled(settings, "Scratch") == (True, 1)

    # the label choice and the Labels section fit a phone without sideways scrolling
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{site}/references/")
    page.select_option("#reference-label", "+new")
    page.fill("#reference-label-new", "Scratchy")
    page.locator("#reference-label-similar").wait_for(state="visible")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.locator("#labels .label-row").count() == 7  # the six seeded and Scratch
    page.screenshot(path=str(screenshots / "label-warning-390.png"), full_page=True)
