"""The JSON API (``/api/v1``) against a real PostgreSQL database and Redis: tokens and
their scopes, what each endpoint does, and its OpenAPI document: valid, naming every
route, and agreeing with every response the handlers send."""

from __future__ import annotations

import base64
import io
import json
import uuid
from typing import get_args

import redis
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_spec_validator import validate as validate_openapi_document
from PIL import Image
from redis import RedisError
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from admin import api_schemas as schemas
from admin.api import ENDPOINT_SCOPES
from admin.openapi import openapi_path
from admin.review_queue import SORTS
from core.blobs import BlobStore
from core.db import session_scope
from core.jobs import QUEUE_NAME, InspectJob
from core.tables import REVIEW_STATES, STATUSES, Finding, Inspection
from tests.conftest import png_bytes, sample_images
from tests.integration.conftest import add_inspections, logged_in, make_token


def check_against(openapi: OpenAPI, response) -> None:
    """Raise unless ``response`` is one the document lists for its request: its status,
    its content type and a body that fits the schema (no field more, none missing)."""
    sent = response.request
    # the operation is found from the method and the URL; the body was read already
    request = Request(
        EnvironBuilder(
            method=sent.method, path=sent.path, query_string=sent.query_string.decode()
        ).get_environ()
    )
    openapi.validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))


