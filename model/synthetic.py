"""Procedural surface textures: classes of images no camera took.

Three training classes teach a network to tell three textures apart; what
separates them need not be what separates the next defect type. Pretraining on
procedurally generated images widens what a network learns to describe (Baradad
et al., "Learning to see by looking at noise", 2021). Here every synthetic
*class* is one random draw of a texture model's parameters, and its images are
fresh samples of that model: same statistics, new noise, new marks. A batch can
then hold many classes besides the real ones, and the supervised contrast has
to tell textures apart by any statistic, not only by those that split the
training classes.

The model is generic, not drawn after any defect class: a Gaussian random field
with a random power spectrum (slope, centre frequency, bandwidth, orientation
and anisotropy), pushed through a random sigmoid (from soft shading to hard
blobs), plus a random number of elliptical marks (length, width, orientation
spread, polarity and strength drawn per class), then a random brightness and
contrast. (A richer model, with crack networks, clustered marks and shading,
and textures laid over real surfaces were tried and dropped: tags
``experiments/round-08-rich-textures`` and ``experiments/round-10-crops-25``.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TextureParameters:
    """One synthetic class: the parameters every image of it is sampled with."""

    slope: float  # power-law exponent of the field's amplitude spectrum
    centre: float  # centre frequency of the field's band (cycles per pixel)
    bandwidth: float  # width of the band in octaves
    angle: float  # orientation of the field's anisotropy (radians)
    aspect: float  # >= 1: how much the field is stretched along ``angle``
    gain: float  # steepness of the sigmoid applied to the field
    offset: float  # where the sigmoid sits (shifts blobs from sparse to dense)
    field_weight: float  # the field's share of the image against the marks'
    marks: float  # expected marks per 200x200 image
    mark_length: float  # Gaussian sigma along a mark (pixels)
    mark_width: float  # Gaussian sigma across a mark (pixels)
    mark_angle: float  # mean orientation of the marks
    mark_spread: float  # 0: all marks parallel; 1: orientations uniform
    polarity: float  # +1 bright marks, -1 dark marks
    mean: float  # image mean in [0, 1]
    contrast: float  # image standard deviation in [0, 1]


def log_uniform(low: float, high: float, generator: torch.Generator) -> float:
    return math.exp(uniform(math.log(low), math.log(high), generator))


def uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def draw_parameters(generator: torch.Generator) -> TextureParameters:
    """A random synthetic class."""
    has_marks = float(torch.rand((), generator=generator)) < 0.7
    return TextureParameters(
        slope=uniform(0.0, 2.0, generator),
        centre=log_uniform(0.01, 0.3, generator),
        bandwidth=uniform(0.5, 3.0, generator),
        angle=uniform(0.0, math.pi, generator),
        aspect=log_uniform(1.0, 8.0, generator),
        gain=log_uniform(0.3, 6.0, generator),
        offset=uniform(-1.5, 1.5, generator),
        field_weight=uniform(0.2, 1.0, generator) if has_marks else 1.0,
        marks=log_uniform(2.0, 400.0, generator) if has_marks else 0.0,
        mark_length=log_uniform(0.7, 40.0, generator),
        mark_width=log_uniform(0.5, 4.0, generator),
        mark_angle=uniform(0.0, math.pi, generator),
        mark_spread=float(torch.rand((), generator=generator)) ** 2,
        polarity=1.0 if float(torch.rand((), generator=generator)) < 0.5 else -1.0,
        mean=uniform(0.25, 0.75, generator),
        contrast=log_uniform(0.04, 0.25, generator),
    )


def frequency_grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    fy = torch.fft.fftfreq(size).view(size, 1)
    fx = torch.fft.rfftfreq(size).view(1, size // 2 + 1)
    return fx.expand(size, -1), fy.expand(-1, size // 2 + 1)


def random_field(
    p: TextureParameters, n: int, size: int, generator: torch.Generator
) -> torch.Tensor:
    """``n`` samples of a Gaussian field with the class's spectrum, unit variance: (n, S, S)."""
    fx, fy = frequency_grid(size)
    along = fx * math.cos(p.angle) + fy * math.sin(p.angle)
    across = -fx * math.sin(p.angle) + fy * math.cos(p.angle)
    # stretching the texture along ``angle`` squeezes its spectrum along it
    radius = torch.sqrt((along * p.aspect) ** 2 + across**2).clamp_min(1e-4)
    octaves = torch.log2(radius / p.centre)
    amplitude = radius ** (-p.slope) * torch.exp(-0.5 * (octaves / p.bandwidth) ** 2)
    amplitude[0, 0] = 0.0
    noise = torch.randn(n, size, size, generator=generator)
    field = torch.fft.irfft2(torch.fft.rfft2(noise) * amplitude, s=(size, size))
    return field / field.flatten(1).std(dim=1).clamp_min(1e-8).view(n, 1, 1)


