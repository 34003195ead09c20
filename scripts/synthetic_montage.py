"""A montage of procedurally generated texture classes (``model.synthetic``), for the model card.

Each row is one synthetic class (one random draw of the texture model's
parameters), each column a new sample of it:

    python scripts/synthetic_montage.py --out docs/figures/synthetic-textures.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.synthetic import synthetic_batch


def montage(classes: int, per_class: int, size: int, seed: int) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    groups = synthetic_batch(classes, per_class, size, generator)
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
    args = parser.parse_args()
    image = montage(args.classes, args.per_class, 200, args.seed)
    image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
