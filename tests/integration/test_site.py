"""The supervisors' site against a real PostgreSQL database (Flask's test client):
roles, throttling, CSRF, the queue, reviews, references, thresholds and CSV (the JSON
API: test_api.py)."""

from __future__ import annotations

import base64
import csv
import io
import re
from datetime import UTC, datetime, timedelta

import psycopg
from PIL import Image
from sqlalchemy import func, select

from admin import create_app
from admin.auth import create_user
from core.blobs import BlobStore
from core.db import session_scope
from core.tables import Inspection, Reference, ThresholdChange, User
from core.thresholds import set_threshold
from tests.conftest import PG_ADMIN_DSN, csrf_token, login, png_bytes, sample_images
from tests.integration.conftest import add_inspections, logged_in


def test_login_is_throttled_after_repeated_failures(app):
    client = app.test_client()
    for _ in range(5):
        response = login(client, "sam", "wrong-password")
        assert b"Wrong user name or password" in response.data
    locked = login(client, "sam", "supervisor-password")
    assert locked.status_code == 429 and b"Too many failed logins" in locked.data
    # another user from another address is not locked out
    other = app.test_client()
    response = other.post(
        "/login",
        data={"csrf_token": csrf_token(other), "username": "ada", "password": "admin-password"},
        environ_base={"REMOTE_ADDR": "10.0.0.9"},
    )
    assert response.status_code == 302


