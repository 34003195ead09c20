"""The reference library: upload, list by label with match counts, deactivate; add
a frame's finding, or a box an admin drew on a frame, as a reference; the labels to
choose from, (de)activated.

Every form chooses its label from the list (``admin.labels``): a new one is an
explicit choice, and one that looks like an existing label is confirmed first.
Deactivating asks first (``admin.confirmation``).

Everyone may look; only admins change it. Workers notice every change on their
next batch (``core.references.ReferenceCache``), without a restart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from PIL import Image
from sqlalchemy import func, select
from wtforms import SelectField, TextAreaField
from wtforms.validators import Length

from admin.confirmation import Pick, Question, ask, confirmed
from admin.db import get_db, get_or_404, get_store
from admin.images import Box, cut, png_bytes, square_around
from admin.labels import (
    NEW_LABEL,
    SimilarLabel,
    active_labels,
    chosen_label,
    near_duplicates,
    set_label_active,
)
from admin.roles import admin_required
from core.images import ImageRejected, decode_image
from core.references import add_reference
from core.settings import get_settings
from core.tables import (
    REFERENCE_KINDS,
    UNKNOWN_LABEL,
    Finding,
    Inspection,
    Label,
    Reference,
    check_name,
)

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
    """The upload form; its label is chosen as every label is (``admin.labels``)."""

    image = FileField("Image", validators=[FileRequired()])
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
        choices=reference_choices(),
        labels=db.scalars(select(Label).order_by(Label.name)).all(),
    )


def reference_choices() -> list[str]:
    """The labels a reference may be given: the active ones, less the line's name for
    a defect no reference matches."""
    return [label for label in active_labels(get_db()) if label != UNKNOWN_LABEL]


def chosen_reference_label(form: Mapping[str, str]) -> str:
    """The label a reference form chose (``admin.labels.chosen_label``), never the
    line's ``unknown``; a new one is added to the list with the reference."""
    typed = form.get("new_label") if form.get("label") == NEW_LABEL else form.get("label")
    if typed:
        reference_label(typed)
    return chosen_label(get_db(), form, current_user.username, needs="a reference")


def confirm_new_label(similar: SimilarLabel, back: str) -> Any:
    """The page that asks, without the page's script, whether a new label that looks
    like existing ones is meant; nothing is added until it is answered."""
    options = [(label, f"Use the existing label '{label}'") for label in similar.similar]
    options.append((NEW_LABEL, f"Create the new label '{similar.name}' all the same"))
    return ask(
        Question(
            title=f"Is '{similar.name}' a new label?",
            changes=[str(similar)],
            back=back,
            yes="Add the reference",
            pick=Pick("label", options),
            replace={"confirm_similar": similar.name},
        )
    )


@bp.get("/labels/similar")
def similar_labels() -> Any:
    """The labels a name typed for a new label looks like (the forms' script warns
    with them while it is typed): ``{"name", "exists", "similar": [...]}``."""
    name = (request.args.get("name") or "").strip()[:200]
    names = list(get_db().scalars(select(Label.name)))
    return jsonify(name=name, exists=name in names, similar=near_duplicates(name, names))


@bp.route("/", methods=["POST"])
@admin_required
def upload() -> Any:
    form = ReferenceForm()
    back = url_for("references.library")
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return redirect(back)
    settings = get_settings()
    db = get_db()
    try:
        label = chosen_reference_label(request.form)
        reference = add_reference(
            db,
            get_store(),
            form.image.data.read(),
            label,
            form.kind.data,
            current_user.username,
            settings.max_image_bytes,
            settings.max_image_pixels,
        )
        reference.note = form.note.data or None
        db.commit()
    except SimilarLabel as similar:
        db.rollback()
        return confirm_new_label(similar, back)
    except (ValueError, ImageRejected) as exc:
        db.rollback()
        flash(f"Not added: {exc}", "error")
        return redirect(back)
    flash(
        f"Reference {reference.id} added: {reference.label} ({reference.kind}). "
        "Workers use it from their next batch.",
        "info",
    )
    return redirect(back)


