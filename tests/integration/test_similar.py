"""The most similar confirmed inspections: the worker keeps each image's code (a
frame's: its top finding's crop), and the detail page lists the confirmed rows
nearest to it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sqlalchemy import select, update

from admin.similar import similar_confirmed
from core.blobs import BlobStore
from core.db import session_scope
from core.references import add_reference
from core.results import embedding_bytes, embedding_vector
from core.tables import Finding, Inspection, ReferenceEmbedding
from producer.client import InspectionClient
from tests.conftest import sample_images, wait_for_rows
from tests.integration.browser import admin_server, log_in
from tests.integration.conftest import add_inspections, logged_in
from tests.integration.test_browser_frames import wait_for_images
from tests.integration.test_frames_line import frame, surface, with_spot

STRIP = "strip-1"


def add_row(
    settings, embedding: bytes | None, state: str, version: str = "test", label: str = "crazing"
) -> int:
    """A row as the worker writes it, with this code, reviewed as ``state``."""
    [new] = add_inspections(settings, 1, embedding=embedding, model_version=version)[-1:]
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Inspection)
            .where(Inspection.id == new)
            .values(review_state=state, review_label=label)
        )
    return new


def similar_ids(page: str) -> list[int]:
    """The inspections the page's "similar" section links to, in its order."""
    section = re.search(r'<section class="similar" id="similar">(.*?)</section>', page, re.S)
    assert section, "no similar section"
    return [int(i) for i in re.findall(r'data-inspection-id="(\d+)"', section.group(1))]


def test_the_worker_keeps_codes_and_the_page_lists_the_nearest_confirmed(
    app, settings, start_worker
):
    rng = np.random.default_rng(3)
    store = BlobStore(settings.blob_dir)
    with session_scope(settings.database_url) as session:
        for _ in range(3):
            good = frame(surface(rng, 240, 480))
            add_reference(session, store, good, "good surface", "ok", "test", camera=STRIP)
    start_worker(settings)
    images = sample_images()[::7]  # a few of each class
    with InspectionClient(settings) as client:
        whole = [client.submit_file(path, "line-1") for path in images]
        rejected = client.submit_bytes(b"not an image", "line-1")
        spotted = client.submit_bytes(frame(with_spot(surface(rng, 240, 480), 120, 300)), STRIP)
        clean = client.submit_bytes(frame(surface(rng, 240, 480)), STRIP)
    wait_for_rows(settings.database_url, len(whole) + 3, 120)

    with session_scope(settings.database_url) as session:
        rows = {r.job_id: r for r in session.scalars(select(Inspection))}
        version = rows[whole[0]].model_version
        references = {
            e.reference_id: embedding_vector(e.vector)
            for e in session.scalars(
                select(ReferenceEmbedding).where(ReferenceEmbedding.model_version == version)
            )
        }
        dimension = len(next(iter(references.values())))
        for job_id in whole:
            row = rows[job_id]
            assert row.embedding is not None
            code = embedding_vector(row.embedding)
            assert code.shape == (dimension,)
            # the very code the verdict came from: its distance to the nearest reference
            nearest = np.linalg.norm(code - references[row.nearest_reference_id])
            assert nearest == pytest.approx(row.dissimilarity, abs=1e-4)
        assert rows[rejected].status == "rejected" and rows[rejected].embedding is None
        assert rows[clean].status == "passed" and rows[clean].embedding is None
        framed = rows[spotted]
        assert framed.status == "flagged" and framed.anomaly_key and framed.embedding
        top = session.scalar(
            select(Finding).where(Finding.inspection_id == framed.id, Finding.rank == 0)
        )
        code = embedding_vector(framed.embedding)
        assert code.shape == (dimension,)  # the naming network's code of the crop
        if top.reference_id is not None:
            crop_distance = np.linalg.norm(code - references[top.reference_id])
            assert crop_distance == pytest.approx(top.distance, abs=1e-4)

        # a supervisor confirms all but two of the whole images (one relabeled)
        probe, pending, relabeled, *confirmed = (rows[j] for j in whole)
        session.execute(
            update(Inspection)
            .where(Inspection.id.in_([r.id for r in confirmed] + [probe.id]))
            .values(review_state="confirmed", review_label=Inspection.label)
        )
        session.execute(
            update(Inspection)
            .where(Inspection.id == relabeled.id)
            .values(review_state="relabeled", review_label="scratches")
        )
        expected = sorted(
            [*confirmed, relabeled],
            key=lambda r: np.linalg.norm(
                embedding_vector(r.embedding) - embedding_vector(probe.embedding)
            ),
        )[:6]
        probe_id, pending_id = probe.id, pending.id

    client = logged_in(app, "sam", "supervisor-password")
    page = client.get(f"/inspections/{probe_id}").get_data(as_text=True)
    shown = similar_ids(page)
    assert shown == [r.id for r in expected]
    assert probe_id not in shown and pending_id not in shown
    assert f'href="/inspections/{shown[0]}"' in page and "Similar confirmed inspections" in page


