"""The reference library: upload, list by label with match counts, deactivate.

Everyone may look; only admins change it. Workers notice every change on their
next batch (``core.references.ReferenceCache``), without a restart.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy import func, select
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from admin.db import get_db, get_or_404, get_store
from admin.roles import admin_required
from core.images import ImageRejected
from core.references import add_reference
from core.settings import get_settings
from core.tables import REFERENCE_KINDS, Inspection, Reference

bp = Blueprint("references", __name__, url_prefix="/references")

# Below this many active references a label's section advises adding more:
# measured in docs/model.md (*More than one reference per class*), three
# references per defect type lift the default's 3-way accuracy on unseen
# classes from 0.89 to 0.95.
ADVISED_REFERENCES = 3


class ReferenceForm(FlaskForm):
    image = FileField("Image", validators=[FileRequired()])
    label = StringField("Label", validators=[DataRequired(), Length(max=80)])
    kind = SelectField("Kind", choices=list(REFERENCE_KINDS))
    note = TextAreaField("Note", validators=[Length(max=500)])


@bp.route("/")
def library() -> Any:
    db = get_db()
    matches: dict[int | None, int] = dict(
        db.execute(
            select(Inspection.nearest_reference_id, func.count(Inspection.id))
            .where(Inspection.nearest_reference_id.is_not(None))
            .group_by(Inspection.nearest_reference_id)
        )
        .tuples()
        .all()
    )
    references = db.scalars(select(Reference).order_by(Reference.label, Reference.id)).all()
    by_label: dict[str, list[Reference]] = {}
    for reference in references:
        by_label.setdefault(reference.label, []).append(reference)
    active = {
        label: sum(reference.active for reference in group) for label, group in by_label.items()
    }
    return render_template(
        "references.html",
        by_label=by_label,
        active=active,
        advised=ADVISED_REFERENCES,
        matches=matches,
        form=ReferenceForm(),
    )


@bp.route("/", methods=["POST"])
@admin_required
def upload() -> Any:
    form = ReferenceForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return redirect(url_for("references.library"))
    settings = get_settings()
    db = get_db()
    try:
        reference = add_reference(
            db,
            get_store(),
            form.image.data.read(),
            form.label.data,
            form.kind.data,
            current_user.username,
            settings.max_image_bytes,
            settings.max_image_pixels,
        )
        reference.note = form.note.data or None
        db.commit()
    except (ValueError, ImageRejected) as exc:
        db.rollback()
        flash(f"Not added: {exc}", "error")
        return redirect(url_for("references.library"))
    flash(
        f"Reference {reference.id} added: {reference.label} ({reference.kind}). "
        "Workers use it from their next batch.",
        "info",
    )
    return redirect(url_for("references.library"))


@bp.route("/<int:reference_id>/active", methods=["POST"])
@admin_required
def set_active(reference_id: int) -> Any:
    db = get_db()
    reference = get_or_404(Reference, reference_id)
    reference.active = request.form.get("active") == "1"
    db.commit()
    state = "active again" if reference.active else "deactivated"
    flash(f"Reference {reference_id} ({reference.label}) {state}.", "info")
    return redirect(url_for("references.library"))


@bp.route("/from-inspection/<int:inspection_id>", methods=["POST"])
@admin_required
def from_inspection(inspection_id: int) -> Any:
    """Use an inspected image as a new reference (its stored bytes, a label, a kind)."""
    db = get_db()
    inspection = db.get(Inspection, inspection_id)
    if inspection is None or not inspection.image_key:
        abort(404)
    label = (request.form.get("label") or inspection.label or "").strip()
    kind = request.form.get("kind", "defect")
    settings = get_settings()
    try:
        data = get_store().get(inspection.image_key)
        reference = add_reference(
            db,
            get_store(),
            data,
            label,
            kind,
            current_user.username,
            settings.max_image_bytes,
            settings.max_image_pixels,
        )
        reference.note = f"from inspection {inspection_id}"
        db.commit()
    except (ValueError, ImageRejected, OSError) as exc:
        db.rollback()
        flash(f"Not added: {exc}", "error")
        return redirect(url_for("inspections.detail", inspection_id=inspection_id))
    flash(f"Inspection {inspection_id} is now reference {reference.id}: {label} ({kind}).", "info")
    return redirect(url_for("inspections.detail", inspection_id=inspection_id))
