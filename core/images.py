"""Decoding and checking an untrusted image, with reasons a person can act on."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

# Formats a camera or a supervisor may reasonably send.
ACCEPTED_FORMATS = {"PNG", "BMP", "JPEG", "TIFF", "GIF", "WEBP", "PPM"}


class ImageRejected(ValueError):
    """The input is not an image we can inspect; the message says why and what to do."""


def decode_image(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode ``data`` fully into a PIL image, or raise ``ImageRejected``.

    The size limits are checked before decoding pixels, so a decompression bomb
    (a small file that claims huge dimensions) costs no memory.
    """
    if not data:
        raise ImageRejected("the image is empty (0 bytes); check that the camera wrote the file")
    if len(data) > max_bytes:
        raise ImageRejected(
            f"the image is {len(data):,} bytes, over the limit of {max_bytes:,}; "
            "send a smaller image or raise MAX_IMAGE_BYTES"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format or "unknown"
            width, height = image.size
            if fmt not in ACCEPTED_FORMATS:
                raise ImageRejected(
                    f"image format {fmt} is not accepted; send one of "
                    f"{', '.join(sorted(ACCEPTED_FORMATS))}"
                )
            if width * height > max_pixels:
                raise ImageRejected(
                    f"the image is {width}x{height} pixels, over the limit of {max_pixels:,} "
                    "pixels; send a smaller image or raise MAX_IMAGE_PIXELS"
                )
            if width < 1 or height < 1:
                raise ImageRejected(f"the image has no pixels ({width}x{height})")
            image.load()
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected(
            f"the data is not an image in a known format (it starts with {data[:8]!r}); "
            "send a PNG, BMP, JPEG or TIFF file"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(
            "the image claims more pixels than allowed (a decompression bomb?); "
            "send a smaller image"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(
            f"the image is corrupt or truncated ({exc}); resend the complete file"
        ) from None
    return image
