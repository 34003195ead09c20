"""The whole line on real parts: producer -> Redis -> celery worker -> PostgreSQL -> admin."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from admin import create_app
from admin.auth import create_user
from core.blobs import BlobStore
from core.db import session_scope
from core.jobs import QUEUE_NAME
from core.queue import make_client
from core.tables import Inspection
from producer.client import InspectionClient
from tests.conftest import (
    ROOT,
    SAMPLE,
    count_rows,
    login,
    sample_images,
    seed_references,
    settings_env,
    wait_for_rows,
)

LINE_TIMEOUT_S = 180


def make_corrupt_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    good = sample_images()[0].read_bytes()
    corrupt = {
        "truncated.png": good[: len(good) // 3],
        "not-an-image.png": b"this is a text file, not a picture\n" * 20,
        "empty.png": b"",
    }
    for name, data in corrupt.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in corrupt]


def submit_with_cli(settings, files: list[Path]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "producer", "submit", *map(str, files), "--camera", "line-test"],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    job_ids = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert all(uuid.UUID(j) for j in job_ids)
    return job_ids


def test_fifty_images_through_the_line(settings, start_worker, tmp_path):
    seed_references(settings)
    start_worker(settings)
    good = sample_images()[:47]
    bad = make_corrupt_files(tmp_path / "bad")
    job_ids = submit_with_cli(settings, good + bad)
    assert len(job_ids) == 50 and len(set(job_ids)) == 50

    wait_for_rows(settings.database_url, 50, LINE_TIMEOUT_S)
    url = settings.database_url
    assert count_rows(url) == 50
    assert count_rows(url, status="rejected") == 3
    assert count_rows(url, status="flagged") + count_rows(url, status="passed") == 47
    with session_scope(url) as session:
        rejected = session.scalars(select(Inspection).where(Inspection.status == "rejected")).all()
        processed = session.scalars(select(Inspection).where(Inspection.status != "rejected")).all()
        assert {r.job_id for r in rejected} == set(job_ids[47:])
        errors = {r.meta["filename"]: r.error for r in rejected}
        assert "truncated" in errors["truncated.png"]
        assert "not an image" in errors["not-an-image.png"]
        assert "empty" in errors["empty.png"]
        for row in processed:
            assert row.model_version and row.image_key and row.distances
            assert len(row.distances) == 6
            assert row.dissimilarity == pytest.approx(row.distances[0]["distance"], abs=1e-6)
            assert BlobStore(settings.blob_dir).exists(row.image_key)

    # The worker is still serving after the bad input: a good image still gets a row.
    with InspectionClient(settings) as client:
        after = client.submit_file(sample_images()[50], "line-test")
    wait_for_rows(url, 51, 60)
    assert count_rows(url, job_id=after) == 1

    check_admin_shows_flagged_rows(settings)


def check_admin_shows_flagged_rows(settings) -> None:
    app = create_app(
        {
            "DATABASE_URL": settings.database_url,
            "BLOB_DIR": str(settings.blob_dir),
            "REDIS_URL": settings.redis_url,
            "SECRET_KEY": "test",
        }
    )
    with session_scope(settings.database_url) as session:
        create_user(session, "sue", "correct horse battery", "supervisor")
        newest = session.scalars(
            select(Inspection)
            .where(Inspection.status == "flagged")
            .order_by(Inspection.processed_at.desc(), Inspection.id.desc())
        ).first()
    client = app.test_client()
    for path in ("/", "/inspections", f"/inspections/{newest.id}", f"/images/{newest.image_key}"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert "/login" in response.headers["Location"], path

    assert login(client, "sue", "correct horse battery").status_code == 302
    page = client.get("/inspections").get_data(as_text=True)
    assert page.count("data-inspection-id=") == 25  # a full first page
    assert f'data-inspection-id="{newest.id}"' in page
    assert "line-test" in page
    detail = client.get(f"/inspections/{newest.id}").get_data(as_text=True)
    assert newest.job_id in detail and "Nearest reference" in detail
    thumb = client.get(f"/images/{newest.image_key}/thumb")
    assert thumb.status_code == 200 and thumb.mimetype == "image/png"


def test_same_job_id_twice_makes_one_row(settings, start_worker):
    seed_references(settings)
    worker = start_worker(settings)
    job_id = str(uuid.uuid4())
    data = sample_images()[0].read_bytes()
    with InspectionClient(settings) as client:
        client.submit_bytes(data, "dup-test", job_id=job_id)
        client.submit_bytes(data, "dup-test", job_id=job_id)
    queue = redis.Redis.from_url(settings.redis_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        both_done = f"job {job_id} already had a row" in worker.output()
        if both_done and queue.llen(QUEUE_NAME) == 0:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"the worker did not handle both messages:\n{worker.output()}")
    assert count_rows(settings.database_url, job_id=job_id) == 1
    assert count_rows(settings.database_url) == 1
    assert "already had a row" in worker.output()


def test_malformed_messages_become_rejected_rows(settings, start_worker, tmp_path):
    """Any Celery client can send a job: every fault is a rejected row that says why."""
    seed_references(settings)
    start_worker(settings)
    settings.inbox_dir.mkdir(parents=True)
    inside = settings.inbox_dir / "cam" / "ok.png"
    inside.parent.mkdir()
    inside.write_bytes(sample_images()[3].read_bytes())
    outside = tmp_path / "outside.png"
    outside.write_bytes(sample_images()[3].read_bytes())
    now = "2026-11-29T10:00:00+00:00"
    good_b64 = base64.b64encode(sample_images()[4].read_bytes()).decode()
    cases = {
        "no camera": {"captured_at": now, "image_b64": good_b64},
        "camera is a number": {"camera": 7, "captured_at": now, "image_b64": good_b64},
        "no image": {"camera": "c", "captured_at": now},
        "bad base64": {"camera": "c", "captured_at": now, "image_b64": "%%%"},
        "bad time": {"camera": "c", "captured_at": "yesterday", "image_b64": good_b64},
        "outside inbox": {"camera": "c", "captured_at": now, "image_path": str(outside)},
        "inside inbox": {"camera": "c", "captured_at": now, "image_path": "cam/ok.png"},
        "oversized": {
            "camera": "c",
            "captured_at": now,
            "image_b64": base64.b64encode(b"\0" * (settings.max_image_bytes + 1)).decode(),
        },
    }
    client = make_client(settings)
    ids = {}
    for name, kwargs in cases.items():
        ids[name] = str(uuid.uuid4())
        client.send_task(
            "inspect", kwargs={"job_id": ids[name], **kwargs}, queue="inspect", task_id=ids[name]
        )
    positional_id = str(uuid.uuid4())
    client.send_task("inspect", args=[1, 2], queue="inspect", task_id=positional_id)
    wait_for_rows(settings.database_url, len(cases) + 1, 60)

    with session_scope(settings.database_url) as session:
        rows = {r.job_id: r for r in session.scalars(select(Inspection))}
    expected_errors = {
        "no camera": "no camera",
        "camera is a number": "camera must be a non-empty string",
        "no image": "exactly one of image_b64 or image_path",
        "bad base64": "not valid base64",
        "bad time": "captured_at must be an ISO 8601 timestamp",
        "outside inbox": "outside the inbox folder",
        "oversized": "send a smaller image",
    }
    for name, fragment in expected_errors.items():
        row = rows[ids[name]]
        assert row.status == "rejected" and fragment in row.error, (name, row.error)
    assert rows[ids["inside inbox"]].status == "flagged"
    assert rows[positional_id].status == "rejected"
    assert "keyword arguments only" in rows[positional_id].error


def inspect_and_wait(settings, data: bytes, camera: str, expected_rows: int) -> Inspection:
    """Submit one image, wait until the table holds ``expected_rows``, return its row."""
    with InspectionClient(settings) as client:
        job_id = client.submit_bytes(data, camera)
    wait_for_rows(settings.database_url, expected_rows, 60)
    with session_scope(settings.database_url) as session:
        return session.scalar(select(Inspection).where(Inspection.job_id == job_id))


def test_workers_pick_up_reference_changes_without_restarting(settings, start_worker):
    from core.references import add_reference
    from core.tables import Reference, ReferenceEmbedding

    store = BlobStore(settings.blob_dir)
    crazing = sorted((SAMPLE / "crazing").glob("*.png"))[0].read_bytes()
    probe = sorted((SAMPLE / "scratches").glob("*.png"))[3].read_bytes()
    with session_scope(settings.database_url) as session:
        first_id = add_reference(session, store, crazing, "crazing", "defect", "test").id
    start_worker(settings)

    def inspect_probe(expected_rows: int) -> Inspection:
        return inspect_and_wait(settings, probe, "ref-cam", expected_rows)

    before = inspect_probe(1)
    assert before.label != "scratches" and len(before.distances) == 1

    with session_scope(settings.database_url) as session:  # a supervisor teaches a new class
        added = add_reference(session, store, probe, "scratches", "defect", "test")
        added_id = added.id
    taught = inspect_probe(2)
    assert (taught.status, taught.label) == ("flagged", "scratches")
    assert taught.nearest_reference_id == added_id and taught.dissimilarity < 1e-3
    assert len(taught.distances) == 2

    with session_scope(settings.database_url) as session:  # ... and takes it back
        session.get(Reference, added_id).active = False
    after = inspect_probe(3)
    assert after.label != "scratches" and len(after.distances) == 1

    with session_scope(settings.database_url) as session:  # each embedded once per model
        rows = session.scalars(select(ReferenceEmbedding)).all()
        assert sorted(r.reference_id for r in rows) == sorted({first_id, added_id})
        assert len({r.model_version for r in rows}) == 1


def test_workers_follow_threshold_changes_without_restarting(settings, start_worker):
    from core.thresholds import set_threshold

    seed_references(settings)
    start_worker(settings)
    probe = sorted((SAMPLE / "scratches").glob("*.png"))[0].read_bytes()  # a reference itself

    def inspect_probe(expected_rows: int) -> Inspection:
        return inspect_and_wait(settings, probe, "threshold-cam", expected_rows)

    first = inspect_probe(1)
    assert first.label == "scratches" and first.model_version
    with session_scope(settings.database_url) as session:
        # another model's distances are on another scale: its settings do not apply
        set_threshold(session, "texture_net-another", "scratches", 1e-9, "test")
    assert inspect_probe(2).label == "scratches"
    with session_scope(settings.database_url) as session:
        set_threshold(session, first.model_version, "scratches", 1e-9, "test")
    tightened = inspect_probe(3)
    assert (tightened.label, tightened.threshold) == ("unknown", 1e-9)
    with session_scope(settings.database_url) as session:
        set_threshold(session, first.model_version, "scratches", None, "test")
    assert inspect_probe(4).label == "scratches"
