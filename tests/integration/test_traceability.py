"""Traceability on real parts: jobs that name their coil and place on the strip enter
through the producer (its client and its command line), the HTTP API and the hot
folder, pass Redis and a real worker, and reach PostgreSQL rows and the coil's row;
the API and the site filter by coil, the API ends a coil, the CSV export and the
pages show where each frame was taken; bad trace fields are refused with a reason
wherever they enter."""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import get_args

from openapi_core import OpenAPI
from sqlalchemy import func, select

from admin import api_schemas as schemas
from core.coils import place_frames, record_frames
from core.db import session_scope
from core.jobs import Trace
from core.results import insert_inspections
from core.tables import COIL_VERDICTS, Camera, Coil, Inspection
from producer.client import InspectionClient
from producer.hotfolder import HotFolder
from tests.conftest import ROOT, csrf_token, sample_images, settings_env, wait_for_rows
from tests.integration.conftest import add_inspections, logged_in, make_token
from tests.integration.test_api import check_against, served_document
from tests.integration.test_producer import queued_messages
from worker.inspection import base_row

CAMERA = "trace-cam"
LINE_TIMEOUT_S = 180


def producer_cli(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "producer", *args],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def rows_by_job(settings) -> dict[str, Inspection]:
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(Inspection)).all()
        session.expunge_all()
    return {row.job_id: row for row in rows}


def coil_row(settings, coil_id: str) -> Coil:
    with session_scope(settings.database_url) as session:
        row = session.get(Coil, coil_id)
        assert row is not None, coil_id
        session.expunge(row)
        return row


def flagged_of(settings, coil_id: str) -> int:
    with session_scope(settings.database_url) as session:
        return session.scalar(
            select(func.count(Inspection.id)).where(
                Inspection.coil_id == coil_id, Inspection.status == "flagged"
            )
        )


