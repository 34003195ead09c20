"""The supervisors' site against a real PostgreSQL database (Flask's test client):
roles, throttling, CSRF, the queue, reviews, references, thresholds, CSV and the API."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis
from PIL import Image
from sqlalchemy import func, select

from admin import create_app
from admin.auth import create_user
from core.blobs import BlobStore
from core.db import session_scope
from core.jobs import QUEUE_NAME, InspectJob
from core.references import seed_from_folder
from core.results import insert_inspections
from core.tables import Inspection, Reference, ThresholdChange, User
from core.thresholds import set_threshold
from tests.conftest import PG_ADMIN_DSN, SAMPLE, csrf_token, login, png_bytes, sample_images
from worker.inspection import base_row


@pytest.fixture
def app(settings):
    with session_scope(settings.database_url) as session:
        seed_from_folder(session, BlobStore(settings.blob_dir), SAMPLE, "test")
        create_user(session, "ada", "admin-password", "admin")
        create_user(session, "sam", "supervisor-password", "supervisor")
    return create_app(
        {
            "DATABASE_URL": settings.database_url,
            "BLOB_DIR": str(settings.blob_dir),
            "REDIS_URL": settings.redis_url,
            "SECRET_KEY": "test",
        }
    )


def add_inspections(settings, count: int, **overrides) -> list[int]:
    """Rows as a worker writes them, with real stored images."""
    store = BlobStore(settings.blob_dir)
    key = store.put(sample_images()[5].read_bytes())
    start = datetime.now(UTC) - timedelta(minutes=count)
    rows = []
    for i in range(count):
        distance = 0.1 + i / count
        values = dict(
            job_id=str(uuid.uuid4()),
            camera=f"cam-{i % 3}",
            status="flagged",
            label="crazing" if distance < 0.8 else "unknown",
            dissimilarity=distance,
            nearest_reference_id=1,
            threshold=0.8,
            model_version="test",
            image_key=key,
            distances=[
                {"reference_id": 1, "label": "crazing", "kind": "defect", "distance": distance},
                {"reference_id": 2, "label": "inclusion", "kind": "defect", "distance": 1.5},
            ],
            received_at=start + timedelta(minutes=i),
            processed_at=start + timedelta(minutes=i),
        )
        values.update(overrides)
        rows.append(base_row(**values))
    with session_scope(settings.database_url) as session:
        insert_inspections(session, rows)
        return list(session.scalars(select(Inspection.id).order_by(Inspection.id)))


def logged_in(app, user: str, password: str):
    client = app.test_client()
    assert login(client, user, password).status_code == 302
    return client


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
    assert (
        admin.post("/references/1/active", data={"csrf_token": token, "active": "0"}).status_code
        == 302
    )
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

    from admin.queue import QueueFilter, page_query
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
        data={"csrf_token": token, "label": "new-defect", "kind": "defect"},
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
    client.post(
        "/thresholds/", data={"csrf_token": token, "label": "crazing", "value": "0.5", "do": "save"}
    )
    client.post(
        "/thresholds/", data={"csrf_token": token, "label": "crazing", "value": "", "do": "save"}
    )
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


# -- the JSON API ----------------------------------------------------------------------


def make_token(app, name: str, *scopes: str) -> str:
    args = ["create-token", name, *(arg for scope in scopes for arg in ("--scope", scope))]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    return result.output.strip()


@pytest.fixture
def api_token(app):
    return make_token(app, "mes-line-3", "submit", "read", "review", "metrics")


def test_the_api_refuses_a_missing_or_wrong_token(app, api_token):
    client = app.test_client()
    for path in ("/api/v1/inspections", "/api/v1/inspections/1", "/api/v1/openapi.json"):
        assert client.get(path).status_code == 401
        bad = client.get(path, headers={"Authorization": "Bearer si_wrong"})
        assert bad.status_code == 401 and "wrong" in bad.get_json()["error"]
    assert client.post("/api/v1/jobs", json={}).status_code == 401
    ok = client.get("/api/v1/inspections", headers={"Authorization": f"Bearer {api_token}"})
    assert ok.status_code == 200


def test_the_api_lists_fetches_and_reviews(app, settings, api_token):
    ids = add_inspections(settings, 7)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {api_token}"}
    page = client.get("/api/v1/inspections?limit=5", headers=auth).get_json()
    assert len(page["items"]) == 5 and page["next"]
    rest = client.get(f"/api/v1/inspections?limit=5&after={page['next']}", headers=auth)
    assert len(rest.get_json()["items"]) == 2
    one = client.get(f"/api/v1/inspections/{ids[0]}", headers=auth).get_json()
    assert one["job_id"] and one["distances"] and one["review"]["state"] == "pending"
    reviewed = client.post(
        f"/api/v1/inspections/{ids[0]}/review",
        headers=auth,
        json={"action": "relabel", "label": "scratches"},
    ).get_json()
    assert reviewed["review"]["state"] == "relabeled"
    assert reviewed["review"]["by"] == "api:mes-line-3"
    image = client.get(one["image_url"], headers=auth)  # the image, with the token alone
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert (
        client.post(
            f"/api/v1/inspections/{ids[0]}/review", headers=auth, json={"action": "explode"}
        ).status_code
        == 400
    )


def test_the_api_enqueues_jobs_like_the_producer(app, settings, api_token):
    client = app.test_client()
    auth = {"Authorization": f"Bearer {api_token}"}
    image = sample_images()[2].read_bytes()
    as_json = client.post(
        "/api/v1/jobs",
        headers=auth,
        json={"camera": "http-cam", "image_b64": base64.b64encode(image).decode()},
    )
    assert as_json.status_code == 202
    as_form = client.post(
        "/api/v1/jobs",
        headers=auth,
        data={"camera": "http-cam", "image": (io.BytesIO(image), "a.png")},
        content_type="multipart/form-data",
    )
    assert as_form.status_code == 202
    bad = client.post("/api/v1/jobs", headers=auth, json={"camera": "", "image_b64": "AAAA"})
    assert bad.status_code == 400 and "camera" in bad.get_json()["error"]
    queued = redis.Redis.from_url(settings.redis_url).lrange(QUEUE_NAME, 0, -1)
    assert len(queued) == 2
    for raw in queued:
        kwargs = json.loads(base64.b64decode(json.loads(raw)["body"]))[1]
        job = InspectJob.from_message(kwargs)
        assert job.camera == "http-cam" and job.meta["source"] == "http"
    job_ids = {as_json.get_json()["job_id"], as_form.get_json()["job_id"]}
    assert job_ids == {json.loads(raw)["headers"]["id"] for raw in queued}


def test_the_openapi_description_names_every_api_route(app, api_token):
    spec = (
        app.test_client()
        .get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {api_token}"})
        .get_json()
    )
    assert spec["openapi"].startswith("3.")
    documented = {path.replace("{id}", "<int:inspection_id>") for path in spec["paths"]}
    routes = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")}
    assert routes == documented


def test_admin_metrics_need_a_token_and_count_requests(app, api_token):
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    client.get("/login")
    body = client.get("/metrics", headers={"Authorization": f"Bearer {api_token}"})
    text = body.get_data(as_text=True)
    assert body.status_code == 200
    assert 'admin_requests_total{endpoint="auth.login",method="GET",status="200"}' in text
    assert "inspection_queue_length 0.0" in text


# -- what a security review found ------------------------------------------------------


def test_tokens_may_do_only_what_their_scopes_say(app, settings):
    ids = add_inspections(settings, 2)
    camera = {"Authorization": f"Bearer {make_token(app, 'camera-7', 'submit')}"}
    reader = {"Authorization": f"Bearer {make_token(app, 'dashboard', 'read')}"}
    client = app.test_client()
    job = {"camera": "line-7", "image_b64": base64.b64encode(b"x").decode()}
    assert client.post("/api/v1/jobs", headers=camera, json=job).status_code == 202
    for method, path, body in (
        ("get", "/api/v1/inspections", None),
        ("get", f"/api/v1/inspections/{ids[0]}", None),
        ("post", f"/api/v1/inspections/{ids[0]}/review", {"action": "confirm"}),
        ("get", "/metrics", None),
    ):
        refused = getattr(client, method)(path, headers=camera, json=body)
        assert refused.status_code == 403, path
        assert "camera-7" in refused.get_json()["error"]
    image = client.get(f"/images/{Inspection_image_key(settings)}", headers=camera)
    assert image.status_code == 403
    assert client.get("/api/v1/inspections", headers=reader).status_code == 200
    assert client.post("/api/v1/jobs", headers=reader, json=job).status_code == 403
    refused = client.post(
        f"/api/v1/inspections/{ids[0]}/review", headers=reader, json={"action": "confirm"}
    )
    assert refused.status_code == 403
    # a token needs at least one scope, and only known ones
    assert app.test_cli_runner().invoke(args=["create-token", "none"]).exit_code != 0
    bad = app.test_cli_runner().invoke(args=["create-token", "x", "--scope", "admin"])
    assert bad.exit_code != 0


def Inspection_image_key(settings) -> str:
    with session_scope(settings.database_url) as session:
        return session.scalar(select(Inspection.image_key).limit(1))


def test_a_review_through_the_api_is_signed_by_its_token(app, settings):
    ids = add_inspections(settings, 1)
    mes = {"Authorization": f"Bearer {make_token(app, 'mes', 'review', 'read')}"}
    reviewed = app.test_client().post(
        f"/api/v1/inspections/{ids[0]}/review",
        headers=mes,
        json={"action": "confirm", "reviewer": "ada"},  # ada is an admin
    )
    assert reviewed.status_code == 200
    assert reviewed.get_json()["review"]["by"] == "api:mes for ada"


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