@bp.route("/<int:reference_id>/active", methods=["POST"])
@admin_required
def set_active(reference_id: int) -> Any:
    db = get_db()
    reference = get_or_404(Reference, reference_id)
    active = request.form.get("active") == "1"
    if reference.active and not active and not confirmed():
        others = get_db().scalar(
            select(func.count(Reference.id)).where(
                Reference.label == reference.label,
                Reference.active.is_(True),
                Reference.id != reference.id,
            )
        )
        left = (
            f"{others} other active reference(s) of '{reference.label}' remain."
            if others
            else f"It is the last active reference of '{reference.label}': images of that "
            "defect will no longer be named by a reference."
        )
        return ask(
            Question(
                title=f"Deactivate reference {reference_id}?",
                changes=[
                    f"Reference {reference_id} ({reference.label}, {reference.kind}) is no "
                    "longer matched from the workers' next batch; it stays in the library "
                    "and can be activated again.",
                    left,
                ],
                back=url_for("references.library"),
            )
        )
    reference.active = active
    db.commit()
    state = "active again" if reference.active else "deactivated"
    flash(f"Reference {reference_id} ({reference.label}) {state}.", "info")
    return redirect(url_for("references.library"))


@bp.post("/labels/active")
@admin_required
def set_label_state() -> Any:
    """Deactivate a label (after a confirmation) or activate it again."""
    db = get_db()
    back = url_for("references.library", _anchor="labels")
    active = request.form.get("active") == "1"
    try:
        name = check_name(request.form.get("name") or "", "the label")
        label = db.get(Label, name)
        if label is not None and label.active and not active and not confirmed():
            return ask(
                Question(
                    title=f"Deactivate the label '{name}'?",
                    changes=[
                        f"'{name}' leaves the queue's label filter, the relabel lists and "
                        "the labels new references are given.",
                        "Inspections and references that carry it keep it, and references "
                        "of it are still matched; it can be activated again.",
                    ],
                    back=back,
                )
            )
        set_label_active(db, name, active)
        db.commit()
    except ValueError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(back)
    flash(f"Label '{name}' {'active again' if active else 'deactivated'}.", "info")
    return redirect(back)


@bp.route("/from-inspection/<int:inspection_id>", methods=["POST"])
@admin_required
def from_inspection(inspection_id: int) -> Any:
    """Use an inspected image as a new reference (its stored bytes, a label, a kind)."""
    db = get_db()
    inspection = db.get(Inspection, inspection_id)
    if inspection is None or not inspection.image_key:
        abort(404)
    back = url_for("inspections.detail", inspection_id=inspection_id)
    form = request.form.to_dict()
    if not form.get("label"):
        form["label"] = inspection.review_label or inspection.label or ""
    kind = request.form.get("kind", "defect")
    settings = get_settings()
    try:
        label = chosen_reference_label(form)
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
    except SimilarLabel as similar:
        db.rollback()
        return confirm_new_label(similar, back)
    except (ValueError, ImageRejected, OSError) as exc:
        db.rollback()
        flash(f"Not added: {exc}", "error")
        return redirect(back)
    flash(f"Inspection {inspection_id} is now reference {reference.id}: {label} ({kind}).", "info")
    return redirect(back)


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
    form = request.form.to_dict()
    if not form.get("label"):
        form["label"] = finding.label
    try:
        label = chosen_reference_label(form)
        frame = frame_of(inspection)
        box = square_around((finding.x, finding.y, finding.width, finding.height), frame.size)
        reference = add_crop(frame, box, label, "defect")
        reference.note = f"from finding {number} of inspection {inspection.id}"
        db.commit()
    except SimilarLabel as similar:
        db.rollback()
        return confirm_new_label(similar, back)
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
        label = chosen_reference_label(request.form)
        reference = add_crop(frame, box, label, request.form.get("kind", "defect"))
        reference.note = f"box {x},{y},{width},{height} of inspection {inspection_id}"
        db.commit()
    except SimilarLabel as similar:
        db.rollback()
        return confirm_new_label(similar, back)
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
