"""Threshold tuning (admins): set the match threshold globally or per label, preview how
many recent inspections would change verdict, save; workers follow without a restart.

Settings belong to the model version this site has loaded (``MODEL_CHECKPOINT``, the
same as the workers'); those made for other versions are listed but do not apply."""

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
    version = get_embedder().version
    current = load_thresholds(db, default, version)
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
                set_threshold(db, version, label, value, current_user.username)
                db.commit()
                shown = "removed" if value is None else f"set to {value:g}"
                flash(
                    f"Threshold for {label} {shown} for model {version}. Workers running it "
                    "use it from their next batch.",
                    "info",
                )
                return redirect(url_for("thresholds.thresholds"))
            rows = db.execute(
                select(Inspection.status, Inspection.label, Inspection.distances)
                .where(
                    Inspection.processed_at >= utcnow() - PREVIEW_WINDOW,
                    Inspection.status != "rejected",
                    # another model's distances are on another scale
                    Inspection.model_version == version,
                )
                .order_by(Inspection.processed_at.desc())
                .limit(PREVIEW_LIMIT)
            )
            preview = preview_change(rows.tuples().all(), current, label, value)
        except ValueError as exc:
            flash(str(exc), "error")
    every_setting = db.scalars(
        select(ThresholdSetting).order_by(ThresholdSetting.model_version, ThresholdSetting.label)
    ).all()
    settings = [s for s in every_setting if s.model_version == version]
    other_settings = [s for s in every_setting if s.model_version != version]
    changes = db.scalars(
        select(ThresholdChange).order_by(ThresholdChange.changed_at.desc()).limit(50)
    ).all()
    return render_template(
        "thresholds.html",
        default=default,
        source=source,
        version=version,
        settings=settings,
        other_settings=other_settings,
        changes=changes,
        labels=labels,
        preview=preview,
        label=label,
        value_text=value_text,
        window_days=PREVIEW_WINDOW.days,
    )
