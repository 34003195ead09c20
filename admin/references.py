"""The reference library: upload, list by label with match counts, deactivate; add
a frame's finding, or a box an admin drew on a frame, as a reference.

Everyone may look; only admins change it. Workers notice every change on their
next batch (``core.references.ReferenceCache``), without a restart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from PIL import Image
from sqlalchemy import func, select
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from admin.db import get_db, get_or_404, get_store
from admin.images import Box, cut, png_bytes, square_around
from admin.roles import admin_required
from core.images import ImageRejected, decode_image
from core.references import add_reference
from core.settings import get_settings
from core.tables import REFERENCE_KINDS, UNKNOWN_LABEL, Finding, Inspection, Reference

bp = Blueprint("references", __name__, url_prefix="/references")

# Below this many active references a label's section advises adding more:
# measured in docs/model.md (*More than one reference per class*), three
# references per defect type lift the default's 3-way accuracy on unseen
# classes from 0.89 to 0.95.
ADVISED_REFERENCES = 3
#: the smallest box an admin may draw on a frame to make a reference of it
MIN_BOX_SIDE = 8
_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")


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


def frame_of(inspection: Inspection) -> Image.Image:
    """The inspection's stored frame, decoded within the worker's limits."""
    if not inspection.image_key or inspection.status == "rejected":
        abort(404)
    store, settings = get_store(), get_settings()
    if not store.exists(inspection.image_key):
        raise ValueError("the frame's image is no longer in the image store")
    data = store.get(inspection.image_key)
    return decode_image(data, settings.max_image_bytes, settings.max_image_pixels)


def reference_label(label: str) -> str:
    """``label`` for a reference made from a frame: not the line's name for a defect
    no reference matches."""
    label = label.strip()
    if label == UNKNOWN_LABEL:
        raise ValueError(
            f"'{UNKNOWN_LABEL}' is what the line calls a defect no reference matches; "
            "choose the defect's label"
        )
    return label


def parse_box(form: Mapping[str, str], size: tuple[int, int]) -> Box:
    """The box x, y, width, height of ``form`` in frame pixels, when its values are
    whole numbers that make a box of at least MIN_BOX_SIDE pixels a side inside a
    frame of ``size``; a ``ValueError`` saying what is wrong otherwise."""
    values = []
    for name in ("x", "y", "width", "height"):
        text = (form.get(name) or "").strip()
        if not _WHOLE_NUMBER.fullmatch(text):
            raise ValueError(
                f"the box's {name} must be a whole number of pixels, 0 or more "
                f"(got {text[:20]!r}); draw the box again"
            )
        values.append(int(text))
    x, y, width, height = values
    if width < MIN_BOX_SIDE or height < MIN_BOX_SIDE:
        raise ValueError(
            f"the box is {width}x{height} pixels; draw one of at least "
            f"{MIN_BOX_SIDE}x{MIN_BOX_SIDE}"
        )
    if x + width > size[0] or y + height > size[1]:
        raise ValueError(
            f"the box at {x},{y} of {width}x{height} pixels reaches past the frame "
            f"({size[0]}x{size[1]} pixels); draw it inside the frame"
        )
    return x, y, width, height


def add_crop(frame: Image.Image, box: Box, label: str, kind: str) -> Reference:
    """The region ``box`` of ``frame`` as a new reference (added, not committed)."""
    settings = get_settings()
    return add_reference(
        get_db(),
        get_store(),
        png_bytes(cut(frame, box)),
        reference_label(label),
        kind,
        current_user.username,
        settings.max_image_bytes,
        settings.max_image_pixels,
    )


@bp.route("/from-finding/<int:finding_id>", methods=["POST"])
@admin_required
def from_finding(finding_id: int) -> Any:
    """A finding's crop (the square the detail page shows for it) as a new defect
    reference, with the finding's label or one chosen from the existing ones."""
    db = get_db()
    finding = get_or_404(Finding, finding_id)
    inspection = finding.inspection
    number = finding.rank + 1  # the page numbers findings from 1, the most anomalous
    back = url_for("inspections.detail", inspection_id=inspection.id, _anchor="findings")
    label = request.form.get("label") or finding.label
    try:
        frame = frame_of(inspection)
        box = square_around((finding.x, finding.y, finding.width, finding.height), frame.size)
        reference = add_crop(frame, box, label, "defect")
        reference.note = f"from finding {number} of inspection {inspection.id}"
        db.commit()
    except (ValueError, ImageRejected) as exc:
        db.rollback()
        flash(f"Not added: {exc}", "error")
        return redirect(back)
    flash(
        f"Finding {number} of inspection {inspection.id} is now reference {reference.id}: "
        f"{reference.label} (defect). Workers use it from their next batch.",
        "info",
    )
    return redirect(back)


@bp.route("/from-box/<int:inspection_id>", methods=["POST"])
@admin_required
def from_box(inspection_id: int) -> Any:
    """A box an admin drew on the frame (frame pixels) as a new reference, cut
    exactly. An ``ok`` one gets no camera: a region is not a good frame."""
    db = get_db()
    inspection = get_or_404(Inspection, inspection_id)
    back = url_for("inspections.detail", inspection_id=inspection_id)
    try:
        frame = frame_of(inspection)
        x, y, width, height = box = parse_box(request.form, frame.size)
        reference = add_crop(
            frame, box, request.form.get("label", ""), request.form.get("kind", "defect")
        )
        reference.note = f"box {x},{y},{width},{height} of inspection {inspection_id}"
        db.commit()
    except (ValueError, ImageRejected) as exc:
        db.rollback()
        flash(f"Not added: {exc}", "error")
        return redirect(back)
    flash(
        f"The {width}x{height} box at {x},{y} of inspection {inspection_id} is now "
        f"reference {reference.id}: {reference.label} ({reference.kind}). "
        "Workers use it from their next batch.",
        "info",
    )
    return redirect(back)
