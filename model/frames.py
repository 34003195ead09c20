"""Looking at a whole frame: local features at a fixed scale, a memory of good
surface, and anomaly maps (a PatchCore-like rule).

A frame is never resized whole: it is scaled by a fixed factor (model pixels
per image pixel; 1.0 is the scale the shipped networks learned, NEU's 200x200
images at full resolution) and the network's feature maps are read over all of
it. Each location's features (the network's second and third stages, the
third upsampled to the second's grid of 8 image pixels, averaged over a 3x3
neighbourhood; chosen on the development half of the magnetic-tile groups,
docs/experiments.md) are compared with the features of good surface as near
the frame's edge as it is (``with_edges``); the distance to the nearest one is
that location's anomaly score.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from model.embedder import Embedder
from model.preprocess import to_grayscale_array

#: good-surface features kept in a memory, at most (a random subsample beyond)
MEMORY_SIZE = 5_000


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


def scaled_gray(image: Image.Image, scale: float = 1.0) -> Image.Image:
    """The frame in 8-bit gray, scaled by ``scale`` (model pixels per frame pixel)."""
    gray = Image.fromarray(to_grayscale_array(image), mode="L")
    if scale != 1.0:
        size = (max(16, round(gray.width * scale)), max(16, round(gray.height * scale)))
        gray = gray.resize(size, Image.Resampling.BILINEAR)
    return gray


def gray_tensor(gray: Image.Image) -> torch.Tensor:
    """An 8-bit gray image as a (1, 1, H, W) tensor in [-1, 1]."""
    return torch.from_numpy(np.asarray(gray, dtype=np.float32) / 127.5 - 1.0)[None, None]


def frame_tensor(image: Image.Image, scale: float = 1.0) -> torch.Tensor:
    """A frame as a (1, 1, H, W) tensor in [-1, 1], scaled by ``scale``, never squashed."""
    return gray_tensor(scaled_gray(image, scale))


def local_feature_maps(
    tower: torch.nn.Module, x: torch.Tensor, stages: tuple[int, ...], normalize: bool
) -> torch.Tensor:
    """(N, C, h, w) local features of (N, 1, H, W) frames in [-1, 1]: what the memory
    holds and searches, and what ``model/surface.py`` trains (with gradients)."""
    x = local_contrast(x)
    maps_by_stage = tower.feature_maps(x)
    chosen = [maps_by_stage[i] for i in stages]
    size = chosen[0].shape[-2:]
    maps = torch.cat(
        [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in chosen],
        dim=1,
    )
    # each location described with its neighbours: a defect is a small region
    maps = F.avg_pool2d(maps, kernel_size=3, stride=1, padding=1, count_include_pad=False)
    return F.normalize(maps, dim=1) if normalize else maps


def local_contrast(x: torch.Tensor, sigma: float = CONTRAST_SIGMA) -> torch.Tensor:
    """``x`` less its local mean, over its local spread (Gaussians of ``sigma``), in
    [-1, 1]: uneven light and exposure change little of what the features see, a
    hole or a crack stays (chosen on the development half: docs/experiments.md).

    The local mean and spread are smooth, so they are computed on the frame
    averaged over blocks of about sigma / 12 pixels and interpolated back: the
    same values to about 0.001 on average, at a twentieth of the cost (a full-size
    blur of 48 px took two thirds of a frame's features)."""
    factor = max(1, min(int(sigma // 12), x.shape[-2] // 4, x.shape[-1] // 4))
    small, squares = F.avg_pool2d(x, factor), F.avg_pool2d(x * x, factor)
    size = x.shape[-2:]
    mean = F.interpolate(
        gaussian_smooth(small, sigma / factor), size=size, mode="bilinear", align_corners=False
    )
    square = F.interpolate(
        gaussian_smooth(squares, sigma / factor), size=size, mode="bilinear", align_corners=False
    )
    spread = (square - mean * mean).clamp_min(0).sqrt()
    return ((x - mean) / (spread + 0.05) / 3).clamp(-1, 1)


#: model pixels one forward pass holds at most: a larger frame is read in bands
#: across its long side, each with MARGIN more on both sides, so memory stays
#: bounded however long the strip; frames of one size that fit are stacked into
#: one pass up to this many pixels. The margin covers the contrast
#: normalisation's Gaussian (3 sigma) and the network's receptive field, so
#: bands join without seams.
BAND_PIXELS = 4_000_000
MARGIN = 160
#: the Gaussian (in grid cells) that smooths a frame's map of nearest distances
SMOOTH_CELLS = 0.5
#: the frame threshold: the good frames' cells scored against the others' memory, their
#: mean plus CALIBRATION_SPREAD standard deviations, times the frames model's margin
#: (this where a checkpoint names none)
CALIBRATION_SPREAD = 3.0
CALIBRATION_MARGIN = 3.1
#: findings kept per frame, the most anomalous first
MAX_FINDINGS = 20
#: a cell's distance (in cells) to the frame's nearest edge, up to this, is part of
#: its description: features near an edge see the network's zero padding and the
#: end of the surface, so they are compared only with good features as near an
#: edge (chosen on the development half: docs/experiments.md, *Frames*)
EDGE_CELLS = 2
#: the weight of that one-hot code: far more than unit features' largest distance
#: (2), so the nearest good feature is always one at the same distance from an edge
EDGE_WEIGHT = 4.0
#: the side (model pixels) of the crop around a finding that is named
NAMING_CROP = 96


@dataclass
class FrameFeatures:
    """Local features of one frame, or of one band of it: (h * w, C) rows on an
    h x w grid. A band starts ``offset`` grid cells along ``axis`` (0: rows)."""

    rows: torch.Tensor
    grid: tuple[int, int]
    size: tuple[int, int]  # the frame's (height, width) in image pixels
    axis: int = 0
    offset: int = 0


class PatchFeatures:
    """Reads local features of frames with an embedder's network."""

    def __init__(
        self,
        embedder: Embedder,
        scale: float = 1.0,
        stages: tuple[int, ...] = (1, 2),
        band_pixels: int = BAND_PIXELS,
    ) -> None:
        self.band_pixels = band_pixels
        self.tower = feature_tower(embedder.network)
        self.device = embedder.device
        self.scale = scale
        self.stages = stages  # which of the network's three stages, finest first
        # a network trained for the memory (model/surface.py) compares unit features
        self.normalize = bool(embedder.meta.get("frame_features"))
        probe = self._maps(torch.zeros(1, 1, 256, 256))
        #: model pixels per grid cell
        self.stride = 256 // probe.shape[-1]
        #: bands start at multiples of this, so every stage's grid lines up
        self.align = (
            256
            // self.tower.feature_maps(torch.zeros(1, 1, 256, 256, device=self.device))[
                max(self.stages)
            ].shape[-1]
        )

    @torch.inference_mode()
    def _maps(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) features of (N, 1, H, W) frames in [-1, 1]."""
        return local_feature_maps(self.tower, x.to(self.device), self.stages, self.normalize)

    @staticmethod
    def _rows(maps: torch.Tensor) -> torch.Tensor:
        h, w = maps.shape[-2:]
        return maps.permute(1, 2, 0).reshape(h * w, -1).float().cpu()

    def __call__(self, image: Image.Image) -> FrameFeatures:
        """The whole frame in one pass (a frame that fits in memory)."""
        maps = self._maps(frame_tensor(image, self.scale))[0]
        return self._frame(maps, image)

    def _frame(self, maps: torch.Tensor, image: Image.Image) -> FrameFeatures:
        """A frame read in one band: its axis is the grid's long side."""
        h, w = maps.shape[-2:]
        axis = 0 if h >= w else 1
        rows = with_edges(self._rows(maps), (h, w), axis, 0, (h, w)[axis])
        return FrameFeatures(rows, (h, w), (image.height, image.width), axis)

    def is_banded(self, image: Image.Image) -> bool:
        return image.width * image.height * self.scale**2 > self.band_pixels

    def bands(self, image: Image.Image) -> Iterator[FrameFeatures]:
        """The frame's features band by band along its long side, in order; a frame
        short enough is one band."""
        size = (image.height, image.width)
        if not self.is_banded(image):
            yield self(image)
            return
        scaled = scaled_gray(image, self.scale)
        axis = 0 if scaled.height >= scaled.width else 1
        length = scaled.height if axis == 0 else scaled.width
        margin = MARGIN - MARGIN % self.align
        short = scaled.width if axis == 0 else scaled.height
        step = max(4 * self.align, self.band_pixels // short - 2 * margin)
        step -= step % self.align
        for start in range(0, length, step):
            stop = min(length, start + step)
            if length - stop < self.align:  # no sliver of a band at the end
                stop = length
            low, high = max(0, start - margin), min(length, stop + margin)
            box = (0, low, scaled.width, high) if axis == 0 else (low, 0, high, scaled.height)
            maps = self._maps(gray_tensor(scaled.crop(box)))[0]
            skip = (start - low) // self.stride
            cells = maps.shape[1 + axis]
            keep = cells - skip if stop == length else (stop - start) // self.stride
            maps = maps.narrow(1 + axis, skip, min(keep, cells - skip))
            grid = tuple(maps.shape[-2:])
            offset = start // self.stride
            # the far end is known in the last band; before it, it is further than any code
            end = offset + grid[axis] if stop == length else None
            rows = with_edges(self._rows(maps), grid, axis, offset, end)
            yield FrameFeatures(rows, grid, size, axis, offset)
            if stop == length:
                return

    def many(self, images: list[Image.Image]) -> list[FrameFeatures]:
        """Features of frames that each fit in one band, frames of one size stacked
        into one forward pass (at most ``band_pixels`` model pixels a pass)."""
        out: list[FrameFeatures | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        tensors = [frame_tensor(image, self.scale) for image in images]
        for i, tensor in enumerate(tensors):
            by_size.setdefault(tuple(tensor.shape[-2:]), []).append(i)
        for (h, w), members in by_size.items():
            per_pass = max(1, self.band_pixels // (h * w))
            for first in range(0, len(members), per_pass):
                chunk = members[first : first + per_pass]
                maps = self._maps(torch.cat([tensors[i] for i in chunk]))
                for i, m in zip(chunk, maps, strict=True):
                    out[i] = self._frame(m, images[i])
        return [f for f in out if f is not None]


def with_edges(
    rows: torch.Tensor, grid: tuple[int, int], axis: int, offset: int, end: int | None
) -> torch.Tensor:
    """``rows`` of an h x w grid (a band starting ``offset`` cells along ``axis`` of a
    frame whose grid ends at ``end`` there, None when further than the code reaches)
    with each cell's distance to the frame's edge appended as a weighted one-hot code."""
    across = grid[1 - axis]
    lines = (edge_distance(grid[axis], offset, end), edge_distance(across, 0, across))
    down, right = lines if axis == 0 else lines[::-1]
    distance = torch.minimum(down[:, None], right[None, :])
    code = F.one_hot(distance.clamp(max=EDGE_CELLS).reshape(-1), EDGE_CELLS + 1)
    return torch.cat([rows, code.to(rows.dtype) * EDGE_WEIGHT], dim=1)


def edge_distance(length: int, offset: int, end: int | None) -> torch.Tensor:
    """Each of ``length`` cells' distance to the nearer end of its line (cells
    ``offset`` on of one ending at ``end``; None: further than the code reaches)."""
    cells = torch.arange(length) + offset
    to_end = end - 1 - cells if end is not None else torch.full_like(cells, EDGE_CELLS)
    return torch.minimum(cells, to_end)


class GoodSurfaceMemory:
    """Features of good surface, searched for each location's nearest neighbour."""

    def __init__(self, rows: torch.Tensor) -> None:
        if rows.numel() == 0:
            raise ValueError("a good-surface memory needs at least one good frame")
        self.rows = rows.float().contiguous()
        self._index: faiss.IndexFlatL2 | None = None

    @classmethod
    def from_frames(
        cls, frames: list[FrameFeatures], size: int = MEMORY_SIZE, seed: int = 0
    ) -> GoodSurfaceMemory:
        return cls(subsample(torch.cat([f.rows for f in frames]), size, seed))

    def nearest(self, rows: torch.Tensor) -> torch.Tensor:
        """Distance of each row to its nearest good-surface feature (exact search)."""
        if self._index is None:
            self._index = faiss.IndexFlatL2(self.rows.shape[1])
            self._index.add(self.rows.numpy())
        squared, _ = self._index.search(np.ascontiguousarray(rows.numpy(), dtype=np.float32), 1)
        return torch.from_numpy(np.sqrt(np.maximum(squared[:, 0], 0.0)))

    def score(self, bands: Iterable[FrameFeatures]) -> AnomalyGrid:
        """A frame's anomaly grid from its bands (in order along their axis)."""
        parts, size, axis = [], (0, 0), 0
        for band in bands:
            parts.append(self.nearest(band.rows).view(*band.grid))
            size, axis = band.size, band.axis
        if not parts:
            raise ValueError("a frame without features")
        grid = torch.cat(parts, dim=axis)[None, None]
        cells = gaussian_smooth(grid, SMOOTH_CELLS)[0, 0].numpy()
        return AnomalyGrid(cells, size)

    def anomaly_map(self, frame: FrameFeatures) -> np.ndarray:
        """Each image pixel's anomaly score (the frame's grid, upsampled)."""
        return self.score([frame]).full()


@dataclass
class Region:
    """A connected region of a frame above the threshold, in frame pixels."""

    x: int
    y: int
    width: int
    height: int
    area: int
    score: float
    peak: tuple[int, int]  # (row, column) of its highest score


@dataclass
class AnomalyGrid:
    """A frame's anomaly scores on the feature grid (a few image pixels a cell)."""

    cells: np.ndarray  # (h, w) float32
    size: tuple[int, int]  # the frame's (height, width) in image pixels

    @property
    def score(self) -> float:
        """The frame's score: its most anomalous cell."""
        return float(self.cells.max())

    @property
    def cell_size(self) -> tuple[float, float]:
        return self.size[0] / self.cells.shape[0], self.size[1] / self.cells.shape[1]

    def full(self) -> np.ndarray:
        """The scores at every image pixel (bilinear): for small frames and evaluation."""
        grid = torch.from_numpy(np.ascontiguousarray(self.cells))[None, None]
        return F.interpolate(grid, size=self.size, mode="bilinear", align_corners=False)[
            0, 0
        ].numpy()

    def regions(self, threshold: float, limit: int = MAX_FINDINGS) -> list[Region]:
        """Connected regions (8-neighbours) of cells above ``threshold``, the most
        anomalous first, at most ``limit``."""
        above = self.cells > threshold
        labels, count = ndimage.label(above, structure=np.ones((3, 3), bool))
        if count == 0:
            return []
        ch, cw = self.cell_size
        found = []
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            inside = labels[box] == index
            values = np.where(inside, self.cells[box], -np.inf)
            r, c = np.unravel_index(int(np.argmax(values)), values.shape)
            rows, cols = box
            y0, y1 = int(rows.start * ch), min(self.size[0], int(np.ceil(rows.stop * ch)))
            x0, x1 = int(cols.start * cw), min(self.size[1], int(np.ceil(cols.stop * cw)))
            found.append(
                Region(
                    x=x0,
                    y=y0,
                    width=max(1, x1 - x0),
                    height=max(1, y1 - y0),
                    area=max(1, round(int(inside.sum()) * ch * cw)),
                    score=float(values[r, c]),
                    peak=(
                        min(self.size[0] - 1, int((rows.start + r + 0.5) * ch)),
                        min(self.size[1] - 1, int((cols.start + c + 0.5) * cw)),
                    ),
                )
            )
        found.sort(key=lambda region: -region.score)
        return found[:limit]

    def heat_map(self, threshold: float) -> Image.Image:
        """The grid as an RGBA picture at grid size, to lay over the frame: clear
        where the score is low, warmer and more opaque towards and past ``threshold``."""
        level = np.clip(self.cells / max(threshold, 1e-6), 0.0, 1.5) / 1.5
        rgba = np.zeros((*self.cells.shape, 4), dtype=np.uint8)
        rgba[..., 0] = 255
        rgba[..., 1] = (255 * (1 - level)).astype(np.uint8)
        rgba[..., 3] = (230 * np.clip((level - 0.35) / 0.65, 0, 1)).astype(np.uint8)
        return Image.fromarray(rgba, mode="RGBA")


def naming_crop(image: Image.Image, region: Region, scale: float = 1.0) -> Image.Image:
    """The square around a region's peak that is named against the defect
    references: NAMING_CROP model pixels, or the region's box when larger."""
    side = max(round(NAMING_CROP / scale), region.width, region.height)
    side = min(side, image.width, image.height) if min(image.width, image.height) >= 16 else side
    row, col = region.peak
    left = int(np.clip(col - side // 2, 0, max(0, image.width - side)))
    top = int(np.clip(row - side // 2, 0, max(0, image.height - side)))
    return image.crop((left, top, left + side, top + side))


def subsample(rows: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    """At most ``size`` of ``rows``, a random choice (the same for the same seed)."""
    if len(rows) <= size:
        return rows
    keep = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
    return rows[keep[:size]]


#: the frame's bands, read afresh each time they are asked for (a long strip's
#: features are never all held at once)
FrameSource = Callable[[], Iterable[FrameFeatures]]


def build_memory(
    sources: list[FrameSource],
    size: int = MEMORY_SIZE,
    seed: int = 0,
    margin: float = CALIBRATION_MARGIN,
) -> tuple[GoodSurfaceMemory, float]:
    """A good-surface memory of the given good frames and its frame-score threshold,
    from them alone: each good frame is scored against a memory of the others (one
    frame alone: each half of it against the other half); the mean of all those
    cells' scores plus CALIBRATION_SPREAD standard deviations, times ``margin``, is
    the threshold. Every cell of every good frame counts, not a few frames' highest
    scores: steadier from one set of good frames to another (chosen on the
    development half of the magnetic-tile groups: docs/experiments.md, *Frames*)."""
    if not sources:
        raise ValueError("a good-surface memory needs at least one good frame")
    samples = []  # per frame: sampled rows, and each row's cell along the long axis
    for source in sources:
        rows, along = [], []
        for band in source():
            keep = subsample(torch.arange(len(band.rows)), size, seed)
            rows.append(band.rows[keep])
            cell = keep // band.grid[1] if band.axis == 0 else keep % band.grid[1]
            along.append(cell + band.offset)
        samples.append((torch.cat(rows), torch.cat(along)))
    memory = GoodSurfaceMemory(subsample(torch.cat([r for r, _ in samples]), size, seed))
    cells = []  # every good frame's leave-one-out scores (grids of a few MB at most)
    if len(sources) == 1:
        rows, along = samples[0]
        middle = (int(along.max()) + 1) // 2
        for memory_part, scored in (
            (along < middle, slice(middle, None)),
            (along >= middle, slice(0, middle)),
        ):
            grid = GoodSurfaceMemory(rows[memory_part]).score(sources[0]())
            cells.append(np.moveaxis(grid.cells, long_axis(grid.cells), 0)[scored].ravel())
    else:
        for i, source in enumerate(sources):
            others = torch.cat([r for j, (r, _) in enumerate(samples) if j != i])
            grid = GoodSurfaceMemory(subsample(others, size, seed)).score(source())
            cells.append(grid.cells.ravel())
    return memory, high_point(np.concatenate(cells)) * margin


def high_point(cells: np.ndarray, spread: float = CALIBRATION_SPREAD) -> float:
    """The mean of ``cells`` plus ``spread`` standard deviations."""
    values = cells.astype(np.float64)
    return float(values.mean() + spread * values.std())


def long_axis(cells: np.ndarray) -> int:
    return 0 if cells.shape[0] >= cells.shape[1] else 1


def calibrate_threshold(frames: list[FrameFeatures], margin: float = CALIBRATION_MARGIN) -> float:
    """The frame-score threshold of ``build_memory`` for frames already read."""
    return build_memory([lambda f=f: [f] for f in frames], margin=margin)[1]


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


@dataclass
class FrameVerdict:
    """What the good-surface memory says of one frame."""

    grid: AnomalyGrid
    regions: list[Region]  # above the threshold, the most anomalous first
    crops: list[Image.Image]  # each region's crop, to be named


def calibration_margin(embedder: Embedder) -> float:
    """The margin of the frame threshold over the good frames' highest score: a
    frames checkpoint's own (chosen with it), else CALIBRATION_MARGIN."""
    trained = embedder.meta.get("frame_features") or {}
    return float(trained.get("calibration_margin", CALIBRATION_MARGIN))


def load_frame_inspector(
    checkpoint: Path | None = None, device: str = "auto", fallback: Embedder | None = None
) -> FrameInspector:
    """The frame inspector of ``checkpoint``; without one, of the shipped
    ``frames.pt``, or of ``fallback`` (the naming model) where none is shipped."""
    from model.embedder import FRAMES_CHECKPOINT, load_embedder

    path = checkpoint or (FRAMES_CHECKPOINT if FRAMES_CHECKPOINT.is_file() else None)
    if path is None and fallback is not None:
        return FrameInspector(fallback)
    return FrameInspector(load_embedder(path, device=device))


class FrameInspector:
    """Frames judged by a good-surface memory: what the workers call.

    ``build`` makes a memory (rows of local features, as numpy) and its threshold
    from good frames; ``inspect`` scores frames against it, frames of one size
    that fit in one band in one forward pass, longer ones band by band."""

    def __init__(
        self,
        embedder: Embedder,
        stages: tuple[int, ...] = (1, 2),
        band_pixels: int = BAND_PIXELS,
    ) -> None:
        self.embedder = embedder
        self.version = embedder.version
        self.stages = stages
        self.band_pixels = band_pixels
        self._readers: dict[float, PatchFeatures] = {}
        # the last memory searched, its index kept: workers judge batch after batch
        # against the same rows
        self._memory: tuple[np.ndarray, GoodSurfaceMemory] | None = None
        self.reader(1.0)  # fails here, once, when the network has no feature maps

    def reader(self, scale: float) -> PatchFeatures:
        if scale not in self._readers:
            self._readers[scale] = PatchFeatures(
                self.embedder, scale, self.stages, self.band_pixels
            )
        return self._readers[scale]

    @property
    def calibration_margin(self) -> float:
        return calibration_margin(self.embedder)

    def build(self, images: list[Image.Image], scale: float) -> tuple[np.ndarray, float]:
        reader = self.reader(scale)
        memory, threshold = build_memory(
            [lambda image=image: reader.bands(image) for image in images],
            margin=self.calibration_margin,
        )
        return memory.rows.numpy(), threshold

    def inspect(
        self, images: list[Image.Image], rows: np.ndarray, threshold: float, scale: float
    ) -> list[FrameVerdict]:
        reader = self.reader(scale)
        if self._memory is None or self._memory[0] is not rows:
            self._memory = (rows, GoodSurfaceMemory(torch.from_numpy(rows)))
        memory = self._memory[1]
        grids: dict[int, AnomalyGrid] = {}
        whole = [i for i, image in enumerate(images) if not reader.is_banded(image)]
        for i, frame in zip(whole, reader.many([images[i] for i in whole]), strict=True):
            grids[i] = memory.score([frame])
        for i, image in enumerate(images):
            if i not in grids:
                grids[i] = memory.score(reader.bands(image))
        verdicts = []
        for i, image in enumerate(images):
            regions = grids[i].regions(threshold)
            crops = [naming_crop(image, region, scale) for region in regions]
            verdicts.append(FrameVerdict(grids[i], regions, crops))
        return verdicts
