"""Stored images, their thumbnails and crops, for logged-in users only."""

from __future__ import annotations

import io
import re
from typing import Any

from flask import Blueprint, abort, current_app, request, send_file
from PIL import Image, UnidentifiedImageError

from admin.db import get_store
from admin.errors import respond

bp = Blueprint("images", __name__, url_prefix="/images")
THUMBNAIL_SIDE = 160
#: a finding's crop is widened to a square of at least this many pixels, so that a
#: small region is seen with the surface around it
CROP_MIN_SIDE = 96
_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")

Box = tuple[int, int, int, int]  # x, y, width, height in image pixels


@bp.app_template_global()
def display_size(
    width: int, height: int, box: tuple[int, int], max_scale: float = 1.0
) -> tuple[int, int]:
    """The size to show a ``width`` x ``height`` image at: as large as fits ``box``
    (and at most ``max_scale`` times its own size), at its own aspect ratio."""
    scale = min(box[0] / width, box[1] / height, max_scale)
    return max(1, round(width * scale)), max(1, round(height * scale))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png(image: Image.Image) -> Any:
    response = send_file(io.BytesIO(png_bytes(image)), mimetype="image/png", max_age=3600)
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


def square_around(box: Box, size: tuple[int, int], min_side: int = CROP_MIN_SIDE) -> Box:
    """The square of side max(``min_side``, the box's sides) centred on ``box``, moved
    to lie inside an image of ``size``; where the image is narrower (or lower) than
    the square, the crop takes the image's whole width (or height) instead."""
    x, y, width, height = box
    side = max(min_side, width, height)

    def span(start: int, length: int, limit: int) -> tuple[int, int]:
        extent = min(side, limit)
        low = start + length // 2 - extent // 2
        return max(0, min(low, limit - extent)), extent

    left, crop_width = span(x, width, size[0])
    top, crop_height = span(y, height, size[1])
    return left, top, crop_width, crop_height


def cut(image: Image.Image, box: Box) -> Image.Image:
    x, y, width, height = box
    crop = image.crop((x, y, x + width, y + height))
    return crop if crop.mode in ("L", "RGB") else crop.convert("RGB")


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


@bp.route("/<key>/crop")
def crop(key: str) -> Any:
    """The box ``x``, ``y``, ``w``, ``h`` (image pixels) of the stored image, widened
    to a square of at least CROP_MIN_SIDE pixels around it (``square_around``)."""
    values = [request.args.get(name, "") for name in ("x", "y", "w", "h")]
    if not all(_WHOLE_NUMBER.fullmatch(value) for value in values):
        return respond(400, "A crop needs x, y, w and h as whole numbers of pixels.")
    x, y, width, height = (int(value) for value in values)
    image = _open(key)
    if width < 1 or height < 1 or x + width > image.width or y + height > image.height:
        return respond(
            400, f"The box lies outside the image ({image.width}x{image.height} pixels)."
        )
    return _png(cut(image, square_around((x, y, width, height), image.size)))