def served_document(app, token: str) -> dict:
    response = app.test_client().get(
        "/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    return response.get_json()


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


def test_a_request_that_does_not_fit_its_model_gets_a_400_that_says_why(app, api_token):
    auth = {"Authorization": f"Bearer {api_token}"}
    client = app.test_client()
    for method, path, kwargs, words in (
        ("get", "/api/v1/inspections?limit=many", {}, "limit"),
        ("get", "/api/v1/inspections?status=lost", {}, "status"),
        ("post", "/api/v1/jobs", {"json": {"camera": "c"}}, "'image_b64' is required"),
        ("post", "/api/v1/jobs", {"json": [1]}, "the body"),
        ("post", "/api/v1/jobs", {"data": {"camera": "c", "image": "text"}}, "as a file"),
        ("post", "/api/v1/inspections/1/review", {"json": {}}, "'action' is required"),
    ):
        response = getattr(client, method)(path, headers=auth, **kwargs)
        assert response.status_code == 400, path
        assert set(response.get_json()) == {"error"} and words in response.get_json()["error"]


def test_admin_metrics_need_a_token_and_count_requests(app, api_token):
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    client.get("/login")
    body = client.get("/metrics", headers={"Authorization": f"Bearer {api_token}"})
    text = body.get_data(as_text=True)
    assert body.status_code == 200
    assert 'admin_requests_total{endpoint="auth.login",method="GET",status="200"}' in text
    assert "inspection_queue_length 0.0" in text
    assert "inspection_lost_workers 0.0" in text and "inspection_restored_jobs 0.0" in text


# -- the OpenAPI document ----------------------------------------------------------------


def test_the_openapi_description_names_every_api_route(app, api_token):
    spec = served_document(app, api_token)
    assert spec["openapi"].startswith("3.")
    # routes as OpenAPI writes them: /a/<int:id> is /a/{id}
    documented = set(spec["paths"])
    routes = {
        openapi_path(rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
    }
    assert routes == documented
    # and every method of every route, no more
    operations = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    methods = {
        (openapi_path(rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert methods == operations


def test_the_openapi_document_is_valid_and_says_who_may_do_what(app, api_token):
    spec = served_document(app, api_token)
    validate_openapi_document(spec)  # raises on any departure from OpenAPI 3.1
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    endpoints = {
        openapi_path(rule.rule): rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
    }
    for path, item in spec["paths"].items():
        for operation in item.values():
            if endpoints[path] == "api.spec":  # the document itself
                assert operation["security"] == [{"bearer": []}, {"session": []}]
            else:
                scope = ENDPOINT_SCOPES[endpoints[path]]
                assert operation["security"] == [{"bearer": [scope]}]
                assert f"`{scope}`" in operation["description"]
                assert {"401", "403"} <= set(operation["responses"])
    jobs = spec["paths"]["/api/v1/jobs"]["post"]
    assert set(jobs["responses"]) == {"202", "400", "401", "403", "413", "503"}
    assert set(jobs["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    one = spec["paths"]["/api/v1/inspections/{inspection_id}"]["get"]
    assert set(one["responses"]) == {"200", "401", "403", "404"}
    # any session may read it too, as a supervisor's browser does
    session = logged_in(app, "sam", "supervisor-password")
    assert session.get("/api/v1/openapi.json").get_json() == spec


def test_the_models_allow_what_the_tables_and_the_queue_do():
    assert get_args(schemas.Status) == STATUSES
    assert get_args(schemas.ReviewState) == REVIEW_STATES
    assert get_args(schemas.Sort) == tuple(SORTS)


def test_every_response_agrees_with_the_document(app, settings, api_token, monkeypatch):
    # A field a handler sends that the document lacks (or the other way round), a
    # status it does not list, or a value of another type fails here.
    ids = add_inspections(settings, 3)
    spec = served_document(app, api_token)
    openapi = OpenAPI.from_dict(spec)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {api_token}"}
    camera = {"Authorization": f"Bearer {make_token(app, 'camera-7', 'submit')}"}
    image = sample_images()[2].read_bytes()
    too_big = app.config["MAX_CONTENT_LENGTH"] + 1
    calls = [
        ("get", "/api/v1/inspections?status=&limit=2", auth, {}, 200),
        ("get", "/api/v1/inspections?limit=x", auth, {}, 400),
        ("get", f"/api/v1/inspections/{ids[0]}", auth, {}, 200),
        ("get", "/api/v1/inspections/999999", auth, {}, 404),
        ("get", f"/api/v1/inspections/{ids[0]}", {}, {}, 401),
        ("get", f"/api/v1/inspections/{ids[0]}", camera, {}, 403),
        (
            "post",
            f"/api/v1/inspections/{ids[1]}/review",
            auth,
            {"json": {"action": "confirm", "comment": "seen", "reviewer": "ada"}},
            200,
        ),
        ("post", f"/api/v1/inspections/{ids[1]}/review", auth, {"json": {"action": "x"}}, 400),
        (
            "post",
            "/api/v1/jobs",
            auth,
            {"json": {"camera": "c", "image_b64": base64.b64encode(image).decode()}},
            202,
        ),
        (
            "post",
            "/api/v1/jobs",
            auth,
            {
                "data": {"camera": "c", "image": (io.BytesIO(image), "a.png")},
                "content_type": "multipart/form-data",
            },
            202,
        ),
        ("post", "/api/v1/jobs", auth, {"json": {"camera": "c", "image_b64": "%%"}}, 400),
        (
            "post",
            "/api/v1/jobs",
            {**auth, "Content-Type": "application/json"},
            {"data": b"{" + b" " * too_big + b"}"},
            413,
        ),
        ("get", "/api/v1/openapi.json", auth, {}, 200),
    ]
    for method, path, headers, kwargs, status in calls:
        response = getattr(client, method)(path, headers=headers, **kwargs)
        assert response.status_code == status, (path, response.get_data(as_text=True))
        check_against(openapi, response)
    # the queue is down: 503, in the document's words too
    monkeypatch.setattr("admin.api.send_job", lambda *_: (_ for _ in ()).throw(RedisError()))
    down = client.post(
        "/api/v1/jobs",
        headers=auth,
        json={"camera": "c", "image_b64": base64.b64encode(image).decode()},
    )
    assert down.status_code == 503
    check_against(openapi, down)


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


# -- frames judged by findings ---------------------------------------------------------


def add_frame_with_findings(settings, findings: int) -> int:
    """A frame inspection as a worker writes it for a camera with good frames: its
    anomaly map stored, its findings in their own rows (inserted here directly)."""
    store = BlobStore(settings.blob_dir)
    heat = Image.new("RGBA", (8, 4), (255, 80, 0, 200))
    [inspection_id] = add_inspections(
        settings,
        1,
        job_id=str(uuid.uuid4()),
        camera="strip-1",
        label="scratches",
        dissimilarity=0.9,
        threshold=0.5,
        nearest_reference_id=None,
        distances=None,
        anomaly_key=store.put(png_bytes(heat)),
    )[-1:]
    with session_scope(settings.database_url) as session:
        for rank in range(findings):
            session.add(
                Finding(
                    inspection_id=inspection_id,
                    rank=rank,
                    x=10 * rank,
                    y=20,
                    width=30,
                    height=40,
                    area=900 - rank,
                    score=0.9 - rank / 10,
                    label="scratches" if rank == 0 else "unknown",
                    reference_id=1 if rank == 0 else None,
                    distance=0.3 if rank == 0 else None,
                )
            )
    return inspection_id


def test_a_frame_carries_its_findings_and_anomaly_map(app, settings, api_token):
    whole = add_inspections(settings, 2)
    frames = [add_frame_with_findings(settings, n) for n in (3, 1, 0)]
    openapi = OpenAPI.from_dict(served_document(app, api_token))
    client = app.test_client()
    auth = {"Authorization": f"Bearer {api_token}"}

    one = client.get(f"/api/v1/inspections/{frames[0]}", headers=auth)
    check_against(openapi, one)
    body = one.get_json()
    assert [f["rank"] for f in body["findings"]] == [0, 1, 2]
    assert body["findings"][0] == {
        "rank": 0,
        "x": 0,
        "y": 20,
        "width": 30,
        "height": 40,
        "area": 900,
        "score": 0.9,
        "label": "scratches",
        "reference_id": 1,
        "distance": 0.3,
    }
    assert body["findings"][1]["reference_id"] is None and body["findings"][1]["label"] == "unknown"
    heat = client.get(body["anomaly_map"], headers=auth)  # with the token alone
    assert heat.status_code == 200 and heat.mimetype == "image/png"

    # a page: every frame with its own findings, from one query for the page
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        page = client.get("/api/v1/inspections?limit=10", headers=auth)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    check_against(openapi, page)
    items = {item["id"]: item for item in page.get_json()["items"]}
    assert [len(items[i]["findings"]) for i in frames] == [3, 1, 0]
    assert all(items[i]["anomaly_map"] for i in frames)
    assert sum("FROM findings" in s for s in statements) == 1
    for i in whole:  # judged whole: no findings, no map
        assert items[i]["findings"] == [] and items[i]["anomaly_map"] is None

    reviewed = client.post(
        f"/api/v1/inspections/{frames[1]}/review", headers=auth, json={"action": "confirm"}
    )
    check_against(openapi, reviewed)
    assert len(reviewed.get_json()["findings"]) == 1
    finding = served_document(app, api_token)["components"]["schemas"]["Finding"]
    assert set(finding["required"]) == set(schemas.Finding.model_fields)
