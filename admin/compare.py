"""Compare: the original desktop tool in the browser. Two images in, "Detect Defect",
their dissimilarity, the model's same/different call, each one's nearest reference,
and one verdict that follows from those (admin.compare_verdict).

The uploads are kept for the session (the images in the blob store, their keys in
the signed session cookie): a browser cannot refill a file input, so without this
every run would need both files chosen again. A run with one new file reuses the
other one."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, render_template, session
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from PIL import Image

from admin.compare_verdict import NearestReference, compare_verdict
from admin.db import get_db, get_store
from admin.images import display_size
from admin.model import get_embedder, get_reference_cache
from core.blobs import BlobStore
from core.images import ImageRejected, decode_image
from core.settings import get_settings
from core.thresholds import GLOBAL, load_thresholds
from core.verdict import Verdict, decide_batch
from model.compare import compare_images

bp = Blueprint("compare", __name__)
#: uploads of any size and aspect are shown whole within this box (CSS pixels), small
#: ones enlarged up to PREVIEW_MAX_SCALE times; two of them fit side by side at 1024 px
PREVIEW_BOX = (460, 260)
PREVIEW_MAX_SCALE = 1.5
#: the session key under which the kept uploads are: {"first": {"key", "name"}, ...}
KEPT = "compare_uploads"
SLOTS = ("first", "second")
NAME_MAX = 120


class CompareForm(FlaskForm):
    # not FileRequired: a slot with a kept upload may be left empty
    first = FileField("First image")
    second = FileField("Second image")


@dataclass(frozen=True)
class Upload:
    """An uploaded image kept in the blob store, and the file name it came with."""

    key: str
    name: str


def clean_name(name: str) -> str:
    """A file name as the browser sent it, fit to show: no folders, no control
    characters, at most NAME_MAX characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable())[:NAME_MAX] or "upload"


def is_blob_key(store: BlobStore, key: object) -> bool:
    """Whether ``key`` has the form of a key the store makes (a SHA-256 in hex)."""
    if not isinstance(key, str):
        return False
    try:
        store.path(key)
    except ValueError:
        return False
    return True


def kept_uploads(store: BlobStore) -> dict[str, Upload]:
    """This session's kept uploads by slot. The cookie is signed, but what it holds
    is still checked as if hostile: a malformed entry is dropped, not used."""
    raw = session.get(KEPT)
    kept: dict[str, Upload] = {}
    if not isinstance(raw, dict):
        return kept
    for slot in SLOTS:
        entry = raw.get(slot)
        if (
            isinstance(entry, dict)
            and is_blob_key(store, entry.get("key"))
            and isinstance(entry.get("name"), str)
        ):
            kept[slot] = Upload(entry["key"], clean_name(entry["name"]))
    return kept


def keep(kept: dict[str, Upload]) -> None:
    session[KEPT] = {slot: {"key": u.key, "name": u.name} for slot, u in kept.items()}


def read_slot(field: Any, kept: Upload | None, store: BlobStore) -> tuple[Upload, Image.Image]:
    """The image for one slot: the new upload when one was chosen (stored, to be kept),
    else the kept one. Raises ImageRejected with what to do."""
    settings = get_settings()
    upload = field.data
    if upload:  # a FileStorage with a file name: the user chose a file
        data = upload.read()
        image = decode_image(data, settings.max_image_bytes, settings.max_image_pixels)
        return Upload(store.put(data), clean_name(upload.filename or "")), image
    if kept is None:
        raise ImageRejected("choose an image file")
    if not store.exists(kept.key):
        raise ImageRejected(f"{kept.name} is no longer kept on the server; choose it again")
    image = decode_image(store.get(kept.key), settings.max_image_bytes, settings.max_image_pixels)
    return kept, image


def preview(image: Image.Image) -> dict[str, Any]:
    """A PNG data URI of ``image`` (at most PREVIEW_BOX, at its own aspect ratio), to
    show an upload without another request, and the size to show it at."""
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
    store = get_store()
    kept = kept_uploads(store)
    result: dict[str, Any] | None = None
    errors: list[str] = []
    if form.validate_on_submit():
        uploads, images = [], []
        for slot, field in zip(SLOTS, (form.first, form.second), strict=True):
            try:
                upload, image = read_slot(field, kept.get(slot), store)
            except ImageRejected as exc:
                errors.append(f"{field.label.text}: {exc}")
                continue
            kept[slot] = upload  # a good new upload is kept even if the other one failed
            uploads.append(upload)
            images.append(image)
        keep(kept)
        if not errors:
            result = compare_uploads(images, [u.name for u in uploads])
    elif form.is_submitted():
        errors = [e for field_errors in form.errors.values() for e in field_errors]
    return render_template("compare.html", form=form, result=result, errors=errors, kept=kept)


def nearest_reference(verdict: Verdict | None) -> NearestReference | None:
    """An image's nearest reference from the line's verdict on it."""
    if verdict is None or verdict.nearest_reference_id is None or not verdict.distances:
        return None
    return NearestReference(
        label=str(verdict.distances[0]["label"]),
        reference_id=verdict.nearest_reference_id,
        distance=float(verdict.dissimilarity or 0.0),
        threshold=verdict.threshold,
    )


def compare_uploads(images: list[Image.Image], names: list[str]) -> dict[str, Any]:
    """model.compare's comparison at the threshold in force, each image's nearest
    reference as the line would judge it, and the one verdict that follows."""
    embedder = get_embedder()
    db = get_db()
    references = get_reference_cache(get_store(), db).get(db)
    thresholds = load_thresholds(db, embedder.threshold, embedder.version)
    db.commit()  # reference embeddings computed on the way are kept
    comparison = compare_images(
        embedder, images[0], images[1], threshold=thresholds.for_label(GLOBAL)
    )
    verdicts = (
        decide_batch(comparison.codes, references, thresholds) if len(references) else [None, None]
    )
    first, second = (nearest_reference(v) for v in verdicts)
    return {
        "distance": comparison.dissimilarity,
        "threshold": comparison.threshold,
        "same": comparison.same_class,
        "model_version": embedder.version,
        "images": [preview(image) for image in images],
        "names": names,
        "nearest": [first, second],
        "verdict": compare_verdict((first, second), comparison.dissimilarity, comparison.threshold),
    }
