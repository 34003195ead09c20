"""Augmentation that matches how NEU images vary, applied to whole batches.

NEU images of one class differ in exposure and contrast, in the scale and
position of the defect, in orientation, and in sensor noise. Views are made
from the 200x200 originals: a random square crop (a part of the surface at a
larger scale), resized to the network's input, in any of the 8 orientations,
with random gamma, contrast and brightness and a little Gaussian noise.
Optionally (``shading``) the view is also lit unevenly: multiplied by a smooth
random field, as NEU images of one class are lit brighter on one side or
crossed by a darker band along the rolling direction. Optionally (``blur``)
the view is defocused by a Gaussian of random width, as some NEU images are
softer than others of their class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass
class ViewAugmenter:
    size: int = 100
    min_crop: float = 0.35  # smallest crop area as a fraction of the image area
    gamma: tuple[float, float] = (0.6, 1.6)
    contrast: tuple[float, float] = (0.6, 1.4)
    brightness: float = 0.15
    noise: float = 0.04
    shading: float = 0.0  # largest log-strength of the smooth illumination field; 0: none
    blur: float = 0.0  # largest Gaussian blur sigma, in pixels of the view; 0: none

    def view(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random view of a (1, H, W) uint8 image as a float (1, S, S) tensor in [-1, 1]."""

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=generator))

        _, height, width = image.shape
        side = round(min(height, width) * uniform(self.min_crop, 1.0) ** 0.5)
        side = max(8, min(side, height, width))
        top = int(torch.randint(0, height - side + 1, (), generator=generator))
        left = int(torch.randint(0, width - side + 1, (), generator=generator))
        crop = image[:, top : top + side, left : left + side].float().unsqueeze(0) / 255.0
        x = F.interpolate(
            crop, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
        )[0]
        if self.blur:  # off draws nothing, so earlier commands remake their checkpoints
            x = gaussian_blur(x, uniform(0.0, self.blur))
        x = torch.rot90(x, k=int(torch.randint(0, 4, (), generator=generator)), dims=(1, 2))
        if float(torch.rand((), generator=generator)) < 0.5:
            x = torch.flip(x, dims=(2,))
        if self.shading:  # off draws nothing, so earlier commands remake their checkpoints
            x = x * self.illumination(generator, uniform(0.0, self.shading))
        x = x.clamp(0, 1) ** uniform(*self.gamma)
        mean = x.mean()
        x = (x - mean) * uniform(*self.contrast) + mean + uniform(-self.brightness, self.brightness)
        x = x + torch.randn(x.shape, generator=generator) * uniform(0.0, self.noise)
        return x.clamp(0, 1) * 2.0 - 1.0

    def illumination(self, generator: torch.Generator, strength: float) -> torch.Tensor:
        """A smooth positive (1, S, S) field: a 3x3 grid of random log-gains, upsampled
        bicubically, so that the light varies over the view by up to exp(+-strength)."""
        grid = torch.rand((1, 1, 3, 3), generator=generator) * 2.0 - 1.0
        field = F.interpolate(grid, size=(self.size, self.size), mode="bicubic", align_corners=True)
        return torch.exp(strength * field.clamp(-1.0, 1.0))[0]

    def views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One view of each image in an (N, 1, H, W) uint8 batch: (N, 1, S, S)."""
        return torch.stack([self.view(image, generator) for image in images])


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A (1, S, S) image blurred by a Gaussian of ``sigma`` pixels (separable,
    edges reflected); below a tenth of a pixel it is returned as it is."""
    if sigma < 0.1:
        return x
    # three sigmas hold all but 0.3% of the kernel; reflection needs less than the side
    radius = min(max(1, round(3.0 * sigma)), x.shape[-1] - 1, x.shape[-2] - 1)
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    y = F.pad(x.unsqueeze(0), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(1, 1, 1, -1))
    return F.conv2d(y, kernel.view(1, 1, -1, 1))[0]