def test_traced_jobs_from_every_entry_reach_their_rows_and_coils(
    app, settings, start_worker, api_token, tmp_path
):
    images = [path.read_bytes() for path in sample_images()[:8]]
    placed = app.test_cli_runner().invoke(
        args=["set-camera", CAMERA, "--frame-length-m", "0.5", "--across-m", "0.4"]
    )
    assert placed.exit_code == 0, placed.output
    expected: dict[str, tuple] = {}  # job_id -> (coil, index, position, across)

    # the producer's client: an index placed by the camera, a position sent, and a
    # frame the worker rejects (its row keeps its trace, and its coil counts it)
    with InspectionClient(settings) as client:
        for index, trace, want in (
            (0, Trace("COIL-A", 0), ("COIL-A", 0, 0.0, 0.4)),
            (1, Trace("COIL-A", 1), ("COIL-A", 1, 0.5, 0.4)),
            (2, Trace("COIL-A", None, 12.5, 0.1), ("COIL-A", None, 12.5, 0.1)),
        ):
            expected[client.submit_bytes(images[index], CAMERA, trace=trace)] = want
        rejected = client.submit_bytes(b"not an image", CAMERA, trace=Trace("COIL-A", 9))
        expected[rejected] = ("COIL-A", 9, 4.5, 0.4)

        # the hot folder: a sidecar with the trace, one without, and a bad one
        folder = tmp_path / "hot"
        folder.mkdir()
        (folder / "b0.png").write_bytes(images[3])
        sidecar = {"coil_id": "COIL-B", "position_m": 7.25, "across_m": 1.2, "coil_end": True}
        (folder / "b0.png.json").write_text(json.dumps(sidecar))
        (folder / "plain.png").write_bytes(images[4])
        (folder / "bad.png").write_bytes(images[5])
        (folder / "bad.png.json").write_text('{"coil_id": "COIL-B", "frame_index": -4}')
        hot = HotFolder(folder, CAMERA, client, settle_s=0)
        hot.poll_once()  # every file is seen once before it counts as complete
        sent = {path.name: job_id for job_id, path in hot.poll_once()}
    assert set(sent) == {"b0.png", "plain.png"}
    expected[sent["b0.png"]] = ("COIL-B", None, 7.25, 1.2)
    expected[sent["plain.png"]] = (None, None, None, None)
    assert sorted(p.name for p in (folder / "done").iterdir()) == [
        "b0.png",
        "b0.png.json",
        "plain.png",
    ]
    reason = (folder / "failed" / "bad.png.reason.txt").read_text()
    assert "bad.png.json" in reason and "frame_index" in reason
    assert (folder / "failed" / "bad.png.json").exists()

    # the HTTP API, as JSON and as a form; the form's last frame ends COIL-A
    auth = {"Authorization": f"Bearer {api_token}"}
    http = app.test_client()
    as_json = http.post(
        "/api/v1/jobs",
        headers=auth,
        json={
            "camera": CAMERA,
            "image_b64": b64(images[6]),
            "coil_id": "COIL-A",
            "frame_index": 3,
            "across_m": -0.25,
        },
    )
    assert as_json.status_code == 202, as_json.get_json()
    expected[as_json.get_json()["job_id"]] = ("COIL-A", 3, 1.5, -0.25)
    as_form = http.post(
        "/api/v1/jobs",
        headers=auth,
        data={
            "camera": CAMERA,
            "image": (io.BytesIO(images[7]), "f.png"),
            "coil_id": "COIL-A",
            "frame_index": "4",
            "coil_end": "true",
        },
        content_type="multipart/form-data",
    )
    assert as_form.status_code == 202, as_form.get_json()
    expected[as_form.get_json()["job_id"]] = ("COIL-A", 4, 2.0, 0.4)

    # the command line: a coil left open (the API ends it below)
    cli = producer_cli(
        settings,
        "submit",
        str(sample_images()[20]),
        str(sample_images()[21]),
        "--camera",
        CAMERA,
        "--coil",
        "COIL-C",
        "--frame-index",
        "10",
    )
    assert cli.returncode == 0, cli.stderr
    for n, line in enumerate(cli.stdout.splitlines()):
        expected[line.split("\t")[0]] = ("COIL-C", 10 + n, 5.0 + 0.5 * n, 0.4)

    start_worker(settings)
    wait_for_rows(settings.database_url, len(expected), LINE_TIMEOUT_S)
    rows = rows_by_job(settings)
    assert set(rows) == set(expected)
    for job_id, (coil_id, index, position, across) in expected.items():
        row = rows[job_id]
        assert (row.coil_id, row.frame_index, row.position_m, row.across_m) == (
            coil_id,
            index,
            position,
            across,
        ), row.meta
    assert rows[rejected].status == "rejected"

    a, b, c = (coil_row(settings, name) for name in ("COIL-A", "COIL-B", "COIL-C"))
    assert (a.frames, a.flagged, a.length_m) == (6, flagged_of(settings, "COIL-A"), 12.5)
    assert (b.frames, b.flagged, b.length_m) == (1, flagged_of(settings, "COIL-B"), 7.25)
    assert (c.frames, c.length_m) == (2, 5.5)
    assert a.ended_at is not None and b.ended_at is not None  # coil_end, by API and sidecar
    assert c.ended_at is None and a.first_frame_at <= a.last_frame_at

    # the API ends an open coil, once
    openapi = OpenAPI.from_dict(served_document(app, api_token))
    ended = http.post("/api/v1/coils/COIL-C/end", headers=auth)
    assert ended.status_code == 200, ended.get_json()
    check_against(openapi, ended)
    body = ended.get_json()
    assert body["coil_id"] == "COIL-C" and body["frames"] == 2 and body["ended_at"]
    again = http.post("/api/v1/coils/COIL-C/end", headers=auth)
    assert again.status_code == 200 and again.get_json()["ended_at"] == body["ended_at"]
    assert coil_row(settings, "COIL-C").ended_at is not None
    # an ended coil keeps the time it ended at
    kept = http.post("/api/v1/coils/COIL-A/end", headers=auth).get_json()["ended_at"]
    assert datetime.fromisoformat(kept) == a.ended_at

    # the API lists a coil's frames, with where each was taken
    listed = http.get("/api/v1/inspections?coil_id=COIL-A&status=&limit=50", headers=auth)
    check_against(openapi, listed)
    items = listed.get_json()["items"]
    assert {item["job_id"] for item in items} == {
        job_id for job_id, want in expected.items() if want[0] == "COIL-A"
    }
    for item in items:
        want = expected[item["job_id"]]
        assert (item["coil_id"], item["frame_index"], item["position_m"], item["across_m"]) == want


def test_the_api_ends_only_coils_it_knows_and_only_for_submitters(app, settings, api_token):
    store_frames(settings, [frame("OPEN-1", 0, position_m=3.0)])
    openapi = OpenAPI.from_dict(served_document(app, api_token))
    http = app.test_client()
    reader = {"Authorization": f"Bearer {make_token(app, 'dash', 'read')}"}
    camera = {"Authorization": f"Bearer {make_token(app, 'cam-1', 'submit')}"}
    for headers, path, status in (
        (camera, "/api/v1/coils/NO-SUCH/end", 404),
        (camera, "/api/v1/coils/OPEN%00-1/end", 404),  # no id a job could carry
        (camera, f"/api/v1/coils/{'x' * 300}/end", 404),
        (reader, "/api/v1/coils/OPEN-1/end", 403),
        ({}, "/api/v1/coils/OPEN-1/end", 401),
    ):
        response = http.post(path, headers=headers)
        assert response.status_code == status, path
        assert set(response.get_json()) == {"error"}
        check_against(openapi, response)
    assert coil_row(settings, "OPEN-1").ended_at is None
    ended = http.post("/api/v1/coils/OPEN-1/end", headers=camera)
    assert ended.status_code == 200 and ended.get_json()["length_m"] == 3.0
    check_against(openapi, ended)
    assert coil_row(settings, "OPEN-1").ended_at is not None
    document = served_document(app, api_token)
    operation = document["paths"]["/api/v1/coils/{coil_id}/end"]["post"]
    assert operation["security"] == [{"bearer": ["submit"]}]
    assert set(operation["responses"]) == {"200", "401", "403", "404"}
    assert get_args(schemas.CoilVerdict) == COIL_VERDICTS


