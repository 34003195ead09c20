"""Threshold tuning (admins): set the match threshold globally or per label, preview how
many recent inspections would change verdict, save; workers follow without a restart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from admin.db import get_db
from admin.model import get_embedder
from admin.roles import admin_required
from core.settings import get_settings
from core.tables import Inspection, Reference, ThresholdChange, ThresholdSetting, utcnow
from core.thresholds import GLOBAL, load_thresholds, preview_change, set_threshold

bp = Blueprint("thresholds", __name__, url_prefix="/thresholds")
PREVIEW_WINDOW = timedelta(days=7)
PREVIEW_LIMIT = 20_000


def base_threshold() -> tuple[float, str]:
    """The threshold before any admin setting, and where it comes from."""
    settings = get_settings()
    if settings.match_threshold is not None:
        return settings.match_threshold, "MATCH_THRESHOLD"
    return float(get_embedder().meta["threshold"]), "the model's calibration"


def parse_value(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


@bp.route("/", methods=["GET", "POST"])
@admin_required
def thresholds() -> Any:
    db = get_db()
    default, source = base_threshold()
    current = load_thresholds(db, default)
    labels = sorted(
        set(db.scalars(select(Reference.label).distinct())) | set(current.per_label) - {GLOBAL}
    )
    preview = None
    label = request.form.get("label", GLOBAL)
    value_text = request.form.get("value", "")
    if request.method == "POST":
        try:
            value = parse_value(value_text)
            if request.form.get("do") == "save":
                set_threshold(db, label, value, current_user.username)
                db.commit()
                shown = "removed" if value is None else f"set to {value:g}"
                flash(
                    f"Threshold for {label} {shown}. Workers use it from their next batch.", "info"
                )
                return redirect(url_for("thresholds.thresholds"))
            rows = db.execute(
                select(Inspection.status, Inspection.label, Inspection.distances)
                .where(
                    Inspection.processed_at >= utcnow() - PREVIEW_WINDOW,
                    Inspection.status != "rejected",
                )
                .order_by(Inspection.processed_at.desc())
                .limit(PREVIEW_LIMIT)
            ).all()
            preview = preview_change(rows, current, label, value)
        except ValueError as exc:
            flash(str(exc), "error")
    settings = db.scalars(select(ThresholdSetting).order_by(ThresholdSetting.label)).all()
    changes = db.scalars(
        select(ThresholdChange).order_by(ThresholdChange.changed_at.desc()).limit(50)
    ).all()
    return render_template(
        "thresholds.html",
        default=default,
        source=source,
        settings=settings,
        changes=changes,
        labels=labels,
        preview=preview,
        label=label,
        value_text=value_text,
        window_days=PREVIEW_WINDOW.days,
    )
