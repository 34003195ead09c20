"""The live line: what the dashboard and the queue show without a reload.

``GET /live.json`` (a logged-in session) answers with frames per minute, the last
hour by status, the current coil, the latest flagged inspections with their
thumbnails and findings' boxes, the job queue's length and the workers online, the
menu's "N to review" and the active alarms (``admin/alarms.py``); with
``queue_after=ID`` and the queue's filter arguments, also how many rows matching that
filter arrived after row ID (the queue's "N new flagged — show").

Polled, not pushed: ``static/live.js`` asks every few seconds while its tab is
visible. Server-sent events would hold a request open per open page, and gunicorn
runs sync workers here, one request at a time each: a dozen open dashboards would
take every worker and leave none for the pages themselves. A poll holds a worker for
milliseconds.

Every open page polls, so the answer is cheap: each query uses an index (recent rows
by ``processed_at``, the newest flagged by ``(status, processed_at, id)``, the coil by
``last_frame_at``, new rows by the primary key), the workers come from the line
status this process read within the last seconds (``admin/line_status.py``), and the
part every page shares is kept for ``LIVE_MAX_AGE_S`` (2 s) per process, so many
open pages cost what one does.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.routing import BuildError

from admin.alarms import current_alarms
from admin.dashboard import count_waiting
from admin.db import get_db
from admin.line_status import POLL_TIMEOUT_S, line_cache
from admin.review_queue import MAX_ROW_ID, QueueFilter, findings_of
from admin.timezone import to_plant
from core.tables import STATUSES, Coil, Finding, Inspection, reviewed_label, utcnow

bp = Blueprint("live", __name__)

#: how long one process reuses what it read for every page (seconds)
LIVE_MAX_AGE_S = 2.0
#: the latest flagged inspections shown on the dashboard
LATEST_COUNT = 8
#: the queue's "N new" stops counting here ("99+")
NEW_ROWS_LIMIT = 99
#: the coil view's page of one coil (admin/coils.py)
COIL_ENDPOINT = "coils.coil"
_ROW_ID = re.compile(r"[0-9]{1,10}")


def frames_per_minute(db: Session, now: datetime) -> dict[str, float]:
    """Inspections stored in the last minute, and per minute over the last five."""
    last_minute, last_five = db.execute(
        select(
            func.count(Inspection.id).filter(Inspection.processed_at >= now - timedelta(minutes=1)),
            func.count(Inspection.id),
        ).where(Inspection.processed_at >= now - timedelta(minutes=5))
    ).one()
    return {"last_minute": int(last_minute), "last_5_minutes": round(last_five / 5, 1)}


def last_hour_by_status(db: Session, now: datetime) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for status, count in db.execute(
        select(Inspection.status, func.count(Inspection.id))
        .where(Inspection.processed_at >= now - timedelta(hours=1))
        .group_by(Inspection.status)
    ):
        counts[status] = int(count)
    return counts


def coil_link(coil_id: str) -> str | None:
    """The coil's page, where the site has one (an app without the coil view still
    answers)."""
    if COIL_ENDPOINT not in current_app.view_functions:
        return None
    try:
        return url_for(COIL_ENDPOINT, coil_id=coil_id)
    except BuildError:
        return None


def current_coil(db: Session) -> dict[str, Any] | None:
    """The coil frames arrive for now: the one seen last that has not ended."""
    coil = db.scalar(
        select(Coil).where(Coil.ended_at.is_(None)).order_by(Coil.last_frame_at.desc()).limit(1)
    )
    if coil is None:
        return None
    return {
        "id": coil.coil_id,
        "frames": coil.frames,
        "flagged": coil.flagged,
        "length_m": coil.length_m,
        "last_frame_at": coil.last_frame_at.isoformat(),
        "href": coil_link(coil.coil_id),
    }


def box_of(finding: Finding, width: int | None, height: int | None) -> dict[str, Any]:
    """A finding as the page draws it: the box in percent of its image, so that it
    fits the thumbnail at whatever size that is shown."""
    box = None
    if width and height:
        box = {
            "x": round(100 * finding.x / width, 3),
            "y": round(100 * finding.y / height, 3),
            "width": round(100 * finding.width / width, 3),
            "height": round(100 * finding.height / height, 3),
        }
    return {"label": finding.label, "score": round(finding.score, 4), "box": box}


def latest_flagged(db: Session, count: int = LATEST_COUNT) -> list[dict[str, Any]]:
    rows = list(
        db.scalars(
            select(Inspection)
            .where(Inspection.status == "flagged")
            .order_by(Inspection.processed_at.desc(), Inspection.id.desc())
            .limit(count)
        )
    )
    findings = findings_of(db, [row.id for row in rows])
    return [
        {
            "id": row.id,
            "href": url_for("inspections.detail", inspection_id=row.id),
            "thumbnail": url_for("images.thumbnail", key=row.image_key) if row.image_key else None,
            "label": reviewed_label(row.label, row.review_state, row.review_label),
            "review_state": row.review_state,
            "camera": row.camera,
            "coil_id": row.coil_id,
            "position_m": row.position_m,
            "processed_at": row.processed_at.isoformat(),
            "time": to_plant(row.processed_at).strftime("%H:%M:%S"),
            "findings": [
                box_of(f, row.image_width, row.image_height) for f in findings.get(row.id, [])
            ],
        }
        for row in rows
    ]


def line_now() -> dict[str, Any]:
    """Queue length and workers from the status this process read lately (the
    dashboard's own poll shares it), read again only when it is older than 5 s."""
    cache = line_cache()
    status = cache.recent() or cache.refresh(POLL_TIMEOUT_S)
    return {
        "queue_length": status.queue,
        "workers_online": None if status.error else len(status.workers),
        "workers": status.workers,
        "line_error": status.error,
    }


def build_snapshot(db: Session) -> dict[str, Any]:
    """What every live page shares, read now."""
    now = utcnow()
    return {
        "now": now.isoformat(),
        "frames_per_minute": frames_per_minute(db, now),
        "last_hour": last_hour_by_status(db, now),
        "coil": current_coil(db),
        "latest_flagged": latest_flagged(db),
        **line_now(),
        "to_review": count_waiting(),
        "alarms": [alarm.as_json() for alarm in current_alarms(db, now)],
    }


class SnapshotCache:
    """The last snapshot this process made (one per app: tests build several)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made_at = 0.0
        self._last: dict[str, Any] | None = None

    def recent(self, max_age: float) -> dict[str, Any] | None:
        with self._lock:
            if self._last is not None and time.monotonic() - self._made_at <= max_age:
                return self._last
        return None

    def store(self, snapshot: dict[str, Any]) -> None:
        with self._lock:
            self._made_at, self._last = time.monotonic(), snapshot


def max_age() -> float:
    return float(current_app.config.get("LIVE_MAX_AGE_S", LIVE_MAX_AGE_S))


def snapshot_cache() -> SnapshotCache:
    cache: SnapshotCache = current_app.extensions.setdefault("live_snapshot", SnapshotCache())
    return cache


@bp.app_template_global()
def live_snapshot() -> dict[str, Any]:
    """The shared snapshot, at most ``LIVE_MAX_AGE_S`` old: the dashboard renders its
    live numbers from it, so the page is right before its script first polls."""
    cache = snapshot_cache()
    found = cache.recent(max_age())
    if found is None:
        found = build_snapshot(get_db())
        cache.store(found)
    return found


@bp.app_template_global()
def live_alarms() -> list[dict[str, Any]]:
    """The active alarms for a page's banner: the recent snapshot's, else counted now
    (one query, not the whole snapshot)."""
    found = snapshot_cache().recent(max_age())
    if found is not None:
        alarms: list[dict[str, Any]] = found["alarms"]
        return alarms
    return [alarm.as_json() for alarm in current_alarms(get_db())]


@bp.app_template_global()
def latest_inspection_id() -> int:
    """The newest row's id when the page was made: rows after it are new to the page."""
    return int(get_db().scalar(select(func.max(Inspection.id))) or 0)


def new_rows(db: Session, f: QueueFilter, after: int) -> dict[str, Any]:
    """Rows of the queue's filter stored after row ``after``, counted up to
    ``NEW_ROWS_LIMIT`` (a range of the primary key: a few rows however large the table)."""
    inner = (
        select(Inspection.id)
        .where(Inspection.id > after, *f.conditions())
        .limit(NEW_ROWS_LIMIT + 1)
        .subquery()
    )
    count = int(db.scalar(select(func.count()).select_from(inner)) or 0)
    return {"after": after, "new": min(count, NEW_ROWS_LIMIT), "more": count > NEW_ROWS_LIMIT}


@bp.get("/live.json")
def live() -> Any:
    body = dict(live_snapshot())
    after_text = request.args.get("queue_after")
    if after_text is not None:
        if not _ROW_ID.fullmatch(after_text) or int(after_text) > MAX_ROW_ID:
            response = jsonify(error="queue_after must be an inspection id (a whole number)")
            return response, 400
        body["queue"] = new_rows(get_db(), QueueFilter.from_args(request.args), int(after_text))
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response