def test_production_session_cookies_are_secure(monkeypatch, settings):
    from core.settings import get_settings

    monkeypatch.setenv("INSPECTION_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    get_settings.cache_clear()
    try:
        app = create_app({"DATABASE_URL": settings.database_url})
        assert app.config["SESSION_COOKIE_SECURE"] and app.config["SESSION_COOKIE_HTTPONLY"]
        assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
        assert app.config["SECRET_KEY"] == "s" * 40
    finally:
        get_settings.cache_clear()  # the next test reads its own environment again


def test_only_admins_manage_users_references_and_thresholds(app, settings):
    supervisor = logged_in(app, "sam", "supervisor-password")
    token = csrf_token(supervisor, "/inspections")
    for path in ("/users/", "/thresholds/"):
        assert supervisor.get(path).status_code == 403
    assert (
        supervisor.post(
            "/references/1/active", data={"csrf_token": token, "active": "0"}
        ).status_code
        == 403
    )
    assert (
        supervisor.post(
            "/users/", data={"csrf_token": token, "username": "x", "password": "long-enough-1"}
        ).status_code
        == 403
    )
    assert supervisor.get("/references/").status_code == 200  # looking is fine

    admin = logged_in(app, "ada", "admin-password")
    token = csrf_token(admin, "/references/")
    deactivate = {"csrf_token": token, "active": "0", "confirmed": "1"}
    assert admin.post("/references/1/active", data=deactivate).status_code == 302
    with session_scope(settings.database_url) as session:
        assert session.get(Reference, 1).active is False


def test_a_post_without_csrf_token_is_refused(app):
    client = logged_in(app, "ada", "admin-password")
    for path in (
        "/inspections/bulk",
        "/references/",
        "/thresholds/",
        "/users/",
        "/logout",
        "/compare",
    ):
        response = client.post(path, data={})
        assert response.status_code == 400, path
        assert b"CSRF" in response.data, path


def test_queue_filters_sorts_and_pages_by_keyset(app, settings):
    add_inspections(settings, 60)
    add_inspections(settings, 5, status="passed", label="ok-steel", camera="cam-x")
    client = logged_in(app, "sam", "supervisor-password")
    first = client.get("/inspections").get_data(as_text=True)
    ids = [int(i) for i in re.findall(r'data-inspection-id="(\d+)"', first)]
    assert len(ids) == 25 and ids == sorted(ids, reverse=True)  # newest first
    seen = set(ids)
    page = first
    while match := re.search(r'id="next-page" href="([^"]+)"', page):
        page = client.get(match.group(1).replace("&amp;", "&")).get_data(as_text=True)
        more = [int(i) for i in re.findall(r'data-inspection-id="(\d+)"', page)]
        assert not seen & set(more)
        seen |= set(more)
    assert len(seen) == 60  # every flagged row once, no passed ones

    camera = client.get("/inspections?camera=cam-1&status=flagged").get_data(as_text=True)
    assert camera.count('data-inspection-id="') == 20
    passed = client.get("/inspections?status=passed").get_data(as_text=True)
    assert passed.count('data-inspection-id="') == 5
    worst = client.get("/inspections?sort=dissimilar").get_data(as_text=True)
    values = [float(v) for v in re.findall(r"<td>(\d\.\d{4})</td>", worst)]
    assert values == sorted(values, reverse=True)
    since = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M")
    recent = client.get(f"/inspections?since={since}").get_data(as_text=True)
    assert 0 < recent.count('data-inspection-id="') <= 11


def test_a_labels_queue_by_dissimilarity_pages_in_order_through_its_index(app, settings):
    from sqlalchemy import text

    from admin.review_queue import QueueFilter, page_query
    from core.db import get_engine

    add_inspections(settings, 60)  # labelled "crazing" below distance 0.8, else "unknown"
    add_inspections(settings, 3, status="rejected", label="unreadable", dissimilarity=None)
    client = logged_in(app, "sam", "supervisor-password")
    page = client.get("/inspections?label=crazing&sort=dissimilar").get_data(as_text=True)
    values: list[float] = []
    while True:
        values += [float(v) for v in re.findall(r"<td>(\d\.\d{4})</td>", page)]
        match = re.search(r'id="next-page" href="([^"]+)"', page)
        if not match:
            break
        page = client.get(match.group(1).replace("&amp;", "&")).get_data(as_text=True)
    with session_scope(settings.database_url) as session:
        crazing = session.scalar(
            select(func.count()).where(
                Inspection.label == "crazing", Inspection.status == "flagged"
            )
        )
    assert 30 < crazing < 60 and len(values) == crazing  # every one, once
    assert values == sorted(values, reverse=True)

    # PostgreSQL can serve that page from the (status, label, dissimilarity, id)
    # index, without sorting: the queue's sort key is the index's expression.
    query = page_query(QueueFilter(label="crazing", sort="dissimilar"), None, 26)
    engine = get_engine(settings.database_url)
    compiled = query.compile(engine)  # with its bound parameters, as the page sends it
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        rows = conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
        plan = "\n".join(row[0] for row in rows)
    assert "ix_inspections_status_label_dissimilarity_id" in plan, plan
    assert "Sort" not in plan, plan


def test_review_records_who_and_when_and_moves_on(app, settings):
    ids = add_inspections(settings, 3)
    client = logged_in(app, "sam", "supervisor-password")
    token = csrf_token(client, f"/inspections/{ids[-1]}")
    response = client.post(
        f"/inspections/{ids[-1]}/review",
        data={"csrf_token": token, "action": "confirm", "then": "next", "comment": "clear crazing"},
    )
    assert response.headers["Location"].endswith(f"/inspections/{ids[-2]}")
    client.post(
        f"/inspections/{ids[-2]}/review",
        data={"csrf_token": token, "action": "relabel", "label": "scratches"},
    )
    client.post(
        f"/inspections/{ids[0]}/review", data={"csrf_token": token, "action": "false_alarm"}
    )
    with session_scope(settings.database_url) as session:
        rows = {r.id: r for r in session.scalars(select(Inspection))}
    assert rows[ids[-1]].review_state == "confirmed"
    assert rows[ids[-1]].review_comment == "clear crazing"
    assert (rows[ids[-2]].review_state, rows[ids[-2]].review_label) == ("relabeled", "scratches")
    assert rows[ids[0]].review_state == "false_alarm"
    for row in rows.values():
        assert row.reviewed_by == "sam" and row.reviewed_at is not None


def test_bulk_confirm_of_a_selection(app, settings):
    ids = add_inspections(settings, 6)
    client = logged_in(app, "sam", "supervisor-password")
    token = csrf_token(client, "/inspections")
    client.post(
        "/inspections/bulk",
        data={"csrf_token": token, "action": "confirm", "ids": [str(i) for i in ids[:4]]},
    )
    with session_scope(settings.database_url) as session:
        states = dict(session.execute(select(Inspection.id, Inspection.review_state)).all())
    assert [states[i] for i in ids] == ["confirmed"] * 4 + ["pending"] * 2


def test_use_an_inspection_as_a_reference(app, settings):
    ids = add_inspections(settings, 1)
    client = logged_in(app, "ada", "admin-password")
    token = csrf_token(client, f"/inspections/{ids[0]}")
    client.post(
        f"/references/from-inspection/{ids[0]}",
        data={
            "csrf_token": token,
            "label": "+new",
            "new_label": "new-defect",
            "create_label": "1",
            "kind": "defect",
        },
    )
    with session_scope(settings.database_url) as session:
        added = session.scalar(select(Reference).where(Reference.label == "new-defect"))
        assert added is not None and added.added_by == "ada"
        assert added.note == f"from inspection {ids[0]}"


def test_threshold_preview_save_and_audit(app, settings):
    client = logged_in(app, "ada", "admin-password")
    page = client.get("/thresholds/").get_data(as_text=True)
    version = re.search(r'id="model-version">([^<]+)<', page).group(1)
    # distances 0.10 ... 1.05 to a crazing reference, by this site's model and another
    add_inspections(settings, 20, model_version=version)
    add_inspections(settings, 20, model_version="texture_net-0123456789ab")
    token = csrf_token(client, "/thresholds/")
    preview = client.post(
        "/thresholds/",
        data={"csrf_token": token, "label": "crazing", "value": "0.5", "do": "preview"},
    )
    text = preview.get_data(as_text=True)
    changed = int(re.search(r'id="changed-count">(\d+)<', text).group(1))
    assert changed > 0 and "flagged crazing -&gt; flagged unknown" in text
    assert "Of the last 20 inspections by this model" in text  # not the other model's
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count(ThresholdChange.id))) == 0  # preview only
    saved = {"csrf_token": token, "label": "crazing", "do": "save", "confirmed": "1"}
    client.post("/thresholds/", data={**saved, "value": "0.5", "reason": "too many unknowns"})
    client.post("/thresholds/", data={**saved, "value": "", "reason": "back to the model's"})
    with session_scope(settings.database_url) as session:
        changes = session.scalars(select(ThresholdChange).order_by(ThresholdChange.id)).all()
    assert [(c.label, c.old_value, c.new_value, c.changed_by) for c in changes] == [
        ("crazing", None, 0.5, "ada"),
        ("crazing", 0.5, None, "ada"),
    ]
    assert {c.model_version for c in changes} == {version}

    # A setting made for another model is listed apart and changes nothing here.
    with session_scope(settings.database_url) as session:
        set_threshold(session, "texture_net-0123456789ab", "*", 0.01, "bob")
    page = client.get("/thresholds/").get_data(as_text=True)
    others = page.split('id="other-settings"')[1]
    assert "texture_net-0123456789ab" in others and "0.0100" in others
    assert "None: the default applies to every label." in page


