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
contrast.

The ``rich`` model (``synthetic_batch(..., model="rich")``) keeps all of that
and adds three generic texture primitives, each in a random share of classes:
crack networks (the edges of a jittered-grid Voronoi tessellation, Worley's
cellular texture, bent by a smooth domain warp), marks that cluster (placed
with a density that follows a smooth random field, not uniformly), and slow
shading (a smooth multiplicative illumination field).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import combinations

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
    p: TextureParameters,
    n: int,
    size: int,
    generator: torch.Generator,
    density: torch.Tensor | None = None,
) -> torch.Tensor:
    """``n`` images of the class's marks at random places, peak about 1: (n, S, S).

    ``density`` ((n, S*S), non-negative) places marks where it is high; without
    it every pixel is as likely.
    """
    expected = p.marks * (size / 200) ** 2
    spectrum = torch.zeros(n, size, size // 2 + 1, dtype=torch.complex64)
    for k in range(MARK_ORIENTATIONS):
        angle = p.mark_angle + p.mark_spread * math.pi * (k / MARK_ORIENTATIONS - 0.5)
        impulses = torch.zeros(n, size * size)
        counts = torch.poisson(torch.full((n,), expected / MARK_ORIENTATIONS), generator=generator)
        for i, count in enumerate(counts.long().tolist()):
            if count:
                where = (
                    torch.randint(0, size * size, (count,), generator=generator)
                    if density is None
                    else torch.multinomial(density[i], count, replacement=True, generator=generator)
                )
                strength = 0.5 + 0.5 * torch.rand(count, generator=generator)
                impulses[i].index_add_(0, where, strength)
        kernel = mark_kernel(p.mark_length, p.mark_width, angle, size)
        spectrum += torch.fft.rfft2(impulses.view(n, size, size)) * torch.fft.rfft2(kernel)
    marks = torch.fft.irfft2(spectrum, s=(size, size))
    return marks.clamp(0.0, 1.5)


def field_and_marks(
    p: TextureParameters,
    n: int,
    size: int,
    generator: torch.Generator,
    clustering: float = 0.0,
    cluster_scale: float = 0.0,
) -> torch.Tensor:
    """The class's field plus its marks, not yet standardised: (n, S, S).

    With ``clustering`` > 0 the marks crowd where a smooth field of centre
    frequency ``cluster_scale`` is high (the rich model); otherwise they are
    placed uniformly.
    """
    field = torch.sigmoid(p.gain * random_field(p, n, size, generator) + p.offset)
    image = p.field_weight * field
    if p.marks:
        density = None
        if clustering:
            crowd = smooth_field(p, cluster_scale, n, size, generator)
            density = torch.exp(clustering * crowd).flatten(1)
        image = image + (1.0 - p.field_weight) * 3.0 * p.polarity * random_marks(
            p, n, size, generator, density
        )
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
    classes: int,
    per_class: int,
    size: int,
    generator: torch.Generator,
    model: str = "basic",
) -> list[torch.Tensor]:
    """``classes`` new random classes, ``per_class`` images each (uint8, (n, 1, S, S))."""
    if model == "basic":
        return [
            sample_class(draw_parameters(generator), per_class, size, generator)
            for _ in range(classes)
        ]
    if model in MODELS:
        primitives = PRIMITIVES if model == "rich" else frozenset(model.split("+")[1:])
        return [
            sample_rich_class(
                draw_rich_parameters(generator, primitives), per_class, size, generator
            )
            for _ in range(classes)
        ]
    raise ValueError(f"unknown synthetic texture model {model!r}; known: {', '.join(MODELS)}")


# what the rich model adds to the basic one
PRIMITIVES = frozenset(["cracks", "clusters", "shading"])
# "basic+cracks", "basic+clusters+shading" and so on: the rich model with only the
# named primitives, to tell what each adds ("rich" is all three)
MODELS = (
    "basic",
    "rich",
    *(
        "+".join(["basic", *names])
        for size in range(1, len(PRIMITIVES))
        for names in combinations(sorted(PRIMITIVES), size)
    ),
)


