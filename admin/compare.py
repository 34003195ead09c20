"""Compare: the original desktop tool in the browser. Two images in, "Detect Defect",
their dissimilarity, the model's same/different call, and each one's nearest reference."""

from __future__ import annotations

import base64
import io
from typing import Any

from flask import Blueprint, render_template
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from PIL import Image

from admin.db import get_db, get_store
from admin.images import display_size
from admin.model import get_embedder, get_reference_cache
from core.images import ImageRejected, decode_image
from core.settings import get_settings
from core.thresholds import GLOBAL, load_thresholds
from core.verdict import decide_batch
from model.compare import compare_images

bp = Blueprint("compare", __name__)
#: uploads of any size and aspect are shown whole within this box (CSS pixels), small
#: ones enlarged up to PREVIEW_MAX_SCALE times
PREVIEW_BOX = (520, 300)
PREVIEW_MAX_SCALE = 1.5


class CompareForm(FlaskForm):
    first = FileField("First image", validators=[FileRequired()])
    second = FileField("Second image", validators=[FileRequired()])


def preview(image: Image.Image) -> dict[str, Any]:
    """A PNG data URI of ``image`` (at most PREVIEW_BOX, at its own aspect ratio), to
    show an upload without storing it, and the size to show it at."""
    shown = image.convert("L") if image.mode not in ("L", "RGB") else image.copy()
    shown.thumbnail(PREVIEW_BOX)
    buffer = io.BytesIO()
    shown.save(buffer, format="PNG")
    width, height = display_size(image.width, image.height, PREVIEW_BOX, PREVIEW_MAX_SCALE)
    return {
        "src": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
        "width": width,
        "height": height,
    }


@bp.route("/compare", methods=["GET", "POST"])
def compare() -> Any:
    form = CompareForm()
    result: dict[str, Any] | None = None
    errors: list[str] = []
    if form.validate_on_submit():
        settings = get_settings()
        images = []
        for field in (form.first, form.second):
            try:
                images.append(
                    decode_image(
                        field.data.read(), settings.max_image_bytes, settings.max_image_pixels
                    )
                )
            except ImageRejected as exc:
                errors.append(f"{field.label.text}: {exc}")
        if not errors:
            result = compare_uploads(images)
    elif form.is_submitted():
        errors = [e for field_errors in form.errors.values() for e in field_errors]
    return render_template("compare.html", form=form, result=result, errors=errors)


def compare_uploads(images: list[Image.Image]) -> dict[str, Any]:
    """model.compare's comparison at the threshold in force, and each image's verdict
    against the reference library, as the line would judge it."""
    embedder = get_embedder()
    db = get_db()
    references = get_reference_cache(get_store(), db).get(db)
    thresholds = load_thresholds(db, embedder.threshold, embedder.version)
    db.commit()  # reference embeddings computed on the way are kept
    comparison = compare_images(
        embedder, images[0], images[1], threshold=thresholds.for_label(GLOBAL)
    )
    codes = comparison.codes
    verdicts = decide_batch(codes, references, thresholds) if len(references) else [None, None]
    return {
        "distance": comparison.dissimilarity,
        "threshold": comparison.threshold,
        "same": comparison.same_class,
        "model_version": embedder.version,
        "images": [preview(image) for image in images],
        "nearest": [
            (v.distances[0] if v and v.distances else None, v.label if v else None)
            for v in verdicts
        ],
    }
