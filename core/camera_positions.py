"""Where a camera sits on the strip (traceability): the strip length one of its
frames covers, and its place across the strip.

Workers use them for jobs that do not say (``core.coils.place_frames``): a frame's
position along its coil is its ``frame_index`` times the camera's frame length,
and its place across is the camera's. Set by admins on the Thresholds page or
with ``flask --app admin set-camera NAME --frame-length-m M --across-m M``; they
apply to frames stored afterwards (rows keep the position they were stored with).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.jobs import MAX_POSITION_M, check_camera
from core.tables import Camera, Inspection


@dataclass(frozen=True)
class CameraPosition:
    """A camera as the traceability settings show it (None: not set)."""

    name: str
    frame_length_m: float | None
    across_m: float | None


def check_frame_length(value: float | None) -> float | None:
    """A frame length in metres: finite and above 0 (None: not set)."""
    if value is None:
        return None
    if not (math.isfinite(value) and 0 < value <= MAX_POSITION_M):
        raise ValueError(
            f"a frame length must be a number of metres above 0 (at most {MAX_POSITION_M:g}), "
            f"such as 0.5; got {value:g}"
        )
    return float(value)


def check_camera_across(value: float | None) -> float | None:
    """A place across the strip in metres from its reference edge (None: not set)."""
    if value is None:
        return None
    if not (math.isfinite(value) and -MAX_POSITION_M <= value <= MAX_POSITION_M):
        raise ValueError(
            f"a place across the strip must be a number of metres between "
            f"{-MAX_POSITION_M:g} and {MAX_POSITION_M:g}, such as 0.4; got {value:g}"
        )
    return float(value)


def set_camera_position(
    session: Session,
    camera: str,
    frame_length_m: float | None,
    across_m: float | None,
    user: str,
) -> CameraPosition:
    """Give ``camera`` a frame length and a place across (None clears one), creating
    its row (scale 1) if it has none; returns what it had before. ``ValueError`` (a
    ``JobInvalid`` for the name) says what is wrong."""
    name = check_camera(camera)
    length = check_frame_length(frame_length_m)
    across = check_camera_across(across_m)
    row = session.get(Camera, name)
    if row is None:
        session.add(Camera(name=name, frame_length_m=length, across_m=across, updated_by=user))
        session.flush()
        return CameraPosition(name, None, None)
    before = CameraPosition(name, row.frame_length_m, row.across_m)
    if (row.frame_length_m, row.across_m) != (length, across):
        row.frame_length_m, row.across_m, row.updated_by = length, across, user
        session.flush()
    return before


def camera_positions(session: Session, limit: int = 200) -> list[CameraPosition]:
    """Every camera with a row, and those that sent frames, by name."""
    rows = {row.name: row for row in session.scalars(select(Camera))}
    seen = session.scalars(
        select(Inspection.camera).distinct().order_by(Inspection.camera).limit(limit)
    )
    names = sorted(set(rows) | set(seen))
    return [
        CameraPosition(
            name,
            rows[name].frame_length_m if name in rows else None,
            rows[name].across_m if name in rows else None,
        )
        for name in names
    ]