@dataclass(frozen=True)
class RichTextureParameters:
    """One class of the rich model: the basic model's draw plus three primitives."""

    base: TextureParameters
    cells: float  # expected Voronoi cells per 200x200 image (0: no crack network)
    crack_width: float  # Gaussian sigma of a crack across it (pixels)
    crack_warp: float  # amplitude of the smooth warp bending the cracks (fraction of a cell)
    crack_weight: float  # the cracks' strength against the rest of the image
    crack_polarity: float  # +1 bright cracks, -1 dark cracks
    clustering: float  # 0: marks uniform; larger: marks crowd where a smooth field is high
    cluster_scale: float  # centre frequency of that field (cycles per pixel)
    shading: float  # amplitude of the smooth multiplicative illumination (0: none)
    shading_scale: float  # its centre frequency (cycles per pixel)


def draw_rich_parameters(
    generator: torch.Generator, primitives: frozenset[str] = PRIMITIVES
) -> RichTextureParameters:
    """A random class of the rich model, using only the named ``primitives``."""
    base = draw_parameters(generator)
    has_cracks = float(torch.rand((), generator=generator)) < 0.4 and "cracks" in primitives
    clusters = base.marks > 0 and float(torch.rand((), generator=generator)) < 0.5
    clusters = clusters and "clusters" in primitives
    shaded = float(torch.rand((), generator=generator)) < 0.5 and "shading" in primitives
    return RichTextureParameters(
        base=base,
        cells=log_uniform(4.0, 600.0, generator) if has_cracks else 0.0,
        crack_width=log_uniform(0.5, 3.0, generator),
        crack_warp=log_uniform(0.02, 0.3, generator),
        crack_weight=uniform(0.3, 1.5, generator),
        crack_polarity=1.0 if float(torch.rand((), generator=generator)) < 0.5 else -1.0,
        clustering=uniform(1.0, 4.0, generator) if clusters else 0.0,
        cluster_scale=log_uniform(0.005, 0.05, generator),
        shading=uniform(0.1, 0.6, generator) if shaded else 0.0,
        shading_scale=log_uniform(0.003, 0.02, generator),
    )


def smooth_field(
    p: TextureParameters, centre: float, n: int, size: int, generator: torch.Generator
) -> torch.Tensor:
    """``n`` isotropic, band-limited fields of unit variance around ``centre``: (n, S, S)."""
    band = replace(p, slope=0.0, centre=centre, bandwidth=0.7, aspect=1.0)
    return random_field(band, n, size, generator)


def crack_network(
    p: RichTextureParameters, n: int, size: int, generator: torch.Generator
) -> torch.Tensor:
    """``n`` images of Voronoi cell edges, peak 1: (n, S, S).

    Worley's cellular texture on a jittered grid: one seed point per grid cell,
    so each pixel's two nearest seeds are among the 3x3 cells around it. A pixel
    lies on an edge where its two nearest seeds are about as near (F2 - F1
    small). The grid wraps around, like the other layers.
    """
    cells = max(2, round(math.sqrt(p.cells * (size / 200) ** 2)))
    step = size / cells
    grid = torch.arange(cells, dtype=torch.float32)
    corners = torch.stack(  # (cells, cells, 2): each grid cell's row (y) and column (x)
        [grid.view(cells, 1).expand(cells, cells), grid.view(1, cells).expand(cells, cells)], -1
    )
    seeds = (corners + torch.rand(n, cells, cells, 2, generator=generator)) * step
    coords = torch.arange(size, dtype=torch.float32)
    # the warp bends edges on the scale of a cell, by a fraction of a cell
    bend = smooth_field(p.base, 1.0 / step, 2 * n, size, generator).view(n, 2, size, size)
    warp = p.crack_warp * step * bend
    y = coords.view(1, size, 1) + warp[:, 0]
    x = coords.view(1, 1, size) + warp[:, 1]
    row, column = torch.floor(y / step).long(), torch.floor(x / step).long()
    images = torch.arange(n).view(n, 1, 1)
    nearest = torch.full((n, size, size), float("inf"))
    second = torch.full((n, size, size), float("inf"))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            r, c = row + dy, column + dx
            seed = seeds[images, r % cells, c % cells]  # (n, S, S, 2)
            # the seed of a wrapped cell, moved next to the pixel
            sy = seed[..., 0] + (r - r % cells) * step
            sx = seed[..., 1] + (c - c % cells) * step
            distance = torch.sqrt((y - sy) ** 2 + (x - sx) ** 2)
            second = torch.minimum(second, torch.maximum(nearest, distance))
            nearest = torch.minimum(nearest, distance)
    # F2 - F1 is twice the distance to the edge between the two nearest cells
    return torch.exp(-0.5 * ((second - nearest) / (2 * p.crack_width)) ** 2)


