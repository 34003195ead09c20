"""Local binary patterns in torch, on batches: a texture statistic computed on the fly.

Rotation-invariant uniform LBP (Ojala, Pietikäinen & Mäenpää, 2002): each pixel's
``points`` neighbours on a circle of ``radius`` (bilinear where they fall between
pixels) are compared with it; the code is the number of brighter-or-equal
neighbours when the circle has at most two transitions, else ``points + 1``. A
histogram of codes per scale describes fine texture; comparisons make it
insensitive to exposure and contrast. Used as a training target
(``model.objectives``) and by the proxy script's CLBP descriptor.
"""

from __future__ import annotations

import math

import torch

#: (points, radius) per scale, as the LBP baseline uses
SCALES = ((8, 1), (16, 2), (24, 3))


def neighbour_differences(image: torch.Tensor, points: int, radius: int) -> torch.Tensor:
    """(N, H, W) images -> (N, points, H - 2r, W - 2r): each neighbour minus the centre."""
    center = image[:, radius:-radius, radius:-radius]
    h, w = center.shape[-2:]
    diffs = []
    for p in range(points):
        angle = 2 * math.pi * p / points
        dy, dx = round(-radius * math.sin(angle), 6), round(radius * math.cos(angle), 6)
        y0, x0 = math.floor(dy), math.floor(dx)
        fy, fx = dy - y0, dx - x0
        value: torch.Tensor | float = 0.0
        for oy, ox, weight in (
            (y0, x0, (1 - fy) * (1 - fx)),
            (y0, x0 + 1, (1 - fy) * fx),
            (y0 + 1, x0, fy * (1 - fx)),
            (y0 + 1, x0 + 1, fy * fx),
        ):
            if weight:
                top, left = radius + oy, radius + ox
                value = value + weight * image[:, top : top + h, left : left + w]
        diffs.append(value - center)
    return torch.stack(diffs, 1)


def riu2(bits: torch.Tensor) -> torch.Tensor:
    """Rotation-invariant uniform code of (N, P, H, W) bits: count of ones, or P + 1."""
    points = bits.shape[1]
    ones = bits.sum(1)
    transitions = (bits != bits.roll(1, dims=1)).sum(1)
    return torch.where(transitions <= 2, ones, torch.full_like(ones, points + 1))


def histograms(codes: torch.Tensor, bins: int) -> torch.Tensor:
    """(N, ...) integer codes in [0, bins) -> (N, bins) frequencies summing to 1."""
    n = codes.shape[0]
    flat = codes.reshape(n, -1) + torch.arange(n, device=codes.device).unsqueeze(1) * bins
    counts = torch.bincount(flat.reshape(-1), minlength=n * bins).view(n, bins)
    return counts.float() / codes[0].numel()


@torch.no_grad()
def uniform_lbp_histograms(
    x: torch.Tensor, scales: tuple[tuple[int, int], ...] = SCALES
) -> list[torch.Tensor]:
    """One (N, points + 2) histogram per scale for (N, 1, H, W) images."""
    image = x[:, 0].float()
    return [
        histograms(riu2(neighbour_differences(image, points, radius) >= -1e-6), points + 2)
        for points, radius in scales
    ]