def test_csv_export_follows_the_filters(app, settings):
    add_inspections(settings, 12)
    client = logged_in(app, "sam", "supervisor-password")
    response = client.get("/inspections.csv?camera=cam-2&status=flagged")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 4 and {r["camera"] for r in rows} == {"cam-2"}
    assert response.mimetype == "text/csv"


def idle_in_transaction(url: str) -> int:
    """Connections to the database of ``url`` left inside a transaction."""
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = %s AND state LIKE 'idle in transaction%%'",
            (url.rsplit("/", 1)[1],),
        ).fetchone()[0]


def test_csv_exports_hold_no_connection_and_the_site_keeps_working(app, settings, api_token):
    # Each export used to leave a connection idle in a transaction (its generator
    # reopened the request's session after teardown); about ten of them used up
    # the pool and every page, the API and login then failed.
    add_inspections(settings, 30)
    client = logged_in(app, "sam", "supervisor-password")
    for _ in range(20):
        response = client.get("/inspections.csv")
        assert response.status_code == 200
        assert len(response.get_data(as_text=True).splitlines()) == 31
        assert idle_in_transaction(settings.database_url) == 0
    # a client that stops reading half way leaves nothing open either
    partial = client.get("/inspections.csv", buffered=False)
    next(partial.response)
    partial.close()
    assert idle_in_transaction(settings.database_url) == 0
    assert logged_in(app, "ada", "admin-password").get("/dashboard").status_code == 200
    job = app.test_client().post(
        "/api/v1/jobs",
        headers={"Authorization": f"Bearer {api_token}"},
        json={"camera": "after-csv", "image_b64": base64.b64encode(b"x").decode()},
    )
    assert job.status_code == 202


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(app, settings):
    hostile = {
        "camera": '=HYPERLINK("http://evil.example","x")',
        "label": "+cmd|' /C calc'!A0",
        "review_comment": "@SUM(1+1)",
        "reviewed_by": "-2+3",
        "error": "\tindented",
        "review_label": "\rcarriage",
    }
    add_inspections(settings, 1, **hostile)
    client = logged_in(app, "sam", "supervisor-password")
    text = client.get("/inspections.csv?status=").get_data(as_text=True)
    (row,) = list(csv.DictReader(io.StringIO(text)))
    for column, value in hostile.items():
        assert row[column] == "'" + value, column
    assert float(row["dissimilarity"]) > 0  # numbers stay numbers


