"""Stored images and their thumbnails, for logged-in users only."""

from __future__ import annotations

import io
from typing import Any

from flask import Blueprint, abort, current_app, send_file
from PIL import Image, UnidentifiedImageError

from admin.db import get_store

bp = Blueprint("images", __name__, url_prefix="/images")
THUMBNAIL_SIDE = 160


def _png(image: Image.Image) -> Any:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.seek(0)
    response = send_file(buffer, mimetype="image/png", max_age=3600)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def _open(key: str) -> Image.Image:
    """The stored image, decoded only within the limits the worker applies: an
    upload it rejected as too large (a decompression bomb, say) is not decoded."""
    store, config = get_store(), current_app.config
    try:
        if not store.exists(key):
            abort(404)
        data = store.get(key)
        if len(data) > config["MAX_IMAGE_BYTES"]:
            abort(415)
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > config["MAX_IMAGE_PIXELS"]:
            abort(415)
        image.load()
    except ValueError:
        abort(404)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        abort(415)  # a rejected upload that is not an image
    return image


@bp.route("/<key>")
def full(key: str) -> Any:
    """The stored image, re-encoded as PNG (never served as uploaded bytes)."""
    image = _open(key)
    if image.mode not in ("L", "RGB", "RGBA", "LA"):
        image = image.convert("RGB")
    return _png(image)


@bp.route("/<key>/thumb")
def thumbnail(key: str) -> Any:
    image = _open(key)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return _png(image)
