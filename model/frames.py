"""Looking at a whole frame: local features at a fixed scale, a memory of good
surface, and anomaly maps (a PatchCore-like rule).

A frame is never resized whole: it is scaled by a fixed factor (model pixels
per image pixel; 1.0 is the scale the shipped networks learned, NEU's 200x200
images at full resolution) and the network's feature maps are read over all of
it. Each location's features (the network's second and third stages, the
third upsampled to the second's grid of 8 image pixels, averaged over a 3x3
neighbourhood; chosen on the development half of the magnetic-tile groups,
docs/experiments.md) are compared with the features of good surface; the
distance to the nearest one is that location's anomaly score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from model.embedder import Embedder
from model.preprocess import to_grayscale_array

#: good-surface features kept in a memory, at most (a random subsample beyond)
MEMORY_SIZE = 5_000
#: rows of test features compared with the memory at once (bounds memory use)
SEARCH_CHUNK = 4096


def feature_tower(network: torch.nn.Module) -> torch.nn.Module:
    """The network inside the wrappers (centring, views) that has ``feature_maps``."""
    while not hasattr(network, "feature_maps"):
        inner = getattr(network, "network", None) or getattr(network, "tower", None)
        if inner is None:
            raise ValueError(f"{type(network).__name__} has no feature maps to read")
        network = inner
    return network


#: the Gaussian (in model pixels) of the local contrast normalisation
CONTRAST_SIGMA = 48.0


def frame_tensor(image: Image.Image, scale: float = 1.0) -> torch.Tensor:
    """A frame as a (1, 1, H, W) tensor in [-1, 1], scaled by ``scale``, never squashed."""
    gray = Image.fromarray(to_grayscale_array(image), mode="L")
    if scale != 1.0:
        size = (max(16, round(gray.width * scale)), max(16, round(gray.height * scale)))
        gray = gray.resize(size, Image.Resampling.BILINEAR)
    array = np.asarray(gray, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array)[None, None]


def local_contrast(x: torch.Tensor, sigma: float = CONTRAST_SIGMA) -> torch.Tensor:
    """``x`` less its local mean, over its local spread (Gaussians of ``sigma``), in
    [-1, 1]: uneven light and exposure change little of what the features see, a
    hole or a crack stays (chosen on the development half: docs/experiments.md)."""
    mean = gaussian_smooth(x, sigma)
    spread = gaussian_smooth((x - mean) ** 2, sigma).sqrt()
    return ((x - mean) / (spread + 0.05) / 3).clamp(-1, 1)


@dataclass
class FrameFeatures:
    """Local features of one frame: (h * w, C) rows on an h x w grid."""

    rows: torch.Tensor
    grid: tuple[int, int]
    size: tuple[int, int]  # the frame's (height, width) in image pixels


class PatchFeatures:
    """Reads local features of frames with an embedder's network."""

    def __init__(
        self, embedder: Embedder, scale: float = 1.0, stages: tuple[int, ...] = (1, 2)
    ) -> None:
        self.tower = feature_tower(embedder.network)
        self.device = embedder.device
        self.scale = scale
        self.stages = stages  # which of the network's three stages, finest first

    @torch.inference_mode()
    def __call__(self, image: Image.Image) -> FrameFeatures:
        x = local_contrast(frame_tensor(image, self.scale)).to(self.device)
        maps_by_stage = self.tower.feature_maps(x)
        chosen = [maps_by_stage[i] for i in self.stages]
        size = chosen[0].shape[-2:]
        maps = torch.cat(
            [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in chosen],
            dim=1,
        )
        # each location described with its neighbours: a defect is a small region
        maps = F.avg_pool2d(maps, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        h, w = maps.shape[-2:]
        rows = maps[0].permute(1, 2, 0).reshape(h * w, -1).float().cpu()
        return FrameFeatures(rows, (h, w), (image.height, image.width))


class GoodSurfaceMemory:
    """Features of good surface, searched for each location's nearest neighbour."""

    def __init__(self, rows: torch.Tensor) -> None:
        if rows.numel() == 0:
            raise ValueError("a good-surface memory needs at least one good frame")
        self.rows = rows.contiguous()

    @classmethod
    def from_frames(
        cls, frames: list[FrameFeatures], size: int = MEMORY_SIZE, seed: int = 0
    ) -> GoodSurfaceMemory:
        rows = torch.cat([f.rows for f in frames])
        if len(rows) > size:
            keep = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
            rows = rows[keep[:size]]
        return cls(rows)

    def nearest(self, rows: torch.Tensor) -> torch.Tensor:
        """Distance of each row to its nearest good-surface feature, in chunks."""
        out = torch.empty(len(rows))
        for start in range(0, len(rows), SEARCH_CHUNK):
            chunk = rows[start : start + SEARCH_CHUNK]
            out[start : start + len(chunk)] = torch.cdist(chunk, self.rows).min(dim=1).values
        return out

    def anomaly_map(self, frame: FrameFeatures, smooth: float = 4.0) -> np.ndarray:
        """Each image pixel's anomaly score: the grid's distances, upsampled to the
        frame's size and smoothed with a Gaussian of ``smooth`` image pixels."""
        grid = self.nearest(frame.rows).view(1, 1, *frame.grid)
        full = F.interpolate(grid, size=frame.size, mode="bilinear", align_corners=False)
        return gaussian_smooth(full, smooth)[0, 0].numpy()


def gaussian_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur of a (1, 1, H, W) map, its kernel cut at the map's side."""
    if sigma <= 0:
        return x
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    pad_h, pad_w = min(radius, x.shape[-2] - 1), min(radius, x.shape[-1] - 1)
    x = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="replicate" if pad_h and pad_w else "constant")
    kh = kernel[radius - pad_h : radius + pad_h + 1].view(1, 1, -1, 1)
    kw = kernel[radius - pad_w : radius + pad_w + 1].view(1, 1, 1, -1)
    return F.conv2d(F.conv2d(x, kh / kh.sum()), kw / kw.sum())


def calibrate_threshold(frames: list[FrameFeatures], margin: float = 1.1) -> float:
    """A frame-score threshold from good frames alone: each good frame is scored
    against a memory of the others (a frame alone: its left half against its
    right), and the highest of those scores, times ``margin``, is the threshold."""
    pairs = []  # (memory frames, scored frame)
    if len(frames) == 1:
        a, b = split_in_halves(frames[0])
        pairs = [([a], b), ([b], a)]
    else:
        pairs = [(frames[:i] + frames[i + 1 :], frame) for i, frame in enumerate(frames)]
    scores = [
        float(GoodSurfaceMemory.from_frames(memory).anomaly_map(scored).max())
        for memory, scored in pairs
    ]
    return max(scores) * margin


def split_in_halves(frame: FrameFeatures) -> tuple[FrameFeatures, FrameFeatures]:
    """The frame's features left and right of its middle column (top and bottom when
    it is taller than wide)."""
    h, w = frame.grid
    height, width = frame.size
    grid = frame.rows.view(h, w, -1)
    if w >= h:
        parts, sizes = (grid[:, : w // 2], grid[:, w // 2 :]), (height, width // 2)
    else:
        parts, sizes = (grid[: h // 2], grid[h // 2 :]), (height // 2, width)
    first, second = (
        FrameFeatures(part.reshape(-1, grid.shape[-1]), (part.shape[0], part.shape[1]), sizes)
        for part in parts
    )
    return first, second