def test_dashboard_and_compare_render(app, settings):
    add_inspections(settings, 10)
    client = logged_in(app, "sam", "supervisor-password")
    page = client.get("/dashboard").get_data(as_text=True)
    assert "<svg" in page and "Last hour" in page and 'id="queue-length"' in page
    token = csrf_token(client, "/compare")
    a, b = sample_images()[0], sample_images()[1]
    response = client.post(
        "/compare",
        data={
            "csrf_token": token,
            "first": (io.BytesIO(a.read_bytes()), a.name),
            "second": (io.BytesIO(b.read_bytes()), b.name),
        },
        content_type="multipart/form-data",
    )
    text = response.get_data(as_text=True)
    assert re.search(r'id="dissimilarity">\d+\.\d{4}<', text)
    assert text.count("nearest-label") == 2


# -- what a security review found ------------------------------------------------------


def test_logout_and_a_new_password_end_every_session(app, settings):
    client = logged_in(app, "sam", "supervisor-password")
    copied = client.get_cookie("session").value  # an attacker's copy of the cookie
    client.post("/logout", data={"csrf_token": csrf_token(client, "/inspections")})
    thief = app.test_client()
    thief.set_cookie("session", copied)
    assert thief.get("/inspections").status_code == 302  # sent to log in

    client = logged_in(app, "sam", "supervisor-password")
    copied = client.get_cookie("session").value
    admin = logged_in(app, "ada", "admin-password")
    with session_scope(settings.database_url) as session:
        sam = session.scalar(select(User).where(User.username == "sam"))
    admin.post(
        f"/users/{sam.id}",
        data={"csrf_token": csrf_token(admin, "/users/"), "password": "a-new-password"},
    )
    thief = app.test_client()
    thief.set_cookie("session", copied)
    assert thief.get("/inspections").status_code == 302
    assert client.get("/inspections").status_code == 302  # sam logs in again
    assert logged_in(app, "sam", "a-new-password").get("/inspections").status_code == 200


def test_the_last_admin_cannot_be_removed(app, settings):
    admin = logged_in(app, "ada", "admin-password")
    with session_scope(settings.database_url) as session:
        ada = session.scalar(select(User).where(User.username == "ada"))
        create_user(session, "bob", "bob-password", "admin")
    demote = {"csrf_token": csrf_token(admin, "/users/"), "role": "supervisor"}
    page = admin.post(f"/users/{ada.id}", data=demote, follow_redirects=True)
    assert "ada updated" in page.get_data(as_text=True)  # bob is still an admin
    with session_scope(settings.database_url) as session:
        bob = session.scalar(select(User).where(User.username == "bob"))
    bob_admin = logged_in(app, "bob", "bob-password")
    token = csrf_token(bob_admin, "/users/")
    for change, refusal in (
        ({"role": "supervisor"}, "last active admin"),
        ({"active": "0"}, "cannot deactivate yourself"),  # only admins deactivate users
    ):
        page = bob_admin.post(
            f"/users/{bob.id}", data={"csrf_token": token, **change}, follow_redirects=True
        )
        assert refusal in page.get_data(as_text=True)
    with session_scope(settings.database_url) as session:
        bob = session.scalar(select(User).where(User.username == "bob"))
        assert bob.role == "admin" and bob.active


