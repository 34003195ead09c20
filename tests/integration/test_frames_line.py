"""Frames on the real line: a camera with good frames is judged by its good-surface
memory (findings located and named), any size of frame, bands for long strips;
a camera without good frames keeps the whole-image rule."""

from __future__ import annotations

import numpy as np
from PIL import Image
from sqlalchemy import func, select

from core.blobs import BlobStore
from core.db import session_scope
from core.references import add_reference
from core.tables import CameraThreshold, Finding, SurfaceMemory
from tests.conftest import png_bytes, seed_references, wait_for_rows
from tests.integration.test_line import inspect_and_wait

CAMERA = "strip-1"


def surface(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A noise texture: the good surface of these tests."""
    return np.clip(rng.normal(128, 18, (height, width)), 0, 255)


def with_spot(image: np.ndarray, row: int, col: int, half: int = 10) -> np.ndarray:
    spotted = image.copy()
    spotted[row - half : row + half, col - half : col + half] = 250
    return spotted


def frame(array: np.ndarray) -> bytes:
    return png_bytes(Image.fromarray(array.astype(np.uint8)))


def test_a_camera_with_good_frames_gets_findings(settings, start_worker):
    rng = np.random.default_rng(7)
    store = BlobStore(settings.blob_dir)
    seed_references(settings)  # the NEU classes, for the whole-image rule
    with session_scope(settings.database_url) as session:
        for _ in range(4):
            good = frame(surface(rng, 400, 900))
            add_reference(session, store, good, "good surface", "ok", "test", camera=CAMERA)
        spot = frame(with_spot(surface(rng, 96, 96), 48, 48))
        spot_id = add_reference(session, store, spot, "spot", "defect", "test").id
    start_worker(settings)

    passed = inspect_and_wait(settings, frame(surface(rng, 400, 900)), CAMERA, 1)
    assert (passed.status, passed.label) == ("passed", "good surface")
    assert passed.anomaly_key and passed.dissimilarity < passed.threshold

    spotted = inspect_and_wait(
        settings, frame(with_spot(surface(rng, 400, 900), 200, 600)), CAMERA, 2
    )
    assert spotted.status == "flagged" and spotted.anomaly_key
    # a long strip, read in bands, with its spot near the far end
    strip = inspect_and_wait(
        settings, frame(with_spot(surface(rng, 300, 5000), 150, 4700)), CAMERA, 3
    )
    assert (strip.image_width, strip.image_height) == (5000, 300) and strip.status == "flagged"
    # another camera, no good frames: today's rule
    whole = inspect_and_wait(settings, frame(surface(rng, 200, 200)), "other-cam", 4)
    assert whole.anomaly_key is None and whole.distances

    with session_scope(settings.database_url) as session:
        findings = {
            row.inspection_id: row
            for row in session.scalars(select(Finding).where(Finding.rank == 0))
        }
        assert (
            session.scalar(select(func.count(Finding.id)).where(Finding.inspection_id == passed.id))
            == 0
        )
        top = findings[spotted.id]
        assert top.x <= 600 <= top.x + top.width and top.y <= 200 <= top.y + top.height
        assert top.label in ("spot", "unknown") and spotted.label == top.label
        if top.label == "spot":
            assert top.reference_id == spot_id
        far = findings[strip.id]
        assert far.x <= 4700 <= far.x + far.width and far.y <= 150 <= far.y + far.height
        heat = Image.open(store.path(spotted.anomaly_key))
        assert heat.mode == "RGBA" and heat.width > heat.height  # the frame's aspect
        assert session.scalar(select(func.count(SurfaceMemory.id))) == 1

    # one more good frame: a new memory, without restarting the worker
    with session_scope(settings.database_url) as session:
        good = frame(surface(rng, 400, 900))
        add_reference(session, store, good, "good surface", "ok", "test", camera=CAMERA)
        # ... and an admin's threshold above every score: nothing is flagged
        session.add(
            CameraThreshold(
                camera=CAMERA, model_version=spotted.model_version, value=1e6, updated_by="t"
            )
        )
    relaxed = inspect_and_wait(
        settings, frame(with_spot(surface(rng, 400, 900), 200, 600)), CAMERA, 5
    )
    assert relaxed.status == "passed" and relaxed.threshold == 1e6
    with session_scope(settings.database_url) as session:
        memories = session.scalars(select(SurfaceMemory).order_by(SurfaceMemory.id)).all()
        assert [m.frames for m in memories] == [4, 5]
    wait_for_rows(settings.database_url, 5, 1)