def test_bad_trace_fields_are_refused_with_a_reason_wherever_they_enter(
    app, settings, api_token, tmp_path
):
    openapi = OpenAPI.from_dict(served_document(app, api_token))
    http = app.test_client()
    auth = {"Authorization": f"Bearer {api_token}"}
    image = b64(sample_images()[0].read_bytes())
    for fields, words in (
        ({"coil_id": "   "}, "coil_id"),
        ({"coil_id": "x" * 81}, "coil_id"),
        ({"coil_id": "C\u0007"}, "control characters"),
        ({"frame_index": 2}, "need the coil_id"),
        ({"coil_end": True}, "need the coil_id"),
        ({"coil_id": "C", "frame_index": -1}, "frame_index"),
        ({"coil_id": "C", "frame_index": 1.5}, "frame_index"),
        ({"coil_id": "C", "position_m": -0.5}, "position_m"),
        ({"coil_id": "C", "position_m": 2e6}, "position_m"),
        ({"coil_id": "C", "across_m": "wide"}, "across_m"),
        ({"coil_id": "C", "coil_end": "perhaps"}, "coil_end"),
    ):
        response = http.post(
            "/api/v1/jobs", headers=auth, json={"camera": CAMERA, "image_b64": image, **fields}
        )
        assert response.status_code == 400, fields
        assert words in response.get_json()["error"], (fields, response.get_json())
        check_against(openapi, response)
    # NaN, which JSON has no word for but Python's parser reads
    nan = http.post(
        "/api/v1/jobs",
        headers={**auth, "Content-Type": "application/json"},
        data=f'{{"camera": "c", "image_b64": "{image}", "coil_id": "C", "position_m": NaN}}',
    )
    assert nan.status_code == 400 and "position_m" in nan.get_json()["error"]
    form = http.post(
        "/api/v1/jobs",
        headers=auth,
        data={"camera": CAMERA, "image": (io.BytesIO(b"x"), "a.png"), "frame_index": "first"},
        content_type="multipart/form-data",
    )
    assert form.status_code == 400 and "frame_index" in form.get_json()["error"]

    # the producer's command line, before anything is sent
    for args, words in (
        (["--coil", "C", "--position-m", "-3"], "position_m"),
        (["--frame-index", "4"], "coil_id"),
        (["--coil", "C", "--across-m", "nan"], "across_m"),
    ):
        result = producer_cli(settings, "submit", str(sample_images()[0]), "--camera", "c", *args)
        assert result.returncode == 2 and words in result.stderr, result.stderr
    assert queued_messages(settings.redis_url) == []

    # a hot folder's sidecar
    folder = tmp_path / "hot"
    folder.mkdir()
    (folder / "a.png").write_bytes(sample_images()[0].read_bytes())
    (folder / "a.png.json").write_text('{"coil": "C-1"}')
    with InspectionClient(settings) as client:
        hot = HotFolder(folder, CAMERA, client, settle_s=0)
        assert hot.poll_once() == [] and hot.poll_once() == []
    reason = (folder / "failed" / "a.png.reason.txt").read_text()
    assert "unknown fields coil" in reason and "coil_id" in reason
    assert queued_messages(settings.redis_url) == []


def frame(coil: str | None, n: int, status: str = "flagged", **trace) -> dict:
    now = datetime.now(UTC) - timedelta(minutes=10 - n)
    return base_row(
        job_id=str(uuid.uuid4()),
        camera=CAMERA,
        status=status,
        label="crazing" if status == "flagged" else "ok",
        coil_id=coil,
        received_at=now,
        processed_at=now,
        **trace,
    )


def store_frames(settings, rows: list[dict], ending: frozenset[str] = frozenset()) -> None:
    """What a worker does with a batch's rows, in one transaction."""
    with session_scope(settings.database_url) as session:
        place_frames(session, rows)
        record_frames(session, rows, insert_inspections(session, rows), ending)


