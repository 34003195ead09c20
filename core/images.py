"""Decoding and checking an untrusted image, with reasons a person can act on."""

from __future__ import annotations

import io
import struct
import warnings

from PIL import Image, UnidentifiedImageError

# Formats a camera or a supervisor may reasonably send.
ACCEPTED_FORMATS = {"PNG", "BMP", "JPEG", "TIFF", "GIF", "WEBP", "PPM"}
# Pixel formats the line inspects: 8-bit grayscale, and 8-bit RGB (converted to
# grayscale by the model). Anything else from a camera means it is set up
# differently from the references (16-bit, CMYK, colour palettes, alpha...),
# and a verdict on such an image would not mean much: it is rejected, saying so.
ACCEPTED_MODES = {"L", "RGB"}
MODE_NAMES = {
    "1": "1-bit black and white",
    "I;16": "16-bit grayscale",
    "I;16B": "16-bit grayscale",
    "I;16L": "16-bit grayscale",
    "I": "32-bit integer",
    "F": "32-bit floating point",
    "CMYK": "CMYK (a print colour space)",
    "YCbCr": "YCbCr",
    "LAB": "L*a*b*",
    "HSV": "HSV",
    "RGBA": "RGB with transparency",
    "LA": "grayscale with transparency",
    "P": "colour palette",
    "PA": "colour palette with transparency",
}

# What Pillow's readers also raise on a malformed file, besides OSError and the like
# (found by tests/unit/test_bad_input_properties.py): a TIFF whose next directory has
# no size (TypeError, counting frames), a GIF cut after an extension's introducer
# (IndexError).
MALFORMED = (TypeError, IndexError, KeyError, struct.error)


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
            image: Image.Image = Image.open(io.BytesIO(data))
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
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                raise ImageRejected(
                    f"the image is animated ({frames} frames); send one still frame per job"
                )
            image.load()
            image = check_pixel_format(image)
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        # What the data holds is not echoed: an image_path may have named a file
        # its sender should not read, and the error is shown to them.
        raise ImageRejected(
            f"the data ({len(data):,} bytes) is not an image in a known format; "
            "send a PNG, BMP, JPEG or TIFF file"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(
            "the image claims more pixels than allowed (a decompression bomb?); "
            "send a smaller image"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, *MALFORMED) as exc:
        raise ImageRejected(
            f"the image is corrupt or truncated ({exc}); resend the complete file"
        ) from None
    return image


def is_gray_palette(image: Image.Image) -> bool:
    palette = image.getpalette() or []
    triples = [palette[i : i + 3] for i in range(0, len(palette), 3)]
    return all(r == g == b for r, g, b in triples)


def check_pixel_format(image: Image.Image) -> Image.Image:
    """Return an image in an accepted mode, or raise ``ImageRejected`` naming the mode."""
    if image.mode in ACCEPTED_MODES:
        return image
    if image.mode == "P" and "transparency" not in image.info and is_gray_palette(image):
        return image.convert("L")  # a grayscale image stored with a gray palette
    described = MODE_NAMES.get(image.mode, image.mode)
    raise ImageRejected(
        f"the image's pixel format is {described} (Pillow mode {image.mode}); the line "
        "inspects 8-bit grayscale or "
        "8-bit RGB images: set the camera to 8-bit mono (or RGB) output"
    )
