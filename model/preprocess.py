"""Turning any PIL image into the network's input: grayscale, square, [-1, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}


def to_grayscale_array(image: Image.Image) -> np.ndarray:
    """Return the image as a 2-D uint8 array, whatever its mode.

    16-bit images are scaled by bit depth (65535 -> 255) rather than clipped,
    which is what ``Image.convert("L")`` would do; 32-bit integer and float
    images are scaled by their own maximum when it exceeds 255.
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        return (np.asarray(image, dtype=np.float32) / 257.0).round().astype(np.uint8)
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        peak = float(values.max()) if values.size else 0.0
        if peak > 255.0:
            values = values * (255.0 / peak)
        return np.clip(values, 0, 255).round().astype(np.uint8)
    if image.mode == "L":
        return np.asarray(image, dtype=np.uint8)
    if image.mode not in ("1", "P", "RGB", "RGBA", "LA", "PA", "La", "RGBa"):
        # CMYK, YCbCr, LAB, HSV: go through RGB, which every mode converts to.
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.uint8)


def to_model_input(image: Image.Image, size: int) -> torch.Tensor:
    """One image as a float tensor shaped (1, size, size) with values in [-1, 1].

    Non-square images are resized whole (not cropped) so that no part of the
    strip is ignored.
    """
    gray = Image.fromarray(to_grayscale_array(image), mode="L")
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(gray, dtype=np.float32)
    return torch.from_numpy(array / 127.5 - 1.0).unsqueeze(0)


def to_model_batch(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """A batch shaped (N, 1, size, size) from a sequence of PIL images."""
    if not images:
        return torch.empty((0, 1, size, size), dtype=torch.float32)
    return torch.stack([to_model_input(image, size) for image in images])
