"""Training-free baselines with the embedder interface: ``embed(images) -> (N, D)``.

* ``PixelEmbedder``: the raw pixels (the paper's simple 1-nearest-neighbour baseline).
* ``LBPEmbedder``: multi-scale uniform local binary pattern histograms, a classic
  texture descriptor (Ojala et al., 2002; NEU's own authors built on it). As
  square-rooted histograms, Euclidean distance between them is the Hellinger
  distance, which suits histograms better than plain Euclidean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from model.preprocess import to_grayscale_array, to_model_batch

# (points, radius) per scale
LBP_SCALES = ((8, 1), (16, 2), (24, 3))


class PixelEmbedder:
    arch = "raw-pixels"
    threshold = None

    def __init__(self, size: int = 100) -> None:
        self.size = size

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        return to_model_batch(images, self.size).flatten(1).numpy().astype(np.float32)


class LBPEmbedder:
    arch = "lbp-multiscale"
    threshold = None

    def __init__(self, scales: Sequence[tuple[int, int]] = LBP_SCALES) -> None:
        self.scales = tuple(scales)

    def describe(self, image: Image.Image) -> np.ndarray:
        from skimage.feature import local_binary_pattern

        gray = to_grayscale_array(image)
        parts = []
        for points, radius in self.scales:
            codes = local_binary_pattern(gray, points, radius, method="uniform")
            hist = np.bincount(codes.astype(np.int64).ravel(), minlength=points + 2)
            parts.append(np.sqrt(hist / hist.sum()))
        # each scale's square-rooted histogram has unit norm; weigh scales equally
        return (np.concatenate(parts) / np.sqrt(len(parts))).astype(np.float32)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([self.describe(image) for image in images])
