"""Data: a folder of class sub-folders, split per class, and random pairs over it."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from model.preprocess import to_model_input

IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff"}


def list_class_images(
    root: str | Path, classes: Iterable[str] | None = None, dedupe: bool = True
) -> dict[str, list[Path]]:
    """Map each class (sub-folder name) to its sorted image files.

    With ``dedupe`` (the default), byte-identical files count as one: the first
    in sorted order is kept. NEU-CLS has one such pair (patches Pa_101 and
    Pa_105); keeping both would let the same image sit on both sides of a split,
    or be an episode's support and its own query.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    available = sorted(p.name for p in root.iterdir() if p.is_dir())
    wanted = list(classes) if classes is not None else available
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise ValueError(
            f"classes {', '.join(unknown)} not found in {root}; it has: {', '.join(available)}"
        )
    result = {}
    seen: set[str] = set()
    for name in wanted:
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if dedupe:
            unique = []
            for path in files:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if digest not in seen:
                    seen.add(digest)
                    unique.append(path)
            files = unique
        if len(files) < 2:
            raise ValueError(f"class {name!r} in {root} needs at least 2 images, has {len(files)}")
        result[name] = files
    return result


def split_per_class(
    images: dict[str, list[Path]], val_fraction: float, seed: int
) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Shuffle each class with ``seed`` and hold out ``val_fraction`` of it (at least 1)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    rng = random.Random(seed)
    train, val = {}, {}
    for name, files in images.items():
        shuffled = list(files)
        rng.shuffle(shuffled)
        n_val = max(1, round(len(shuffled) * val_fraction))
        val[name], train[name] = sorted(shuffled[:n_val]), sorted(shuffled[n_val:])
    return train, val


def load_tensors(files: Sequence[Path], size: int) -> torch.Tensor:
    """Decode and preprocess files once into an (N, 1, size, size) tensor."""
    tensors = []
    for path in files:
        with Image.open(path) as image:
            tensors.append(to_model_input(image, size))
    return torch.stack(tensors)


@dataclass
class ClassTensors:
    """Preprocessed images grouped by class, the form training works on."""

    names: list[str]
    images: list[torch.Tensor]  # one (N_c, 1, S, S) tensor per class

    @classmethod
    def from_files(cls, files: dict[str, list[Path]], size: int) -> ClassTensors:
        names = list(files)
        return cls(names, [load_tensors(files[n], size) for n in names])

    def __len__(self) -> int:
        return sum(len(t) for t in self.images)


def augment_dihedral(x: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """Random rotation by a multiple of 90 degrees and random horizontal flip.

    Surface textures have no preferred orientation, so these are label-preserving.
    """
    x = torch.rot90(x, k=rng.randrange(4), dims=(-2, -1))
    if rng.random() < 0.5:
        x = torch.flip(x, dims=(-1,))
    return x


class PairDataset(Dataset):
    """Random pairs as in the paper: same class with probability ``p_same``.

    Item ``i`` is a pair (a, b, different) where ``different`` is 1.0 for a
    different-class pair. An epoch has as many pairs as there are images (or
    ``length``). With
    ``fixed=True`` the pairs depend only on ``seed`` and the index (validation).
    """

    def __init__(
        self,
        data: ClassTensors,
        seed: int,
        p_same: float = 0.5,
        augment: bool = True,
        fixed: bool = False,
        length: int | None = None,
    ) -> None:
        if len(data.names) < 2:
            raise ValueError("pairs of different classes need at least 2 classes")
        self.data = data
        self.seed = seed
        self.p_same = p_same
        self.augment = augment
        self.fixed = fixed
        self.length = len(data) if length is None else length
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = random.Random(self.seed * 1_000_003 + index) if self.fixed else self._rng
        n_classes = len(self.data.names)
        c1 = rng.randrange(n_classes)
        same = rng.random() < self.p_same
        c2 = c1 if same else rng.choice([c for c in range(n_classes) if c != c1])
        first = self.data.images[c1]
        second = self.data.images[c2]
        i1 = rng.randrange(len(first))
        i2 = rng.randrange(len(second))
        if same and len(first) > 1:
            while i2 == i1:
                i2 = rng.randrange(len(second))
        a, b = first[i1], second[i2]
        if self.augment:
            a, b = augment_dihedral(a, rng), augment_dihedral(b, rng)
        return a, b, torch.tensor(0.0 if same else 1.0)
