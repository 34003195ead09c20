"""The flagged-defects queue and the inspection detail page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from sqlalchemy import func, select

from admin.db import get_db
from core.tables import Inspection, Reference

bp = Blueprint("inspections", __name__)


@bp.route("/")
def index() -> Any:
    return redirect(url_for("inspections.flagged"))


@bp.route("/flagged")
def flagged() -> Any:
    """Flagged inspections, newest first, a page at a time."""
    db = get_db()
    page_size = current_app.config["PAGE_SIZE"]
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    total = db.scalar(select(func.count()).where(Inspection.status == "flagged")) or 0
    rows = db.scalars(
        select(Inspection)
        .where(Inspection.status == "flagged")
        .order_by(Inspection.processed_at.desc(), Inspection.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    pages = max((total + page_size - 1) // page_size, 1)
    return render_template("flagged.html", rows=rows, page=page, pages=pages, total=total)


@bp.route("/inspections/<int:inspection_id>")
def detail(inspection_id: int) -> Any:
    db = get_db()
    inspection = db.get(Inspection, inspection_id)
    if inspection is None:
        abort(404)
    nearest = (
        db.get(Reference, inspection.nearest_reference_id)
        if inspection.nearest_reference_id
        else None
    )
    distances = inspection.distances or []
    longest = max([d["distance"] for d in distances] + [inspection.threshold or 0.0, 1e-9])
    return render_template(
        "detail.html", inspection=inspection, nearest=nearest, distances=distances, longest=longest
    )