def code(*values: float) -> bytes:
    return embedding_bytes(np.array([*values, 0.0, 0.0], dtype=np.float32))


def test_only_confirmed_rows_of_the_same_model_nearest_first(app, settings):
    def row(
        embedding: bytes | None,
        state: str = "pending",
        version: str = "test",
        label: str = "crazing",
    ) -> int:
        return add_row(settings, embedding, state, version, label)

    probe = row(code(0, 0), "confirmed")
    far = row(code(3, 0), "confirmed")
    near = row(code(1, 0), "confirmed")
    relabeled = row(code(0, 1.5), "relabeled", label="pitted_surface")
    middle = row(code(0, 2), "confirmed")
    row(code(0.5, 0))  # pending
    row(code(0.2, 0), "false_alarm")
    row(code(0.1, 0), "confirmed", version="another")
    row(None, "confirmed")
    row(code(0.1, 0, 0), "confirmed")  # a code of another length: another network
    without = row(None)
    with session_scope(settings.database_url) as session:  # ``near`` is a frame: its crop
        session.add(
            Finding(
                inspection_id=near,
                rank=0,
                x=10,
                y=20,
                width=30,
                height=40,
                area=900,
                score=2.0,
                label="crazing",
            )
        )

    client = logged_in(app, "sam", "supervisor-password")
    page = client.get(f"/inspections/{probe}").get_data(as_text=True)
    assert similar_ids(page) == [near, relabeled, middle, far]
    labels = re.findall(r'<span class="similar-label">([^<]*)</span>', page)
    distances = re.findall(r'<span class="similar-distance">([^<]*)</span>', page)
    assert labels == ["crazing", "pitted_surface", "crazing", "crazing"]  # as reviewed
    assert distances == ["1.0000", "1.5000", "2.0000", "3.0000"]
    images = re.findall(r'<li class="similar-item"[^>]*>\s*<a[^>]*>\s*<img src="([^"]+)"', page)
    assert "/crop?" in images[0] and "x=10" in images[0] and "h=40" in images[0]
    assert all(src.endswith("/thumb") for src in images[1:])
    assert 'id="similar"' not in client.get(f"/inspections/{without}").get_data(as_text=True)
    with session_scope(settings.database_url) as session:
        found = similar_confirmed(session, session.get(Inspection, probe), limit=2)
        assert [(s.inspection.id, s.distance) for s in found] == [(near, 1.0), (relabeled, 1.5)]
        # the search is bounded to the newest confirmed rows (here: one of another
        # length, left out, and ``middle``)
        newest = similar_confirmed(session, session.get(Inspection, probe), search_limit=2)
        assert [s.inspection.id for s in newest] == [middle]


@pytest.mark.parametrize("width", [390, 1920])
def test_the_similar_section_fits_the_screen_and_links_on(
    app, settings, page, screenshots, tmp_path, width
):
    probe = add_row(settings, code(0, 0), "pending")
    nearest = [add_row(settings, code(i + 1, 0), "confirmed") for i in range(6)]
    with admin_server(settings, tmp_path / "admin.log") as url:
        page.set_viewport_size({"width": width, "height": 900})
        log_in(page, url, "sam", "supervisor-password")
        page.goto(f"{url}/inspections/{probe}")
        links = page.locator("#similar .similar-item a")
        assert links.count() == 6
        wait_for_images(page, "#similar img")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        for i in range(6):
            box = links.nth(i).bounding_box()
            assert box and box["height"] >= 44 and box["x"] + box["width"] <= width
        page.locator("#similar").screenshot(path=str(screenshots / f"similar-{width}.png"))
        links.first.click()
        page.wait_for_url(f"{url}/inspections/{nearest[0]}")
