"""The dashboard: what the line did in the last hour, day and week, and what runs now;
and the count of images waiting for review that the menu shows on every page.

Every bar of the dashboard's charts links to the queue filtered to the rows it
counts, so a spike on a camera or an hour is one click from its images.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, g, jsonify, render_template, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from admin.db import get_db
from admin.line_status import status_for_page, status_now
from admin.review_queue import QueueFilter, bounded_count
from admin.timezone import to_plant
from core.tables import DeadLetter, Inspection, ModelVersion, utcnow

bp = Blueprint("dashboard", __name__)
WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}


#: the menu's count stops here ("999+"): counting every pending row of a backlog
#: on every page would cost more than the number is worth
MENU_COUNT_LIMIT = 999


def queue_link(**filters: str) -> str:
    """The queue filtered to ``filters``, over every review state unless one is given:
    the charts count reviewed and pending rows alike."""
    args: dict[str, Any] = {"review": "any", **filters}
    return url_for("inspections.queue", **args)


def since_arg(moment: datetime) -> str:
    """A time as the queue's since/until take it: plant time without an offset, as
    its form's date-time fields show and send it."""
    return to_plant(moment).replace(tzinfo=None).isoformat(timespec="seconds")


def counts_by(
    db: Session, column: Any, filter_name: str, since: datetime, limit: int = 12
) -> dict[str, list[Any]]:
    """The most frequent values of ``column`` since ``since``: a bar chart's items and,
    for each bar, the queue filtered to its rows (none for a missing value, which
    the queue cannot filter for)."""
    rows = db.execute(
        select(column, func.count(Inspection.id))
        .where(Inspection.processed_at >= since)
        .group_by(column)
        .order_by(func.count(Inspection.id).desc())
        .limit(limit)
    ).all()
    any_status = {} if filter_name == "status" else {"status": ""}
    return {
        "items": [(str(value) if value is not None else "–", count) for value, count in rows],
        "links": [
            queue_link(**any_status, **{filter_name: str(value)}, since=since_arg(since))
            if value is not None
            else None
            for value, _ in rows
        ],
    }


def bucket(db: Session, unit: str) -> Any:
    """processed_at truncated to the minute or the hour, on PostgreSQL and SQLite."""
    if db.get_bind().dialect.name == "postgresql":
        return func.date_trunc(unit, Inspection.processed_at)
    pattern = "%Y-%m-%d %H:%M:00" if unit == "minute" else "%Y-%m-%d %H:00:00"
    return func.strftime(pattern, Inspection.processed_at)


def throughput(db: Session, unit: str, span: timedelta, now: datetime) -> dict[str, list[Any]]:
    """Images processed per minute (or hour), oldest first, empty buckets included:
    a series chart's points and, for each, the queue over that minute (hour)."""
    step = timedelta(minutes=1) if unit == "minute" else timedelta(hours=1)
    key = bucket(db, unit)
    since = now - span
    rows = db.execute(
        select(key, func.count(Inspection.id)).where(Inspection.processed_at >= since).group_by(key)
    ).all()
    found = {}
    for stamp, count in rows:
        text = stamp.strftime("%Y-%m-%d %H:%M") if hasattr(stamp, "strftime") else str(stamp)[:16]
        found[text] = count
    start = since.replace(second=0, microsecond=0)
    if unit == "hour":
        start = start.replace(minute=0)
    points, links, t = [], [], start
    while t <= now:
        label = t.strftime("%Y-%m-%d %H:%M")
        shown = to_plant(t).strftime("%H:%M" if unit == "minute" else "%m-%d %H:%M")
        points.append((shown, found.get(label, 0)))
        # the oldest bucket counts only its part inside the span; so does its link
        links.append(
            queue_link(status="", since=since_arg(max(t, since)), until=since_arg(t + step))
        )
        t += step
    return {"points": points, "links": links}


@bp.route("/dashboard")
def dashboard() -> Any:
    db = get_db()
    now = utcnow().replace(microsecond=0)  # whole seconds: the charts' links say the same
    windows = {
        name: {
            "status": counts_by(db, Inspection.status, "status", now - span),
            "label": counts_by(db, Inspection.label, "label", now - span),
            "camera": counts_by(db, Inspection.camera, "camera", now - span),
        }
        for name, span in WINDOWS.items()
    }
    models = db.scalars(
        select(ModelVersion).order_by(ModelVersion.first_loaded_at.desc()).limit(5)
    ).all()
    in_use = db.execute(
        select(Inspection.model_version, func.count(Inspection.id))
        .where(Inspection.processed_at >= now - WINDOWS["hour"])
        .group_by(Inspection.model_version)
    ).all()
    dead_letters = db.scalar(
        select(func.count(DeadLetter.id)).where(DeadLetter.received_at >= now - WINDOWS["day"])
    )
    return render_template(
        "dashboard.html",
        dead_letters=dead_letters,
        windows=windows,
        per_minute=throughput(db, "minute", timedelta(hours=1), now),
        per_hour=throughput(db, "hour", timedelta(days=1), now),
        line=status_for_page(),
        models=models,
        in_use=in_use,
        now=now,
    )


@bp.route("/dashboard/line")
def line() -> Any:
    """The line's status now, as JSON: what the dashboard's script polls
    (``admin/static/dashboard.js``), so the page itself never waits for it."""
    status = status_now()
    response = jsonify(status.as_json())
    response.headers["Cache-Control"] = "no-store"
    return response, 503 if status.error else 200


@bp.app_context_processor
def waiting_for_review() -> dict[str, Any]:
    """The menu's count of flagged images waiting for review, once per request."""
    if not current_user.is_authenticated:
        return {}
    if "waiting" not in g:
        g.waiting = count_waiting()
    return {"waiting": g.waiting}


def count_waiting() -> dict[str, Any] | None:
    """Flagged images not yet reviewed, counted up to ``MENU_COUNT_LIMIT``, and the
    queue showing them; None when the database cannot say (an error page must
    still render)."""
    f = QueueFilter(status="flagged", review="pending")
    db = get_db()
    try:
        # no autoflush: a page rendered over changes its route has not committed
        # (a form shown again with its errors) must not write them for a count
        with db.no_autoflush:
            count, more = bounded_count(db, f, limit=MENU_COUNT_LIMIT)
    except SQLAlchemyError:
        db.rollback()
        return None
    args: dict[str, Any] = f.as_args()
    return {
        "count": count,
        "text": f"{count}+" if more else str(count),
        "href": url_for("inspections.queue", **args),
    }