def sample_rich_class(
    p: RichTextureParameters, n: int, size: int, generator: torch.Generator
) -> torch.Tensor:
    """``n`` images of one class of the rich model as an (n, 1, S, S) uint8 tensor."""
    b = p.base
    image = field_and_marks(b, n, size, generator, p.clustering, p.cluster_scale)
    if p.cells:
        image = image + p.crack_weight * p.crack_polarity * crack_network(p, n, size, generator)
    image = standardise(image)
    if p.shading:
        # illumination multiplies what the surface shows, on a positive scale
        light = torch.exp(p.shading * smooth_field(b, p.shading_scale, n, size, generator))
        image = standardise((image + 3.0) * light)
    return to_uint8(image, b)


def standardise(image: torch.Tensor) -> torch.Tensor:
    """Each image to zero mean and unit standard deviation: (n, S, S)."""
    flat = image.flatten(1)
    n = len(image)
    return (image - flat.mean(1).view(n, 1, 1)) / flat.std(1).clamp_min(1e-6).view(n, 1, 1)


def on_backgrounds(
    classes: list[torch.Tensor],
    backgrounds: list[torch.Tensor],
    fraction: float,
    generator: torch.Generator,
) -> list[torch.Tensor]:
    """A ``fraction`` of the synthetic ``classes`` laid over real training images.

    A defect is a texture on a steel surface, and two defect types on the same
    kind of steel differ only in what lies over it. In a class chosen here
    (each with probability ``fraction``) every image is its synthetic texture
    plus a random real image of any training class, turned at random, at a
    strength drawn once for the class (0.25-1 of the texture's own, both
    standardised): the class is the texture, whatever surface it lies on, so the
    network learns to tell textures apart through the surface beneath them.
    The result keeps each synthetic image's own brightness and contrast.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"the fraction of classes on real backgrounds is {fraction}, not in 0-1")
    if fraction == 0.0 or not classes:
        return classes
    pool = torch.cat(backgrounds)
    laid = []
    for images in classes:
        if float(torch.rand((), generator=generator)) >= fraction:
            laid.append(images)
            continue
        n, size = len(images), images.shape[-1]
        real = pool[torch.randint(0, len(pool), (n,), generator=generator)].float()[:, 0]
        if real.shape[-1] != size:
            real = torch.nn.functional.interpolate(
                real.unsqueeze(1), size=(size, size), mode="bilinear", antialias=True
            )[:, 0]
        real = torch.rot90(real, k=int(torch.randint(0, 4, (), generator=generator)), dims=(1, 2))
        if float(torch.rand((), generator=generator)) < 0.5:
            real = torch.flip(real, dims=(2,))
        texture = images.float()[:, 0] / 255.0
        flat = texture.flatten(1)
        mean, spread = flat.mean(1).view(n, 1, 1), flat.std(1).view(n, 1, 1)
        mixed = standardise(texture) + uniform(0.25, 1.0, generator) * standardise(real)
        image = (standardise(mixed) * spread + mean).clamp(0.0, 1.0)
        laid.append((image * 255).round().to(torch.uint8).unsqueeze(1))
    return laid


@dataclass(frozen=True)
class SyntheticClasses:
    """The synthetic classes every training batch gets (the ``--synthetic-*`` options):
    ``classes`` new ones of ``per_class`` images from texture ``model``, a
    ``backgrounds`` fraction of them laid over real training images."""

    classes: int = 0
    per_class: int = 8
    model: str = "basic"
    backgrounds: float = 0.0

    def draw(
        self, size: int, generator: torch.Generator, real: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """New classes of ``size``-pixel images (uint8, (per_class, 1, S, S) each)."""
        textures = synthetic_batch(self.classes, self.per_class, size, generator, self.model)
        return on_backgrounds(textures, real, self.backgrounds, generator)