def test_a_failed_login_hashes_as_much_for_an_unknown_user(app, monkeypatch):
    # A known user's wrong password costs a password hash (about 100 ms); an
    # unknown user's cost nothing, so the time told which user names exist.
    import admin.auth

    checked: list[str] = []
    real_check = admin.auth.check_password_hash

    def counting_check(stored: str, password: str) -> bool:
        checked.append(stored)
        return real_check(stored, password)

    monkeypatch.setattr(admin.auth, "check_password_hash", counting_check)
    for username in ("sam", "nobody-at-all"):
        client = app.test_client()
        response = login(client, username, "wrong-password")
        assert b"Wrong user name or password" in response.data
    assert len(checked) == 2 and checked[1] == admin.auth.DUMMY_HASH


def test_bad_values_get_a_clear_400_not_a_500(app, settings, api_token):
    add_inspections(settings, 3)
    client = logged_in(app, "ada", "admin-password")
    auth = {"Authorization": f"Bearer {api_token}"}
    huge_cursor = base64.urlsafe_b64encode(b"2026-01-01T00:00:00~" + b"9" * 40).decode()
    for query in (
        "camera=cam%00-1",
        "label=crazing%00",
        "since=0001-01-01T00:00:00%2B14:00",
        "until=9999-12-31T23:59:59-14:00",
        f"after={huge_cursor}",
        "after=" + base64.urlsafe_b64encode(b"inf~1").decode() + "&sort=dissimilar",
        "label=" + "x" * 5000,
    ):
        assert client.get(f"/inspections?{query}").status_code == 200, query
        assert client.get(f"/inspections.csv?{query}").status_code == 200, query
        assert client.get(f"/api/v1/inspections?{query}", headers=auth).status_code == 200, query
    ids = add_inspections(settings, 1)
    token = csrf_token(client, f"/inspections/{ids[0]}")
    long_label = client.post(
        f"/inspections/{ids[0]}/review",
        data={"csrf_token": token, "action": "relabel", "label": "x" * 300},
        follow_redirects=True,
    )
    assert long_label.status_code == 200 and "at most 80" in long_label.get_data(as_text=True)
    api_label = client.post(
        f"/api/v1/inspections/{ids[0]}/review",
        headers=auth,
        json={"action": "relabel", "label": "x" * 300},
    )
    assert api_label.status_code == 400 and "at most 80" in api_label.get_json()["error"]
    long_user = client.post(
        "/users/",
        data={
            "csrf_token": csrf_token(client, "/users/"),
            "username": "u" * 300,
            "password": "long-enough",
            "role": "supervisor",
        },
        follow_redirects=True,
    )
    assert "at most 80" in long_user.get_data(as_text=True)
    nul_login = login(app.test_client(), "nobody\x00", "x")
    assert b"Wrong user name or password" in nul_login.data
    too_big = app.config["MAX_CONTENT_LENGTH"] + 1
    upload = client.post(
        "/api/v1/jobs",
        headers={**auth, "Content-Type": "application/json"},
        data=b"{" + b" " * too_big + b"}",
    )
    assert upload.status_code == 413 and "error" in upload.get_json()
    page = client.post("/compare", data=b"x" * too_big, content_type="multipart/form-data")
    assert page.status_code == 413 and "larger than the site accepts" in page.get_data(as_text=True)


def test_an_image_the_worker_refused_as_too_large_is_not_decoded_to_serve(app, settings):
    # The site applies the worker's pixel limit (here 1 megapixel) before decoding a
    # stored image: a 169-megapixel upload cost 3 s and 1.2 GiB per request.
    app.config["MAX_IMAGE_PIXELS"] = 1_000_000
    key = BlobStore(settings.blob_dir).put(png_bytes(Image.new("L", (2000, 1000))))
    ids = add_inspections(settings, 1, image_key=key, status="rejected")
    client = logged_in(app, "sam", "supervisor-password")
    for path in (f"/images/{key}", f"/images/{key}/thumb"):
        assert client.get(path).status_code == 415
    assert client.get(f"/inspections/{ids[0]}").status_code == 200
    small = BlobStore(settings.blob_dir).put(png_bytes(Image.new("L", (1000, 1000))))
    assert client.get(f"/images/{small}").status_code == 200
