"""Cameras judged by findings on the Thresholds page (Flask's test client, a real
PostgreSQL database): each camera's good frames, scale and frame threshold; an admin's
override previewed over the camera's recent frames, saved and audited; values out of
range refused; supervisors refused; and ``flask --app admin set-camera``."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from core.blobs import BlobStore
from core.db import session_scope
from core.references import add_reference
from core.results import insert_inspections
from core.surface_memories import camera_scale, good_frames, memory_signature
from core.tables import Camera, CameraThreshold, SurfaceMemory, ThresholdChange
from tests.conftest import csrf_token, sample_images
from tests.integration.conftest import logged_in
from worker.inspection import base_row

CAMERA = "strip-1"
CALIBRATED = 0.5


def site_model_version(client) -> str:
    """The frames model's version: camera thresholds, memories and frame rows carry it."""
    page = client.get("/thresholds/").get_data(as_text=True)
    return re.search(r'id="frame-model-version">([^<]+)<', page).group(1)


def add_good_frame(settings, camera: str) -> None:
    with session_scope(settings.database_url) as session:
        add_reference(
            session,
            BlobStore(settings.blob_dir),
            sample_images()[0].read_bytes(),
            "ok-steel",
            "ok",
            "test",
            camera=camera,
        )


def add_memory(settings, camera: str, version: str, threshold: float) -> None:
    """A stored memory for the camera's good frames as they are, as a worker builds it."""
    with session_scope(settings.database_url) as session:
        signature = memory_signature(good_frames(session, camera), camera_scale(session, camera))
        session.add(
            SurfaceMemory(
                camera=camera,
                model_version=version,
                signature=signature,
                scale=camera_scale(session, camera),
                frames=len(good_frames(session, camera)),
                dim=1,
                rows=b"\0\0\0\0",
                threshold=threshold,
                seconds=0.1,
            )
        )


def add_frames(settings, camera: str, version: str, scores, age=timedelta(0), heat=True):
    """Frame inspections as a worker writes them: judged at CALIBRATED."""
    now = datetime.now(UTC) - age
    rows = [
        base_row(
            job_id=str(uuid.uuid4()),
            camera=camera,
            status="flagged" if score > CALIBRATED else "passed",
            label="unknown" if score > CALIBRATED else "ok-steel",
            dissimilarity=score,
            threshold=CALIBRATED,
            model_version=version,
            anomaly_key="a" * 64 if heat else None,
            received_at=now - timedelta(seconds=i),
            processed_at=now - timedelta(seconds=i),
        )
        for i, score in enumerate(scores)
    ]
    with session_scope(settings.database_url) as session:
        insert_inspections(session, rows)


def preview(client, token: str, value: str, camera: str = CAMERA):
    return client.post(
        "/thresholds/camera",
        data={"csrf_token": token, "camera": camera, "value": value, "do": "preview"},
    )


def counts(response) -> tuple[int, int, int]:
    text = response.get_data(as_text=True)
    return tuple(
        int(re.search(rf'id="{name}">(\d+)<', text).group(1))
        for name in ("camera-changed-count", "passed-to-flagged", "flagged-to-passed")
    )


def camera_row(page: str, camera: str = CAMERA) -> str:
    return page.split(f'<tr data-camera="{camera}">')[1].split("</tr>")[0]


def test_a_camera_override_is_previewed_saved_and_audited(app, settings):
    client = logged_in(app, "ada", "admin-password")
    version = site_model_version(client)
    add_good_frame(settings, CAMERA)
    add_good_frame(settings, CAMERA)
    page = client.get("/thresholds/").get_data(as_text=True)
    row = camera_row(page)
    assert "Cameras judged by findings" in page
    assert '<td class="good-frames">2' in row and "built on the camera's next frame" in row

    add_memory(settings, CAMERA, version, CALIBRATED)
    add_frames(settings, CAMERA, version, [0.2, 0.4, 0.6, 0.8, 1.0])
    # none of these count: another model's, a whole-image one, another camera's, too old
    add_frames(settings, CAMERA, "texture_net-0123456789ab", [0.4, 0.6])
    add_frames(settings, CAMERA, version, [0.4, 0.6], heat=False)
    add_frames(settings, "strip-2", version, [0.4, 0.6])
    add_frames(settings, CAMERA, version, [0.4, 0.6], age=timedelta(days=8))
    row = camera_row(client.get("/thresholds/").get_data(as_text=True))
    assert '<td class="calibrated">0.5000' in row and '<td class="applies">0.5000' in row

    token = csrf_token(client, "/thresholds/")
    lower = preview(client, token, "0.3")
    assert lower.status_code == 200
    assert "Of the last 5 frames of this camera" in lower.get_data(as_text=True)
    assert counts(lower) == (1, 1, 0)  # 0.4 would be flagged
    assert counts(preview(client, token, "0.9")) == (2, 0, 2)  # 0.6 and 0.8 would pass
    with session_scope(settings.database_url) as session:  # a preview changes nothing
        assert session.scalar(select(func.count(ThresholdChange.id))) == 0
        assert session.scalar(select(func.count()).select_from(CameraThreshold)) == 0

    save = {"csrf_token": token, "camera": CAMERA, "do": "save", "confirmed": "1"}
    saved = client.post("/thresholds/camera", data={**save, "value": "0.9", "reason": "dust"})
    assert saved.status_code == 302
    row = camera_row(client.get("/thresholds/").get_data(as_text=True))
    assert '<td class="override">0.9000' in row and '<td class="applies">0.9000' in row
    # removing it goes back to the calibrated threshold: 0.6 and 0.8 flagged again
    assert counts(preview(client, token, "")) == (2, 2, 0)
    client.post("/thresholds/camera", data={**save, "value": "", "reason": "cleaned"})
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(CameraThreshold)) == 0
        changes = session.scalars(select(ThresholdChange).order_by(ThresholdChange.id)).all()
        assert [
            (c.camera, c.label, c.model_version, c.old_value, c.new_value, c.changed_by)
            for c in changes
        ] == [
            (CAMERA, "*", version, None, 0.9, "ada"),
            (CAMERA, "*", version, 0.9, None, "ada"),
        ]
    audit = client.get("/thresholds/").get_data(as_text=True).split('id="threshold-changes"')[1]
    assert f"<td>{CAMERA}</td>" in audit


