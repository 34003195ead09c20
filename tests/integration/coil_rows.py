"""Frames of a coil as a worker stores them: the inspection rows (with a real stored
image), their findings, and the coil's counts, through the functions the worker
calls (``insert_inspections``, ``record_frames``) in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from core.blobs import BlobStore
from core.coils import record_frames
from core.db import session_scope
from core.results import insert_inspections
from core.tables import Finding
from tests.conftest import sample_images
from worker.inspection import base_row

FRAME_SIZE = 200  # pixels, square


@dataclass
class Frame:
    """One frame: where it lies, and what was found on it. No ``findings`` and a
    ``label``: flagged by the whole-image rule; neither: passed."""

    position_m: float | None
    findings: Sequence[str] = field(default_factory=tuple)  # their labels
    label: str | None = None
    across_m: float | None = 0.6


def add_frames(
    settings,
    coil_id: str,
    frames: Sequence[Frame],
    at: datetime | None = None,
    end: bool = False,
) -> list[int]:
    """Store ``frames`` of ``coil_id`` one second apart from ``at`` (default: now);
    ``end``: the last one ends the coil. Returns the rows' ids, in order."""
    store = BlobStore(settings.blob_dir)
    key = store.put(sample_images()[0].read_bytes())
    start = at or datetime.now(UTC)
    rows = []
    for i, frame in enumerate(frames):
        flagged = bool(frame.findings) or frame.label is not None
        rows.append(
            base_row(
                job_id=str(uuid.uuid4()),
                camera="strip-top",
                status="flagged" if flagged else "passed",
                label=(frame.findings[0] if frame.findings else frame.label),
                dissimilarity=0.9 if flagged else 0.1,
                threshold=0.5,
                model_version="test",
                image_key=key,
                image_width=FRAME_SIZE,
                image_height=FRAME_SIZE,
                received_at=start + timedelta(seconds=i),
                processed_at=start + timedelta(seconds=i),
                coil_id=coil_id,
                frame_index=i,
                position_m=frame.position_m,
                across_m=frame.across_m,
            )
        )
    ending = {rows[-1]["job_id"]} if end and rows else set()
    with session_scope(settings.database_url) as session:
        inserted = insert_inspections(session, rows)
        findings = [
            {
                "inspection_id": inserted[row["job_id"]],
                "rank": rank,
                "x": 20 + 60 * rank,
                "y": 50,
                "width": 40,
                "height": 30,
                "area": 900,
                "score": 2.0 - rank / 10,
                "label": label,
                "reference_id": None,
                "distance": 0.3,
            }
            for row, frame in zip(rows, frames, strict=True)
            for rank, label in enumerate(frame.findings)
        ]
        if findings:
            session.execute(insert(Finding), findings)
        record_frames(session, rows, inserted, ending)
    return [inserted[row["job_id"]] for row in rows]