def test_workers_count_one_coil_at_once_without_losing_a_frame(settings):
    # several workers storing frames of one coil at the same moment: the upsert adds
    def worker(n: int) -> None:
        for batch in range(5):
            rows = [
                frame(
                    "BUSY",
                    0,
                    "flagged" if i == 0 else "passed",
                    position_m=float(n * 100 + batch * 3 + i),
                )
                for i in range(3)
            ]
            store_frames(settings, rows)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    busy = coil_row(settings, "BUSY")
    assert (busy.frames, busy.flagged, busy.length_m) == (60, 20, 314.0)


def test_the_site_and_the_export_filter_and_show_coils(app, settings):
    with session_scope(settings.database_url) as session:
        session.add(Camera(name=CAMERA, frame_length_m=2.5, across_m=0.4))
    store_frames(
        settings, [frame("COIL/7 A", 1, frame_index=5), frame("COIL-8", 2, position_m=1.0)]
    )
    add_inspections(settings, 3)  # frames of no coil
    client = logged_in(app, "sam", "supervisor-password")
    queue = client.get("/inspections", query_string={"coil": "COIL/7 A"}).get_data(as_text=True)
    assert 'name="coil"' in queue and 'value="COIL/7 A"' in queue
    assert queue.count('class="review-item') == 1 and "12.5 m" in queue
    everything = client.get("/inspections").get_data(as_text=True)
    assert everything.count('class="review-item') == 5
    with session_scope(settings.database_url) as session:
        row_id = session.scalar(select(Inspection.id).where(Inspection.coil_id == "COIL/7 A"))
    detail = client.get(f"/inspections/{row_id}").get_data(as_text=True)
    assert "12.5 m from the head, 0.40 m across" in detail and "COIL/7 A" in detail
    # linked to the coil's page where the site has one
    assert "coils.coil" not in app.view_functions or 'href="/coils/COIL/7%20A"' in detail
    gallery = client.get("/inspections?coil=COIL-8&view=gallery").get_data(as_text=True)
    assert gallery.count('class="gallery-card') == 1 and "COIL-8" in gallery

    text = client.get("/inspections.csv", query_string={"coil": "COIL/7 A", "status": ""}).get_data(
        as_text=True
    )
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert (row["coil_id"], row["frame_index"], row["position_m"], row["across_m"]) == (
        "COIL/7 A",
        "5",
        "12.5",
        "0.4",
    )
    every = list(
        csv.DictReader(io.StringIO(client.get("/inspections.csv?status=").get_data(as_text=True)))
    )
    assert len(every) == 5 and sum(1 for r in every if r["coil_id"] == "") == 3


def test_admins_place_cameras_on_the_strip(app, settings):
    admin = logged_in(app, "ada", "admin-password")
    token = csrf_token(admin, "/thresholds/")
    page = admin.get("/thresholds/").get_data(as_text=True)
    assert 'id="camera-positions"' in page
    saved = admin.post(
        "/thresholds/camera-position",
        data={
            "csrf_token": token,
            "camera": "new-cam",
            "frame_length_m": "0.75",
            "across_m": "-0.3",
        },
        follow_redirects=True,
    )
    assert saved.status_code == 200 and "frame length 0.75 m, across -0.3 m" in saved.get_data(
        as_text=True
    )
    for length, across, words in (
        ("0", "", "above 0"),
        ("-2", "", "above 0"),
        ("nan", "", "above 0"),
        ("1", "inf", "across"),
        ("long", "", "not a number"),
    ):
        refused = admin.post(
            "/thresholds/camera-position",
            data={
                "csrf_token": token,
                "camera": "new-cam",
                "frame_length_m": length,
                "across_m": across,
            },
        )
        assert refused.status_code == 400 and words in refused.get_data(as_text=True), length
    with session_scope(settings.database_url) as session:
        camera = session.get(Camera, "new-cam")
        assert (camera.frame_length_m, camera.across_m, camera.updated_by) == (0.75, -0.3, "ada")
    # cleared by an empty field
    admin.post(
        "/thresholds/camera-position",
        data={"csrf_token": token, "camera": "new-cam", "frame_length_m": "", "across_m": "-0.3"},
    )
    with session_scope(settings.database_url) as session:
        assert session.get(Camera, "new-cam").frame_length_m is None
    supervisor = logged_in(app, "sam", "supervisor-password")
    refused = supervisor.post(
        "/thresholds/camera-position",
        data={
            "csrf_token": csrf_token(supervisor, "/inspections"),
            "camera": "new-cam",
            "frame_length_m": "9",
        },
    )
    assert refused.status_code == 403
    cli = app.test_cli_runner().invoke(args=["set-camera", "new-cam", "--frame-length-m", "-1"])
    assert cli.exit_code != 0 and "above 0" in cli.output