def test_values_out_of_range_are_refused_and_change_nothing(app, settings):
    client = logged_in(app, "ada", "admin-password")
    add_good_frame(settings, CAMERA)
    token = csrf_token(client, "/thresholds/")
    for value, words in (
        ("abc", "not a number"),
        ("0", "above 0"),
        ("-1", "above 0"),
        ("nan", "above 0"),
        ("inf", "above 0"),
        ("1e999", "above 0"),
    ):
        for do in ("preview", "save"):
            response = client.post(
                "/thresholds/camera",
                data={"csrf_token": token, "camera": CAMERA, "value": value, "do": do},
            )
            assert response.status_code == 400, (value, do)
            assert words in response.get_data(as_text=True), (value, do)
    unknown = client.post(
        "/thresholds/camera",
        data={"csrf_token": token, "camera": "no-such-camera", "value": "0.5", "do": "save"},
    )
    assert unknown.status_code == 400 and "has no good frames" in unknown.get_data(as_text=True)
    for scale, words in (
        ("0.05", "between 0.1 and 4"),
        ("5", "between 0.1 and 4"),
        ("nan", "between 0.1 and 4"),
        ("", "give a scale"),
        ("wide", "not a number"),
    ):
        response = client.post(
            "/thresholds/camera-scale",
            data={"csrf_token": token, "camera": CAMERA, "scale": scale},
        )
        assert response.status_code == 400, scale
        assert words in response.get_data(as_text=True), scale
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(CameraThreshold)) == 0
        assert session.scalar(select(func.count(ThresholdChange.id))) == 0
        assert session.get(Camera, CAMERA) is None
    # no token, no change
    assert (
        client.post("/thresholds/camera", data={"camera": CAMERA, "value": "0.5"}).status_code
        == 400
    )
    assert (
        client.post("/thresholds/camera-scale", data={"camera": CAMERA, "scale": "1"}).status_code
        == 400
    )


def test_a_new_scale_is_saved_and_the_memory_is_built_again(app, settings):
    client = logged_in(app, "ada", "admin-password")
    version = site_model_version(client)
    add_good_frame(settings, CAMERA)
    add_memory(settings, CAMERA, version, CALIBRATED)
    token = csrf_token(client, "/thresholds/")
    page = client.get("/thresholds/").get_data(as_text=True)
    assert "a new scale rebuilds the camera's memory" in camera_row(page)
    saved = client.post(
        "/thresholds/camera-scale",
        data={"csrf_token": token, "camera": CAMERA, "scale": "0.5"},
        follow_redirects=True,
    )
    text = saved.get_data(as_text=True)
    assert "rebuilt from its 1 good frame(s) on its next frame" in text
    row = camera_row(text)
    assert 'value="0.5"' in row and "built on the camera's next frame" in row
    with session_scope(settings.database_url) as session:
        camera = session.get(Camera, CAMERA)
        assert (camera.scale, camera.updated_by) == (0.5, "ada")


def test_supervisors_may_not_change_cameras(app, settings):
    add_good_frame(settings, CAMERA)
    supervisor = logged_in(app, "sam", "supervisor-password")
    token = csrf_token(supervisor, "/inspections")
    assert supervisor.get("/thresholds/").status_code == 403
    for path, data in (
        ("/thresholds/camera", {"camera": CAMERA, "value": "0.9", "do": "save"}),
        ("/thresholds/camera", {"camera": CAMERA, "value": "0.9", "do": "preview"}),
        ("/thresholds/camera-scale", {"camera": CAMERA, "scale": "2"}),
    ):
        assert supervisor.post(path, data={"csrf_token": token, **data}).status_code == 403
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(CameraThreshold)) == 0
        assert session.get(Camera, CAMERA) is None
    # and nobody logged out gets near it
    anonymous = app.test_client().post("/thresholds/camera", data={"camera": CAMERA})
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_set_camera_creates_and_updates_the_camera(app, settings):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["set-camera", "strip-9", "--scale", "0.5"])
    assert created.exit_code == 0, created.output
    assert "scale 0.5 (was 1)" in created.output and "rebuilt" in created.output
    updated = runner.invoke(args=["set-camera", "strip-9", "--scale", "2", "--by", "ops"])
    assert updated.exit_code == 0 and "scale 2 (was 0.5)" in updated.output
    same = runner.invoke(args=["set-camera", "strip-9", "--scale", "2"])
    assert same.exit_code == 0 and "as before" in same.output
    for bad in ("7", "0", "nan"):
        refused = runner.invoke(args=["set-camera", "strip-9", "--scale", bad])
        assert refused.exit_code != 0 and "between 0.1 and 4" in refused.output, bad
    assert runner.invoke(args=["set-camera", "strip-9"]).exit_code != 0  # --scale is required
    with session_scope(settings.database_url) as session:
        camera = session.get(Camera, "strip-9")
        assert (camera.scale, camera.updated_by) == (2.0, "ops")