def mark_kernel(length: float, width: float, angle: float, size: int) -> torch.Tensor:
    """An elongated Gaussian centred at the origin of a periodic (S, S) grid."""
    coords = torch.fft.fftfreq(size) * size  # 0, 1, ..., -1: distances on the torus
    y, x = coords.view(size, 1), coords.view(1, size)
    along = x * math.cos(angle) + y * math.sin(angle)
    across = -x * math.sin(angle) + y * math.cos(angle)
    return torch.exp(-0.5 * ((along / length) ** 2 + (across / width) ** 2))


# marks take one of this many orientations, so each needs one convolution
MARK_ORIENTATIONS = 8


def random_marks(
    p: TextureParameters, n: int, size: int, generator: torch.Generator
) -> torch.Tensor:
    """``n`` images of the class's marks at random places, peak about 1: (n, S, S)."""
    expected = p.marks * (size / 200) ** 2
    spectrum = torch.zeros(n, size, size // 2 + 1, dtype=torch.complex64)
    for k in range(MARK_ORIENTATIONS):
        angle = p.mark_angle + p.mark_spread * math.pi * (k / MARK_ORIENTATIONS - 0.5)
        impulses = torch.zeros(n, size * size)
        counts = torch.poisson(torch.full((n,), expected / MARK_ORIENTATIONS), generator=generator)
        for i, count in enumerate(counts.long().tolist()):
            if count:
                where = torch.randint(0, size * size, (count,), generator=generator)
                strength = 0.5 + 0.5 * torch.rand(count, generator=generator)
                impulses[i].index_add_(0, where, strength)
        kernel = mark_kernel(p.mark_length, p.mark_width, angle, size)
        spectrum += torch.fft.rfft2(impulses.view(n, size, size)) * torch.fft.rfft2(kernel)
    marks = torch.fft.irfft2(spectrum, s=(size, size))
    return marks.clamp(0.0, 1.5)


def field_and_marks(
    p: TextureParameters, n: int, size: int, generator: torch.Generator
) -> torch.Tensor:
    """The class's field plus its marks, not yet standardised: (n, S, S)."""
    field = torch.sigmoid(p.gain * random_field(p, n, size, generator) + p.offset)
    image = p.field_weight * field
    if p.marks:
        marks = random_marks(p, n, size, generator)
        image = image + (1.0 - p.field_weight) * 3.0 * p.polarity * marks
    return image


def to_uint8(image: torch.Tensor, p: TextureParameters) -> torch.Tensor:
    """Standardised images at the class's brightness and contrast: (n, 1, S, S) uint8."""
    image = (image * p.contrast + p.mean).clamp(0.0, 1.0)
    return (image * 255).round().to(torch.uint8).unsqueeze(1)


def sample_class(
    p: TextureParameters, n: int, size: int, generator: torch.Generator
) -> torch.Tensor:
    """``n`` images of one synthetic class as an (n, 1, S, S) uint8 tensor."""
    return to_uint8(standardise(field_and_marks(p, n, size, generator)), p)


def synthetic_batch(
    classes: int, per_class: int, size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """``classes`` new random classes, ``per_class`` images each (uint8, (n, 1, S, S))."""
    return [
        sample_class(draw_parameters(generator), per_class, size, generator) for _ in range(classes)
    ]


def standardise(image: torch.Tensor) -> torch.Tensor:
    """Each image to zero mean and unit standard deviation: (n, S, S)."""
    flat = image.flatten(1)
    n = len(image)
    return (image - flat.mean(1).view(n, 1, 1)) / flat.std(1).clamp_min(1e-6).view(n, 1, 1)


@dataclass(frozen=True)
class SyntheticClasses:
    """The synthetic classes every training batch gets: ``classes`` new ones of
    ``per_class`` images each."""

    classes: int = 0
    per_class: int = 8

    def draw(self, size: int, generator: torch.Generator) -> list[torch.Tensor]:
        """New classes of ``size``-pixel images (uint8, (per_class, 1, S, S) each)."""
        return synthetic_batch(self.classes, self.per_class, size, generator)
