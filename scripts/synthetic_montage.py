"""A montage of procedurally generated texture classes (``model.synthetic``), for the model card.

Each row is one synthetic class (one random draw of the texture model's
parameters), each column a new sample of it:

    python scripts/synthetic_montage.py --out docs/figures/synthetic-textures.png
    python scripts/synthetic_montage.py --model rich --out docs/figures/synthetic-textures-rich.png
    python scripts/synthetic_montage.py --backgrounds ../shared/data/neu-cls \
        --background-classes inclusion,patches,rolled-in_scale \
        --out docs/figures/synthetic-textures-backgrounds.png

With ``--backgrounds``, every class is laid over real images of the named
classes (``model.synthetic.on_backgrounds``), as ``--synthetic-backgrounds 1``
does in training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.data import list_class_images
from model.objectives import load_uint8
from model.synthetic import MODELS, on_backgrounds, synthetic_batch


def montage(
    classes: int,
    per_class: int,
    size: int,
    seed: int,
    model: str,
    backgrounds: list[torch.Tensor] | None = None,
) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    groups = synthetic_batch(classes, per_class, size, generator, model)
    if backgrounds:
        groups = on_backgrounds(groups, backgrounds, 1.0, generator)
    gap = 4
    sheet = torch.full(
        (classes * (size + gap) - gap, per_class * (size + gap) - gap), 255, dtype=torch.uint8
    )
    for row, group in enumerate(groups):
        for column, image in enumerate(group):
            top, left = row * (size + gap), column * (size + gap)
            sheet[top : top + size, left : left + size] = image[0]
    return Image.fromarray(sheet.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", choices=MODELS, default="basic", help="texture model")
    parser.add_argument(
        "--backgrounds", type=Path, default=None, help="folder of class sub-folders of real images"
    )
    parser.add_argument(
        "--background-classes",
        default="inclusion,patches,rolled-in_scale",
        help="with --backgrounds: the classes whose images lie beneath the textures",
    )
    args = parser.parse_args()
    backgrounds = None
    if args.backgrounds:
        files = list_class_images(args.backgrounds, args.background_classes.split(","))
        backgrounds = [load_uint8(paths) for paths in files.values()]
    image = montage(args.classes, args.per_class, 200, args.seed, args.model, backgrounds)
    image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
