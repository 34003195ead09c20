"""Coils as the line sees them: each stored frame counted against its coil.

A job may name its coil (``coil_id``) and its place on the strip. Workers call
:func:`record_frames` in the transaction that stores the rows, so a coil's counts
are those of its stored rows even when several workers store frames of one coil at
once (an upsert that adds, on PostgreSQL and SQLite alike). Where the job gave a
``frame_index`` but no ``position_m``, :func:`place_frames` sets the position from
the camera's frame length, and a missing ``across_m`` from the camera's place.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.tables import Camera, Coil


def place_frames(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Fill in ``position_m`` (from ``frame_index``) and ``across_m`` of rows whose job
    did not send them, from their camera's row (cameras without one leave them None)."""
    wanting = {
        row["camera"]
        for row in rows
        if row.get("coil_id") and (row.get("across_m") is None or row.get("position_m") is None)
    }
    if not wanting:
        return
    cameras = {
        camera.name: camera
        for camera in session.scalars(select(Camera).where(Camera.name.in_(wanting)))
    }
    for row in rows:
        camera = cameras.get(row["camera"])
        if camera is None or not row.get("coil_id"):
            continue
        indexed = row.get("frame_index") is not None and camera.frame_length_m is not None
        if row.get("position_m") is None and indexed:
            row["position_m"] = row["frame_index"] * camera.frame_length_m
        if row.get("across_m") is None:
            row["across_m"] = camera.across_m


@dataclass
class _Tally:
    frames: int = 0
    flagged: int = 0
    length_m: float | None = None
    first: datetime | None = None
    last: datetime | None = None
    ended: datetime | None = None

    def add(self, row: Mapping[str, Any], end: bool) -> None:
        at = row["processed_at"]
        self.frames += 1
        self.flagged += row["status"] == "flagged"
        if row.get("position_m") is not None:
            self.length_m = max(self.length_m or 0.0, row["position_m"])
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)
        if end:
            self.ended = at


def record_frames(
    session: Session,
    rows: Sequence[Mapping[str, Any]],
    inserted: Mapping[str, int],
    ending: Collection[str] = (),
) -> set[str]:
    """Count the rows just inserted (``inserted``: their job ids) against their coils,
    and end the coils of the jobs in ``ending`` (the coil's last frame). Returns the
    coils touched."""
    tallies: dict[str, _Tally] = {}
    for row in rows:
        coil_id = row.get("coil_id")
        if not coil_id or row["job_id"] not in inserted:
            continue
        tallies.setdefault(coil_id, _Tally()).add(row, row["job_id"] in ending)
    if not tallies:
        return set()
    dialect = session.get_bind().dialect.name
    upsert: Any = (postgresql if dialect == "postgresql" else sqlite).insert(Coil)
    new = upsert.excluded
    # PostgreSQL's greatest/least skip NULLs; SQLite's two-argument max/min return
    # NULL for one, so both sides are coalesced first
    greatest, least = (
        (func.greatest, func.least) if dialect == "postgresql" else (func.max, func.min)
    )
    statement = upsert.on_conflict_do_update(
        index_elements=[Coil.coil_id],
        set_={
            "frames": Coil.frames + new.frames,
            "flagged": Coil.flagged + new.flagged,
            "length_m": greatest(
                func.coalesce(Coil.length_m, new.length_m),
                func.coalesce(new.length_m, Coil.length_m),
            ),
            "first_frame_at": least(Coil.first_frame_at, new.first_frame_at),
            "last_frame_at": greatest(Coil.last_frame_at, new.last_frame_at),
            # an ended coil stays ended: a late frame is counted, its verdict stands
            "ended_at": case((Coil.ended_at.is_not(None), Coil.ended_at), else_=new.ended_at),
        },
    )
    session.execute(
        statement,
        [
            {
                "coil_id": coil_id,
                "frames": tally.frames,
                "flagged": tally.flagged,
                "length_m": tally.length_m,
                "first_frame_at": tally.first,
                "last_frame_at": tally.last,
                "ended_at": tally.ended,
            }
            for coil_id, tally in sorted(tallies.items())  # one lock order for all workers
        ],
    )
    return set(tallies)
