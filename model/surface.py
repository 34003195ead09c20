"""Training local features for the good-surface memory: synthetic defects on real
and procedural surfaces, and a loss that is the memory's own rule.

The memory scores each location of a frame by the distance of its features to
the nearest features of good surface. Features trained to name NEU's classes
need not put a hole in a tile far from the tile's texture. Here each step takes
a surface image, two crops of it (the *good* view, its features the memory, and
the *inspected* view, with synthetic defects painted on: dark or bright blobs,
cracks, pasted patches and shading, never drawn after any real
defect set), and asks of the inspected view's features: on good surface, near
the memory; on a defect, at least ``margin`` from all of it. Features are
unit-normalised for this, so the margin has a fixed meaning.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from model.frames import feature_tower, local_feature_maps
from model.synthetic import synthetic_batch

#: crop side (model pixels) of both views
CROP = 144


@dataclass
class SurfaceConfig:
    steps: int = 1500
    batch: int = 16
    lr: float = 3e-4
    margin: float = 0.8
    stages: tuple[int, ...] = (1, 2)
    seed: int = 0
    #: which synthetic defects are painted
    kinds: tuple[str, ...] = ("blob", "crack", "patch", "shading")
    #: share of each batch drawn from procedural textures (model/synthetic.py)
    #: instead of the recipe's photographs: surfaces no camera took
    procedural: float = 0.0
    #: the largest illumination ramp (grey levels across a crop) between the
    #: memory's view and the inspected one: good surface under other light
    illumination: float = 0.0


def uniform(low: float, high: float, g: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def soft_ellipse(size: int, g: torch.Generator) -> torch.Tensor:
    """An alpha mask (size x size) of a random ellipse with a soft edge."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    cy, cx = uniform(8, size - 8, g), uniform(8, size - 8, g)
    ry, rx = uniform(2, 18, g), uniform(2, 18, g)
    angle = uniform(0, math.pi, g)
    dy, dx = yy - cy, xx - cx
    u = (dx * math.cos(angle) + dy * math.sin(angle)) / rx
    v = (-dx * math.sin(angle) + dy * math.cos(angle)) / ry
    return torch.sigmoid((1 - (u * u + v * v)) * uniform(2, 8, g))


def crack(size: int, g: torch.Generator) -> torch.Tensor:
    """An alpha mask of a thin random polyline."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    y, x = uniform(10, size - 10, g), uniform(10, size - 10, g)
    angle = uniform(0, 2 * math.pi, g)
    width = uniform(0.6, 2.0, g)
    alpha = torch.zeros(size, size)
    for _ in range(int(uniform(1, 5, g))):
        length = uniform(10, 50, g)
        angle += uniform(-0.7, 0.7, g)
        y2, x2 = y + length * math.sin(angle), x + length * math.cos(angle)
        # distance of each pixel to the segment
        vy, vx = y2 - y, x2 - x
        t = (((yy - y) * vy + (xx - x) * vx) / (vy * vy + vx * vx + 1e-6)).clamp(0, 1)
        d = torch.sqrt((yy - y - t * vy) ** 2 + (xx - x - t * vx) ** 2)
        alpha = torch.maximum(alpha, torch.sigmoid((width - d) * 3))
        y, x = y2, x2
    return alpha


def paint_defects(
    images: torch.Tensor, g: torch.Generator, kinds: tuple[str, ...] = SurfaceConfig.kinds
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic defects on (N, 1, S, S) images in [0, 255]: the painted images and
    the (N, 1, S, S) masks of where they differ."""
    unknown = set(kinds) - set(SurfaceConfig.kinds)
    if unknown:
        raise ValueError(f"no synthetic defect {sorted(unknown)}; known: {SurfaceConfig.kinds}")
    out, masks = images.clone(), torch.zeros_like(images)
    n, _, size, _ = images.shape
    for i in range(n):
        if uniform(0, 1, g) < 0.2:
            continue  # some views stay good: good surface must stay near the memory
        kind = kinds[int(uniform(0, len(kinds), g))]
        if kind == "blob":  # a dark or bright blob
            alpha = soft_ellipse(size, g)
            value = uniform(0, 60, g) if uniform(0, 1, g) < 0.7 else uniform(190, 255, g)
            target = torch.full_like(alpha, value)
        elif kind == "crack":  # a thin dark line
            alpha = crack(size, g)
            target = torch.full_like(alpha, uniform(0, 70, g))
        elif kind == "patch":  # a patch of the surface from elsewhere, turned
            alpha = soft_ellipse(size, g)
            j = int(uniform(0, n, g))
            target = torch.rot90(images[j, 0], k=int(uniform(1, 4, g)), dims=(0, 1))
        else:  # shading: a broad region lighter or darker
            alpha = soft_ellipse(size, g)
            shift = uniform(35, 80, g) * (1 if uniform(0, 1, g) < 0.5 else -1)
            target = (images[i, 0] + shift).clamp(0, 255)
        out[i, 0] = images[i, 0] * (1 - alpha) + target * alpha
        masks[i, 0] = ((out[i, 0] - images[i, 0]).abs() > 12).float() * (alpha > 0.3)
    return out, masks


