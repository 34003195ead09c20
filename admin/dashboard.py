"""The dashboard: what the line did in the last hour, day and week, and what runs now."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import redis
from flask import Blueprint, current_app, render_template
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin.db import get_db
from core.queue import jobs_held, queue_length, workers_online
from core.tables import DeadLetter, Inspection, ModelVersion, utcnow

bp = Blueprint("dashboard", __name__)
WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}


def counts_by(db: Session, column: Any, since: datetime, limit: int = 12) -> list[tuple[str, int]]:
    rows = db.execute(
        select(column, func.count(Inspection.id))
        .where(Inspection.processed_at >= since)
        .group_by(column)
        .order_by(func.count(Inspection.id).desc())
        .limit(limit)
    ).all()
    return [(str(value) if value is not None else "–", count) for value, count in rows]


def bucket(db: Session, unit: str) -> Any:
    """processed_at truncated to the minute or the hour, on PostgreSQL and SQLite."""
    if db.get_bind().dialect.name == "postgresql":
        return func.date_trunc(unit, Inspection.processed_at)
    pattern = "%Y-%m-%d %H:%M:00" if unit == "minute" else "%Y-%m-%d %H:00:00"
    return func.strftime(pattern, Inspection.processed_at)


def throughput(db: Session, unit: str, span: timedelta, now: datetime) -> list[tuple[str, int]]:
    """Images processed per minute (or hour), oldest first, empty buckets included."""
    step = timedelta(minutes=1) if unit == "minute" else timedelta(hours=1)
    key = bucket(db, unit)
    rows = db.execute(
        select(key, func.count(Inspection.id))
        .where(Inspection.processed_at >= now - span)
        .group_by(key)
    ).all()
    found = {}
    for stamp, count in rows:
        text = stamp.strftime("%Y-%m-%d %H:%M") if hasattr(stamp, "strftime") else str(stamp)[:16]
        found[text] = count
    start = now - span
    start = start.replace(second=0, microsecond=0)
    if unit == "hour":
        start = start.replace(minute=0)
    series, t = [], start
    while t <= now:
        label = t.strftime("%Y-%m-%d %H:%M")
        series.append((label[11:] if unit == "minute" else label[5:], found.get(label, 0)))
        t += step
    return series


def line_status() -> dict[str, Any]:
    """Queue length and the workers whose heartbeat is fresh, from Redis."""
    redis_url = current_app.config["REDIS_URL"]
    status: dict[str, Any] = {"queue": None, "workers": [], "error": None}
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        status["queue"] = queue_length(client)
        status["unacked"] = jobs_held(client)
        status["workers"] = workers_online(client)
        client.close()
    except (redis.RedisError, OSError) as exc:
        status["error"] = f"Redis does not answer at {redis_url}: {exc}"
    return status


@bp.route("/dashboard")
def dashboard() -> Any:
    db = get_db()
    now = utcnow()
    windows = {
        name: {
            "status": counts_by(db, Inspection.status, now - span),
            "label": counts_by(db, Inspection.label, now - span),
            "camera": counts_by(db, Inspection.camera, now - span),
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
        line=line_status(),
        models=models,
        in_use=in_use,
        now=now,
    )