def photometric(
    images: torch.Tensor, g: torch.Generator, illumination: float = 0.0
) -> torch.Tensor:
    """Brightness, contrast, noise and (up to ``illumination`` grey levels) a
    linear light ramp: what differs between two good frames."""
    n, _, h, w = images.shape
    gain = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.25, generator=g)
    bias = torch.empty(n, 1, 1, 1).uniform_(-20, 20, generator=g)
    noise = torch.randn(images.shape, generator=g) * uniform(0, 4, g)
    mean = images.mean(dim=(2, 3), keepdim=True)
    out = (images - mean) * gain + mean + bias + noise
    if illumination:
        angle = torch.rand(n, 1, 1, 1, generator=g) * 2 * math.pi
        size = torch.rand(n, 1, 1, 1, generator=g) * illumination
        yy = torch.linspace(-0.5, 0.5, h).view(1, 1, h, 1)
        xx = torch.linspace(-0.5, 0.5, w).view(1, 1, 1, w)
        out = out + size * (xx * torch.cos(angle) + yy * torch.sin(angle))
    return out.clamp(0, 255)


def procedural_surfaces(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """``n`` procedural textures, each of its own random class: (n, 1, S, S) uint8."""
    return torch.cat(synthetic_batch(n, 1, size, g))


def crops(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = images.shape
    out = torch.empty(n, 1, CROP, CROP)
    for i in range(n):
        top, left = int(uniform(0, h - CROP + 1, g)), int(uniform(0, w - CROP + 1, g))
        out[i] = images[i, :, top : top + CROP, left : left + CROP]
    return out


def local_features(
    tower: torch.nn.Module, x: torch.Tensor, stages: tuple[int, ...]
) -> torch.Tensor:
    """(N, C, h, w) unit features of images in [0, 255], as ``PatchFeatures`` reads them."""
    return local_feature_maps(tower, x / 127.5 - 1.0, stages, normalize=True)


def memory_loss(
    good: torch.Tensor, inspected: torch.Tensor, masks: torch.Tensor, margin: float
) -> tuple[torch.Tensor, float, float]:
    """The memory's rule as a loss: each inspected cell's distance to the nearest
    good cell of its own image; near on good surface, ``margin`` away on defects."""
    h, w = inspected.shape[-2:]
    cell = F.adaptive_avg_pool2d(masks, (h, w)).flatten(1)  # share of the cell that is defect
    memory = good.flatten(2).transpose(1, 2)  # (N, h*w, C)
    query = inspected.flatten(2).transpose(1, 2)
    nearest = torch.cdist(query, memory).min(dim=2).values  # (N, h*w)
    normal, defect = cell == 0, cell > 0.25
    pull = (nearest[normal] ** 2).mean() if normal.any() else nearest.sum() * 0
    push = (F.relu(margin - nearest[defect]) ** 2).mean() if defect.any() else nearest.sum() * 0
    normal_d = float(nearest[normal].detach().mean()) if normal.any() else 0.0
    defect_d = float(nearest[defect].detach().mean()) if defect.any() else 0.0
    return pull + push, normal_d, defect_d


def train_surface_features(
    network: torch.nn.Module, surfaces: torch.Tensor, config: SurfaceConfig, log_every: int = 100
) -> list[dict[str, float]]:
    """Fine-tune ``network``'s tower in place on (N, 1, H, W) uint8 ``surfaces``.
    Batch normalisation keeps its statistics (eval mode), as inference sees it."""
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    tower = feature_tower(network)
    tower.eval()
    parameters = [p for name, p in tower.named_parameters() if not name.startswith("head")]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=1e-4)
    history: list[dict[str, float]] = []
    started = time.monotonic()
    sums = [0.0, 0.0, 0.0]
    for step in range(1, config.steps + 1):
        index = torch.randint(len(surfaces), (config.batch,), generator=g)
        batch = surfaces[index].float()
        made = round(config.batch * config.procedural)
        if made:
            batch[:made] = procedural_surfaces(made, batch.shape[-1], g).float()
        if uniform(0, 1, g) < 0.5:
            batch = batch.flip(3)
        good = photometric(crops(batch, g), g, config.illumination)
        inspected, masks = paint_defects(
            photometric(crops(batch, g), g, config.illumination), g, config.kinds
        )
        loss, normal_d, defect_d = memory_loss(
            local_features(tower, good, config.stages),
            local_features(tower, inspected, config.stages),
            masks,
            config.margin,
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sums = [sums[0] + float(loss.detach()), sums[1] + normal_d, sums[2] + defect_d]
        if step % log_every == 0:
            row = {
                "step": step,
                "loss": sums[0] / log_every,
                "good_distance": sums[1] / log_every,
                "defect_distance": sums[2] / log_every,
                "seconds": time.monotonic() - started,
            }
            history.append(row)
            print(  # noqa: T201 - a training command reports its progress
                f"step {step}: loss {row['loss']:.4f}, good {row['good_distance']:.3f}, "
                f"defect {row['defect_distance']:.3f} ({row['seconds']:.0f} s)",
                flush=True,
            )
            sums = [0.0, 0.0, 0.0]
    return history


def load_surfaces(folders: list[Path]) -> torch.Tensor:
    """Every image of the class folders, as (N, 1, 200, 200) uint8 (resized if not)."""
    import numpy as np
    from PIL import Image

    arrays = []
    for folder in folders:
        for path in sorted(folder.glob("*")):
            if path.suffix.lower() in {".png", ".bmp", ".jpg"}:
                with Image.open(path) as image:
                    gray = image.convert("L")
                    if gray.size != (200, 200):
                        gray = gray.resize((200, 200))
                    arrays.append(np.asarray(gray, dtype=np.uint8))
    return torch.from_numpy(np.stack(arrays)).unsqueeze(1)


FRAME_RECIPES = Path(__file__).resolve().parent / "recipes" / "frames"
ROOT = Path(__file__).resolve().parent.parent


def resolve(path_text: str) -> Path:
    """A recipe's path: as given when it exists from here, else from the repository."""
    path = Path(path_text)
    return path if path.is_absolute() or path.exists() else ROOT / path


def train_frames(recipe_name: str, out: Path, seed: int | None = None) -> Path:
    """Train a frames checkpoint from a recipe of ``recipes/frames/`` (or a .toml path):
    the start checkpoint's network, its tower trained for the memory, saved with
    the recipe and the loss curve in its metadata (``frame_features``)."""
    import tomllib

    from model.checkpoint import load_checkpoint, save_checkpoint

    path = Path(recipe_name)
    if path.suffix != ".toml":
        path = FRAME_RECIPES / f"{recipe_name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in FRAME_RECIPES.glob("*.toml")))
        raise ValueError(f"no frames recipe {recipe_name!r}; known: {known}, or a .toml path")
    recipe = tomllib.loads(path.read_text())
    if seed is not None:
        recipe["seed"] = seed
    config = SurfaceConfig(
        steps=int(recipe["steps"]),
        batch=int(recipe["batch"]),
        lr=float(recipe["lr"]),
        margin=float(recipe["margin"]),
        stages=tuple(int(s) for s in recipe["stages"]),
        seed=int(recipe["seed"]),
        kinds=tuple(recipe["kinds"]),
        procedural=float(recipe.get("procedural", 0.0)),
        illumination=float(recipe.get("illumination", 0.0)),
    )
    network, meta = load_checkpoint(resolve(recipe["start"]))
    data = resolve(recipe["data"])
    surfaces = load_surfaces([data / name for name in recipe["classes"]])
    history = train_surface_features(network, surfaces, config)
    meta = {
        **meta,
        "frame_features": {"recipe": path.stem, **recipe, "history": history},
    }
    return save_checkpoint(out, network, meta)
